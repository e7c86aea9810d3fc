"""The fast input checks (reasoner/fastcheck.py) against the reference (pySHACL,
reasoner.validate.EncounterChecker): every encounter case, every encounter of the derive cases,
and a seeded batch built from the derive cases with input errors injected. Results are compared
whole: record, focus, path, severity, shape, message, value, label and sources."""
import copy
import json
import random
import warnings

import pyoxigraph as ox
import pytest
from rdflib import BNode, Literal, URIRef

from harness import case_files, engine, load_case
from reasoner.fastcheck import FastEncounterChecker
from reasoner.inputs import Record, read_records, record_from_object
from reasoner.vocab import CPTKG

ENCOUNTER_CASES = case_files("encounter")
DERIVE_CASES = case_files("derive")


def test_cases_found():
    assert len(ENCOUNTER_CASES) >= 9 and len(DERIVE_CASES) >= 70


@pytest.fixture(scope="module")
def kb():
    return engine()[0]


@pytest.fixture(scope="module")
def reference():
    return engine()[3]


@pytest.fixture(scope="module")
def fast(kb):
    return FastEncounterChecker(kb)


def canon(node, sg, depth=0):
    """A term as text; a blank node (a path such as [ sh:alternativePath (...) ]) by what the shapes
    graph says of it, since each checker parsed the shapes into its own blank nodes."""
    if isinstance(node, BNode) and sg is not None and depth < 12:
        parts = sorted(f"{p} {canon(o, sg, depth + 1)}" for p, o in sg.predicate_objects(node))
        if parts:
            return "[" + "; ".join(parts) + "]"
    if isinstance(node, Literal):
        return node.n3()
    return "None" if node is None else str(node)


def rows(problems, sg):
    out = []
    for rid, results in problems.items():
        for r in results:
            assert set(r) == {"focus", "path", "severity", "message", "shape", "shape_label", "sources", "value"}
            out.append((rid, canon(r["focus"], None), canon(r["path"], sg), r["severity"], r["shape"], r["message"],
                        canon(r["value"], None), r["shape_label"], tuple(r["sources"])))
    return sorted(out)


def compare(reference, fast, records):
    want = rows(reference.check(records), reference.sg)
    got = rows(fast.check(records), fast.sg)
    assert got == want
    return want


@pytest.mark.parametrize("path", ENCOUNTER_CASES, ids=lambda p: p.stem)
def test_encounter_case(path, kb, reference, fast):
    records = [r for r in read_records(path, "encounter", kb.content.context) if r.error is None]
    expected = load_case(path)["expect"]
    found = compare(reference, fast, records)
    if "shape" in expected:
        assert any(r[4] == expected["shape"] for r in found), "the case must fire its shape"


def derive_records(kb):
    return [record_from_object(load_case(p)["encounter"], "encounter", kb.content.context, file=p, index=i)
            for i, p in enumerate(DERIVE_CASES)]


def test_derive_cases_one_at_a_time(kb, reference, fast):
    for rec in derive_records(kb):
        compare(reference, fast, [rec])


def test_derive_cases_as_one_batch(kb, reference, fast):
    compare(reference, fast, derive_records(kb))


# ---------------------------------------------------------------------------------------------
# a seeded batch with input errors of the kinds the encounter shapes catch (tests/cases/encounter)


def _acts(enc, key):
    return enc.get(key) or []


