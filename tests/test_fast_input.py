"""The direct JSON -> N-Triples writer (reasoner/fastinput.py) gives, record for record, the graph
rdflib's JSON-LD parser gives with ontology/context.jsonld; what it cannot write exactly, it
leaves to that parser."""
import json
import logging

import pytest
from rdflib import Graph

from harness import CASES, ROOT, engine
from reasoner.inputs import _json_to_graph, _prepare_claim, _prepare_encounter, base_for, load_context, writer_for
from reasoner.synth import generate_claims


def _objects():
    """(kind, file, object) for every encounter and claim in the case files and examples."""
    for area, kind, key in (("derive", "encounter", "encounter"), ("encounter", "encounter", "encounter"),
                            ("validate", "claim", "claim"), ("validate", "claim", "claims")):
        for path in sorted((CASES / area).glob("*.json")):
            case = json.loads(path.read_text())
            items = case.get(key)
            for obj in (items if isinstance(items, list) else [items] if items else []):
                yield kind, path, obj
    for name, kind in (("encounters.json", "encounter"), ("claims.json", "claim")):
        data = json.loads((ROOT / "examples" / name).read_text())
        for obj in data.get("encounters", data.get("claims", [])):
            yield kind, ROOT / "examples" / name, obj


def _nt(g):
    return sorted(f"{s.n3()} {p.n3()} {o.n3()}" for s, p, o in g)


def _both(kind, path, obj):
    kb = engine()[0]
    context = load_context(kb.content.context)
    base = base_for(path)
    prepare = _prepare_encounter if kind == "encounter" else _prepare_claim
    rid, prepared = prepare(obj, path, 0)
    written = writer_for(context).write(prepared, base)
    parsed = _json_to_graph(prepared, context, base, path, rid)
    return written, parsed


def _compare(items):
    taken = 0
    for kind, path, obj in items:
        try:
            written, parsed = _both(kind, path, obj)
        except Exception:
            continue  # a record the readers reject (malformed-input cases): not the writer's business
        if written is None:
            continue
        taken += 1
        g = Graph()
        g.parse(data="\n".join(written), format="nt")
        assert _nt(g) == _nt(parsed), f"{path.name} {obj.get('id')}: the writer and rdflib's JSON-LD differ"
    return taken


def test_writer_equals_jsonld_on_every_case():
    items = list(_objects())
    taken = _compare(items)
    assert taken >= 0.9 * len(items), f"the writer took only {taken} of {len(items)} records"


def test_writer_equals_jsonld_on_seeded_claims():
    logging.disable(logging.WARNING)
    try:
        kb = engine()[0]
        claims = generate_claims(kb, 3000, seed=21)
        items = [("claim", ROOT / "bench.json", c) for c in claims]
        taken = _compare(items)
    finally:
        logging.disable(logging.NOTSET)
    # the malformed claims (ill-typed units, dates) are left to rdflib; the rest are written
    assert 0.8 * len(items) <= taken < len(items)


BASE_CLAIM = {"id": "c1", "dateOfService": "2024-06-03", "placeOfService": "11", "claimType": "professional",
              "lines": [{"code": "20553", "units": 1}]}


@pytest.mark.parametrize("change", [
    {"dateOfService": "2024-02-30"},          # not a day: ill-typed, the engines read it differently
    {"dateOfService": "20240203"},            # not the canonical form
    {"patientAge": 61.5},                     # a float: the processor's canonical double form
    {"patientAge": "061"},                    # a non-canonical integer
    {"patientAge": None},                     # null: dropped by the processor
    {"placeOfService": "pos:11"},             # a compact IRI
    {"placeOfService": "code"},               # a term: expands to the term's own IRI
    {"claimType": "http://example.org/x"},    # an absolute IRI
    {"type": "http://example.org/Claim"},     # a type that is not a term
    {"id": "a/b"},                            # not a simple relative reference
])
def test_writer_falls_back_outside_its_subset(change):
    obj = json.loads(json.dumps(BASE_CLAIM))
    obj.update(change)
    obj["claimId"] = obj["id"]
    context = load_context(engine()[0].content.context)
    assert writer_for(context).write(obj, base_for(ROOT / "x.json")) is None


def test_writer_takes_the_plain_claim():
    obj = dict(BASE_CLAIM, claimId="c1", type="Claim")
    obj["lines"] = [dict(obj["lines"][0], id="c1-L1", type="ClaimLine", line=1)]
    context = load_context(engine()[0].content.context)
    lines = writer_for(context).write(obj, base_for(ROOT / "x.json"))
    assert lines is not None and any("serviceDate" in x and '"2024-06-03"^^' in x for x in lines)


def test_string_escapes():
    obj = {"id": "e1", "type": "Encounter", "note": 'a "quoted"\\ note\nwith a line break\t and ü'}
    written, parsed = _both("encounter", ROOT / "x.json", obj)
    g = Graph()
    g.parse(data="\n".join(written), format="nt")
    assert _nt(g) == _nt(parsed)


@pytest.mark.parametrize("kind, change, field", [
    ("claim", {"dateOfService": "2024-02-30"}, "dateOfService"),
    ("claim", {"dateOfService": "20240105"}, "dateOfService"),
    ("claim", {"dateOfService": "June 3"}, "dateOfService"),
    ("claim", {"patientAge": "sixty"}, "patientAge"),
    ("claim", {"patientAge": 61.5}, "patientAge"),
    ("claim", {"lines": [{"code": "20553", "units": "two"}]}, "lines[0].units"),
    ("claim", {"lines": [{"code": "20553", "units": True}]}, "lines[0].units"),
    ("encounter", {"procedures": [{"kind": "lumbar-puncture", "withAnesthesia": "yes"}]}, "procedures[0].withAnesthesia"),
])
def test_ill_typed_values_are_input_errors(kind, change, field):
    """A value that is not a valid literal of the datatype its term declares is bad input, named by
    file, record and field, for every engine alike (no engine decides what "two" units mean)."""
    from reasoner.inputs import record_from_object

    obj = json.loads(json.dumps(BASE_CLAIM)) if kind == "claim" else {"id": "e1", "dateOfService": "2024-06-03"}
    obj.update(change)
    rec = record_from_object(obj, kind, engine()[0].content.context, file="in.json")
    assert rec.error is not None and rec.error.field == field, rec.error
    assert "in.json" in str(rec.error) and obj["id"] in str(rec.error)
    ok = dict(obj, **({"dateOfService": "2024-06-03"} if "dateOfService" in change else {}))
    if kind == "claim" and "dateOfService" in change:
        assert record_from_object(ok, kind, engine()[0].content.context, file="in.json").error is None


def test_writer_takes_only_plain_bases_and_valid_unicode():
    """What the writer gives is read by the store without checks (reasoner/fast.py WRITTEN_NT), so it
    refuses a base that is not a plain IRI and a string with an unpaired surrogate."""
    context = load_context(engine()[0].content.context)
    w = writer_for(context)
    claim = _prepare_claim(json.loads(json.dumps(BASE_CLAIM)), "in.json", 0)[1]
    assert w.write(claim, "https://w3id.org/cptkg/data/in/") is not None
    assert w.write(claim, "https://w3id.org/cptkg/data/my claims/") is None
    assert w.write(dict(claim, placeOfService="1\ud8001"), "https://w3id.org/cptkg/data/in/") is None
    assert base_for(ROOT / "my claims.json") == "https://w3id.org/cptkg/data/my%20claims/"
