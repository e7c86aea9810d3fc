"""reasoner/jsonstream.py: the items of a JSON document's list one at a time, as json.loads reads
them, in bounded memory, with the line each starts on; faults named by line."""
import io
import json
import random
import tracemalloc

import pytest

from reasoner import jsonstream

DOCS = [
    '{"claims": [{"id": "a", "n": 12345678901234567890, "x": -1.5e-7}, {"id": "b\\u00e9\\n\\"q\\"", "l": [1, [2, {}]]}]}',
    '[1, 2.5, "three", true, false, null, {"k": [ ]}, []]',
    '{"schemaVersion": "1", "encounters": [], "note": {"deep": [1, 2, {"a": "}]"}]}}',
    '{"id": "single", "lines": [{"code": "77003"}], "payer": null}',
    '  \n {"@graph": [ {"id": 1} ,\n\n {"id": 2}\n ] , "@context": {"x": "y"} }  \n',
    '[]',
    '{}',
    '{"claims": {"not": "a list"}}',
    '{"a": "ü€😀", "claims": [{"s": "ü€😀"}]}',
]


def _read(text, chunk, keys=("encounters", "claims", "@graph")):
    return list(jsonstream.records(io.StringIO(text), keys, chunk=chunk))


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_same_values_as_json_loads_at_every_chunk_size(doc, chunk):
    data = json.loads(doc)
    got = _read(doc, chunk)
    items = [v for what, _, v in got if what == "item"]
    objects = [v for what, _, v in got if what == "object"]
    if isinstance(data, list):
        assert items == data and objects == []
    else:
        key = next((k for k in data if k in ("encounters", "claims", "@graph") and isinstance(data[k], list)), None)
        assert items == (data[key] if key else [])
        assert objects == [{k: v for k, v in data.items() if k != key}]


def test_lines_of_items():
    doc = '{"claims": [\n  {"id": 1},\n  {"id": 2,\n "x": 3},\n\n  {"id": 4}]}'
    assert [(line, v["id"]) for what, line, v in _read(doc, 5) if what == "item"] == [(2, 1), (3, 2), (6, 4)]


@pytest.mark.parametrize("doc, line, before", [
    ('{"claims": [{"id": 1},\n {"id": 2}\n {"id": 3}]}', 3, 2),        # a missing comma
    ('{"claims": [{"id": 1},\n {"id": 2, }]}', 2, 1),                   # a trailing comma in an item
    ('{"claims": [{"id": 1}', 1, 1),                                    # cut short
    ('[1, 2] [3]', 1, 2),                                               # extra data
    ('', 1, 0),
    ('"just a string"', 1, 0),
    ('{claims: []}', 1, 0),
])
def test_faults_are_named_by_line_after_the_items_before_them(doc, line, before):
    got = []
    with pytest.raises(jsonstream.JsonError) as err:
        for rec in jsonstream.records(io.StringIO(doc), ("claims",), chunk=4):
            got.append(rec)
    assert err.value.line == line
    assert len([r for r in got if r[0] == "item"]) == before
    if doc != '"just a string"':  # valid JSON, but not records
        with pytest.raises(json.JSONDecodeError):
            json.loads(doc)


def test_bytes_that_are_not_utf8_mark_their_item(tmp_path):
    p = tmp_path / "c.json"
    p.write_bytes(b'{"claims": [{"id": "a"}, {"id": "caf\xe9"}, {"id": "c"}]}')
    with open(p, encoding="utf-8", errors="surrogateescape") as fh:
        got = [v for _, _, v in jsonstream.records(fh, ("claims",))]
    assert got[0] == {"id": "a"} and isinstance(got[1], jsonstream.NotUtf8) and got[1].byte == 0xE9
    assert got[2] == {"id": "c"}


def test_memory_stays_bounded_on_a_large_document():
    rng = random.Random(3)
    claims = [{"id": f"c{i}", "dateOfService": "2024-03-15",
               "lines": [{"code": str(rng.randint(10000, 99999)), "units": rng.randint(1, 4)} for _ in range(3)]}
              for i in range(20000)]
    text = json.dumps({"claims": claims})
    del claims
    fh = io.StringIO(text)
    tracemalloc.start()
    try:
        n = 0
        for what, _, _ in jsonstream.records(fh, ("claims",), chunk=1 << 16):
            n += what == "item"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 20000
    assert peak < len(text) / 10, f"peak {peak} bytes for a {len(text)}-character document"