def _inject(enc, rng, shared):
    """One input error, chosen by the seed, in a copy of an encounter dict."""
    procs, imgs = _acts(enc, "procedures"), _acts(enc, "imaging")
    kinds = [
        lambda: enc.pop("dateOfService", None),
        lambda: enc.update(dateOfService=["2024-01-02", "2024-01-03"]),
        lambda: enc.update(dateOfService="2024-02-30"),            # ill-typed: the reference's
        lambda: enc.update(dateOfService="20240105"),              # the engines disagree: the reference's
        lambda: enc.update(placeOfService="99"),
        lambda: enc.pop("placeOfService", None),
        lambda: enc.update(claimType="both"),
        lambda: enc.update(patientAge=rng.choice([200, -1, "abc", [40, 41]])),
        lambda: enc.update(payer="acme"),
        lambda: (enc.pop("procedures", None), enc.pop("imaging", None)),
        lambda: enc.pop("patientAge", None),                      # AgeGivenWhenCodesDependOnIt where it applies
        lambda: procs and procs[0].update(kind="bogus"),
        lambda: procs and procs[0].pop("kind", None),
        lambda: procs and procs[0].update(kind=["joint-injection", "lumbar-puncture"]),
        lambda: procs and procs[0].update(region="elbow", site="moon"),
        lambda: procs and procs[0].update(laterality=rng.choice(["up", ["left", "right"]])),
        lambda: procs and procs[0].update(levels=rng.choice([0, [1, 2]])),
        lambda: procs and procs[0].update(withAnesthesia=rng.choice([[True, False], "yes"])),
        lambda: procs and procs[0].update(distinctService=[True, False]),
        lambda: procs and procs[0].update(id=shared),              # one act id in two encounters
        lambda: imgs and imgs[0].pop("modality", None),
        lambda: imgs and imgs[0].update(modality="xray-vision", purpose="fun"),
        lambda: imgs and imgs[0].update(purpose=["guidance", "diagnostic"]),
        lambda: imgs and imgs[0].update(purpose="guidance", guides="nowhere"),
        lambda: imgs and imgs[0].update(purpose="diagnostic") and None or (imgs and imgs[0].pop("study", None)),
        lambda: imgs and imgs[0].update(documented=["blurry", "report"]),
        lambda: imgs and imgs[0].update(contrast=rng.choice(["triple", ["single", "double"]])),
        lambda: imgs and imgs[0].update(study=["barium-enema", "bogus-study"]),
    ]
    rng.choice(kinds)()


def seeded_batch(kb, n=300, seed=11, error_rate=0.5):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_derive import synth_encounters

    rng, edits = random.Random(seed), random.Random(seed + 1)
    records = []
    for i, enc in enumerate(synth_encounters(n, seed)):
        enc = copy.deepcopy(enc)
        if rng.random() < error_rate:
            for _ in range(rng.choice([1, 1, 2])):
                _inject(enc, rng, shared=f"shared-act-{rng.randrange(3)}")
        rec = record_from_object(json.loads(json.dumps(enc)), "encounter", kb.content.context,
                                 file="seeded.json", index=i)
        if rec.error is None:
            if edits.random() < 0.1:
                rec = _literal_edit(rec, edits)
            records.append(rec)
    return records


# Literals the JSON reader may refuse before the shapes run, put straight into a record's graph:
# ill-typed ones and ones the two SPARQL engines read differently go to the reference (with the
# records sharing a node with them); a derived-datatype literal (xsd:int, xsd:byte), which the
# fast store keeps as xsd:integer, stays with the fast engine (a value no other record of the
# batch has as xsd:integer: see the next test for what happens when one does).
XSD = "http://www.w3.org/2001/XMLSchema#"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # rdflib warns about "yes"^^xsd:boolean
    LITERAL_EDITS = [
        ("encounter", CPTKG.serviceDate, Literal("2024-02-30", datatype=URIRef(XSD + "date"))),
        ("encounter", CPTKG.serviceDate, Literal("20240105", datatype=URIRef(XSD + "date"))),
        ("encounter", CPTKG.patientAge, Literal("abc", datatype=URIRef(XSD + "integer"))),
        ("encounter", CPTKG.patientAge, Literal("119", datatype=URIRef(XSD + "int"))),
        ("encounter", CPTKG.patientAge, Literal("50")),
        ("procedure", CPTKG.withAnesthesia, Literal("yes")),
        ("procedure", CPTKG.withAnesthesia, Literal("yes", datatype=URIRef(XSD + "boolean"))),
        ("procedure", CPTKG["count"], Literal("97", datatype=URIRef(XSD + "byte"))),
    ]


def _literal_edit(rec, rng, edits=LITERAL_EDITS):
    from rdflib import Graph

    g = Graph()
    for t in rec.graph:
        g.add(t)
    on, pred, lit = rng.choice(edits)
    node = rec.node if on == "encounter" else g.value(rec.node, CPTKG.procedure)
    if node is not None:
        g.remove((node, pred, None))
        g.add((node, pred, lit))
    return Record(id=rec.id, file=rec.file, line=rec.line, graph=g, node=rec.node)


def test_seeded_batch_with_input_errors(kb, reference, fast):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # rdflib warns about "yes"^^xsd:boolean
        records = seeded_batch(kb)
        before = dict(fast.stats)
        found = compare(reference, fast, records)
    shapes = {r[4] for r in found}
    assert len(records) >= 250
    assert {"EncounterWellFormed", "ProcedureWellFormed", "ImagingUseWellFormed", "ActBelongsToOneEncounter",
            "AgeGivenWhenCodesDependOnIt"} <= shapes
    generic = {m.split(" on ")[0] for m in (r[5] for r in found) if m.startswith(("Value ", "More than"))}
    assert len(generic) >= 3, f"pySHACL's generic messages (shapes without sh:message) must be among the results: {generic}"
    # most encounters are checked here; those with literals the engines read differently are not
    assert set(fast.validator.engine.store) == fast.validator.engine.base_quads(), "the batch must leave the store as it found it"
    fast_n = fast.stats["fast_encounters"] - before["fast_encounters"]
    ref_n = fast.stats["reference_encounters"] - before["reference_encounters"]
    assert fast_n + ref_n == len(records) and fast_n > len(records) // 2 and ref_n > 0


def test_first_violation_of_a_record_as_the_reference_within_one_shape(kb, reference, fast):
    """derive reports a record's first violation: where all of a record's results come from one
    shape (pySHACL's order across shapes follows the hash seed), the order is the reference's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = seeded_batch(kb, n=150, seed=5, error_rate=0.8)
        want, got = reference.check(records), fast.check(records)
    compared = 0
    for rid, results in want.items():
        if len({r["shape"] for r in results}) == 1 and len(results) > 1:
            compared += 1
            assert [(r["message"], str(r["focus"])) for r in got[rid]] == \
                   [(r["message"], str(r["focus"])) for r in results], rid
    assert compared > 0


# ---------------------------------------------------------------------------------------------
# the engine refuses: the reference answers


def test_refused_shapes_mean_the_reference_checks_everything(kb, reference, monkeypatch):
    import reasoner.fastcheck as fc

    def refuse(*args, **kwargs):
        raise fc.Unsupported("refused for the test")

    monkeypatch.setattr(fc, "FastValidator", refuse)
    checker = fc.FastEncounterChecker(kb)
    assert checker.validator is None and "refused for the test" in checker.refused
    records = derive_records(kb)[:5] + [r for p in ENCOUNTER_CASES
                                        for r in read_records(p, "encounter", kb.content.context) if r.error is None]
    compare(reference, checker, records)
    assert checker.stats["fast_encounters"] == 0 and checker.stats["reference_encounters"] == len(records)


def test_a_batch_the_store_cannot_hold_goes_to_the_reference(kb, reference, fast):
    """"50"^^xsd:int and "50"^^xsd:integer are one term in the fast store (it keeps derived
    integer types as xsd:integer), yet pySHACL tells them apart: the engine refuses the batch and
    the reference checks all of it."""
    records = derive_records(kb)
    edits = [("encounter", CPTKG.patientAge, Literal("50", datatype=URIRef(XSD + "int"))),
             ("encounter", CPTKG.patientAge, Literal("50", datatype=URIRef(XSD + "integer")))]
    batch = [_literal_edit(rec, random.Random(0), [edits[i % len(edits)]]) for i, rec in enumerate(records[:8])]
    before = dict(fast.stats)
    compare(reference, fast, batch)
    assert fast.stats["refused_batches"] == before["refused_batches"] + 1
    assert fast.stats["reference_encounters"] - before["reference_encounters"] == len(batch)
    # the store is back to the knowledge graph: the next batch is checked here, and right
    assert set(fast.validator.engine.store) == fast.validator.engine.base_quads()
    compare(reference, fast, records)
    assert fast.stats["fast_encounters"] - before["fast_encounters"] == len(records)


def test_a_refused_batch_goes_to_the_reference(kb, reference, fast, monkeypatch):
    import reasoner.fast as fast_module

    calls = []

    def refuse(engine):
        calls.append(engine)
        raise fast_module.Unsupported("refused for the test")

    monkeypatch.setattr(fast_module, "_refuse_nested_suspects", refuse)
    records = [r for p in ENCOUNTER_CASES for r in read_records(p, "encounter", kb.content.context)
               if r.error is None]
    before = dict(fast.stats)
    compare(reference, fast, records)
    assert calls, "the fast path was tried"
    assert fast.stats["refused_batches"] == before["refused_batches"] + 1
    assert fast.stats["reference_encounters"] - before["reference_encounters"] == len(records)


@pytest.mark.parametrize("reset_above", [0, 10**9], ids=["new-store", "quad-by-quad"])
def test_batches_leave_the_store_as_they_found_it(kb, reference, reset_above):
    """Small batches are taken out quad by quad (and the store renewed after many), large ones by a
    new store: both leave the knowledge graph alone, and the results stay the reference's."""
    checker = FastEncounterChecker(kb)
    checker.validator.engine.reset_above_lines = reset_above
    checker.validator.engine.renew_after_quads = 1500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = seeded_batch(kb, n=120, seed=3)
    for i in range(0, len(records), 40):
        compare(reference, checker, records[i:i + 40])
        assert set(checker.validator.engine.store) == checker.validator.engine.base_quads()


def test_a_large_knowledge_graph_is_kept_between_batches(kb):
    """Refilling the store costs in proportion to the knowledge graph, so with a large one (an
    imported edit table) batches are taken out quad by quad and the store renewed only after as
    many quads as the graph holds; the term maps are copied back only when a batch added terms."""
    from rdflib import Graph

    from reasoner.fast import Engine

    small = FastEncounterChecker(kb).validator.engine
    assert (small.reset_above_lines, small.renew_after_quads) == (Engine.RESET_ABOVE_LINES, Engine.RENEW_AFTER_QUADS)
    g = Graph()
    for i in range(60_000):
        g.add((URIRef(f"https://w3id.org/cptkg/edit/x{i}"), CPTKG.column1, URIRef(f"https://w3id.org/cptkg/code/{i}")))
    large = Engine(small.sg)
    large.load_base(g)
    assert (large.reset_above_lines, large.renew_after_quads) == (15_000, 60_000)
    codec = large.codec
    before = codec._to
    loaded = large.load_batch([], ["<https://w3id.org/cptkg/data/a> <https://w3id.org/cptkg/vocab#code> "
                                   "<https://w3id.org/cptkg/code/1> ."])
    large.unload_batch(loaded)
    assert codec._to is before and not loaded[1]  # N-Triples made no term; taken out quad by quad
    loaded = large.load_batch([(URIRef("https://w3id.org/cptkg/data/b"), CPTKG.units, Literal(2))], [])
    assert len(codec._to) > len(codec._base[0])
    large.unload_batch(loaded)
    assert codec._to == codec._base[0] and set(large.store) == large.base_quads()
    # a batch line the knowledge graph holds stays in the store when the batch is taken out
    held = "<https://w3id.org/cptkg/edit/x7> <https://w3id.org/cptkg/vocab#column1> <https://w3id.org/cptkg/code/7> ."
    loaded = large.load_batch([], [held, "<https://w3id.org/cptkg/data/c> <https://w3id.org/cptkg/vocab#code> "
                                         "<https://w3id.org/cptkg/code/7> ."])
    assert len(large.store) == len(g) + 1 and len(loaded[0]) == 1
    large.unload_batch(loaded)
    assert set(large.store) == large.base_quads()
    # a quad whose hash is the hash of a knowledge-graph quad (a collision) is still the batch's
    line = next(iter(ox.parse(held.replace("x7", "y7"), format=ox.RdfFormat.N_TRIPLES)))
    large.base_hashes.add(hash(line))
    loaded = large.load_batch([], [held.replace("x7", "y7")])
    assert loaded[0] == [line]
    large.unload_batch(loaded)
    assert set(large.store) == large.base_quads()
