"""The fast engine (reasoner/fast.py) against the reference (pySHACL, reasoner/validate.py).

* Every validate case file: the findings of both engines are equal, field for field.
* A seeded synthetic batch of 10,000 claims (reasoner/synth.py: correct claims and claims with
  every kind of error the coding shapes catch) is validated by the fast engine in one batch. The
  reference takes about 0.08 s a claim, so here it runs on a seeded sample of 1,000 of those claims
  (bench/bench_validate.py --sample N compares more); on the sample the findings are equal, and the fast
  engine gives the same findings for the sample whether it is validated alone or inside the
  10,000 (batching changes nothing). Every coding shape fires in the sample.
* The proven-equivalent query rewrites (reasoner/fastsparql.py) change no finding: the fast engine
  with and without them agrees on a smaller sample (without them it is quadratic).
* The knowledge-base shapes on the knowledge graph, with seeded faults, and the encounter-input
  shapes on every encounter case: same results.

Equality is on every field of a finding (claim, line, code, severity, message, shape, field,
sources, focus, file) and on the multiset of findings, with two allowances where SPARQL leaves
the answer unspecified and the two engines legitimately differ:
  * a message built with GROUP_CONCAT (CodeValidOnDate's replacement codes, DocumentationMissing's
    elements) lists the same items in another order (pySHACL's order even differs between two lines
    of one run): compared as multisets of words;
  * a constraint with LIMIT and no ORDER BY (GuidanceCategoryMismatch) reports one of the rows of
    its focus node, which one is up to the engine: the message is not compared (the finding is).

Claims carrying a literal the two SPARQL engines read differently (an ill-typed date such as
"2024-13-45", which rdflib compares as a string and oxigraph refuses to compare) are validated by
the reference engine inside FastValidator (FastValidator.split). The JSON, CSV and FHIR readers
refuse such values as input errors; they can still come in Turtle (a test below).
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from functools import lru_cache

import pytest
from rdflib import Graph, URIRef

from harness import case_files, engine, load_case
from reasoner.fast import Engine, FastValidator, Unsupported, validate_graphs
from reasoner.inputs import record_from_object
from reasoner.synth import generate_claims
from reasoner.validate import finding_key, run_shacl, shapes_graph, unspecified_shapes
from reasoner.vocab import SH

BATCH = 10_000
SAMPLE = 1_000
SEED = 20_260_401


@lru_cache(maxsize=None)
def fast_validator(overlays=()):
    kb = engine(overlays)[0]
    return FastValidator(kb)


@lru_cache(maxsize=None)
def unspecified():
    return unspecified_shapes(shapes_graph(engine()[0].content, "coding"))


def canonical(finding):
    return finding_key(finding, unspecified())


def assert_same(reference, fast, what):
    a, b = Counter(map(canonical, reference)), Counter(map(canonical, fast))
    if a != b:
        only_ref = list((a - b).elements())[:5]
        only_fast = list((b - a).elements())[:5]
        pytest.fail(f"{what}: the engines differ\n  reference only: {only_ref}\n  fast only: {only_fast}")


def _records(claims, kb, file):
    logging.disable(logging.WARNING)  # rdflib logs every ill-typed literal the malformed claims carry
    try:
        out = [record_from_object(c, "claim", kb.content.context, file=file, index=i) for i, c in enumerate(claims)]
    finally:
        logging.disable(logging.NOTSET)
    # the generator writes some ill-typed dates ("2024-02-30"): the reader refuses those, for both
    # engines alike (reasoner/inputs.py); every other synthetic claim must load
    bad = [r for r in out if r.error is not None and r.error.field != "dateOfService"]
    assert not bad, f"synthetic claims that do not load: {[str(r.error) for r in bad[:3]]}"
    out = [r for r in out if r.error is None]
    return out


@pytest.mark.parametrize("path", case_files("validate"), ids=lambda p: p.stem)
def test_case_files_identical(path):
    case = load_case(path)
    overlays = tuple(case.get("overlays", ()))
    kb, _, reference, _ = engine(overlays)
    claims = case["claims"] if "claims" in case else [case["claim"]]
    records = [record_from_object(c, "claim", kb.content.context, file=path, index=i) for i, c in enumerate(claims)]
    ref, _ = reference.validate(records)
    fast, report = fast_validator(overlays).validate(records)
    assert_same(ref, fast, path.name)
    assert isinstance(report.conforms, bool)


@lru_cache(maxsize=None)
def synthetic():
    kb = engine()[0]
    claims = generate_claims(kb, BATCH + BATCH // 50, seed=SEED)  # some are refused as input errors
    records = _records(claims, kb, "synthetic.json")[:BATCH]
    assert len(records) == BATCH
    sample = sorted(random.Random(SEED).sample(range(len(records)), SAMPLE))
    return kb, records, [records[i] for i in sample]


@lru_cache(maxsize=None)
def batch_findings():
    _, records, _ = synthetic()
    findings, _ = fast_validator().validate(records)
    return findings


@lru_cache(maxsize=None)
def sample_reference():
    _, _, sample = synthetic()
    return engine()[2].validate(sample)[0]


def test_synthetic_batch_identical():
    """10,000 claims through the fast engine, 1,000 of them through the reference as well."""
    kb, records, sample = synthetic()
    ref = sample_reference()
    ids = {r.id for r in sample}
    in_batch = [f for f in batch_findings() if f["claim"] in ids]
    alone, _ = fast_validator().validate(sample)
    assert_same(ref, alone, "sample of 1,000 validated alone")
    assert_same(ref, in_batch, "sample of 1,000 inside the batch of 10,000")
    fired = {f["shape"] for f in ref}
    coding = {str(s).rsplit("/", 1)[-1] for s in shapes_graph(kb.content, "coding").subjects(SH.targetClass, None)}
    assert coding <= fired, f"shapes that never fire in the sample: {sorted(coding - fired)}"


def test_synthetic_batch_has_every_kind():
    findings = batch_findings()
    by_shape = Counter(f["shape"] for f in findings)
    assert len(findings) > BATCH // 2
    assert all(n >= 10 for n in by_shape.values()), by_shape


def test_rewrites_change_nothing():
    """The fast engine with and without its query rewrites (MINUS for NOT EXISTS, OPTIONAL moved)."""
    kb, _, sample = synthetic()
    small = sample[:300]
    plain = FastValidator(kb)
    plain.engine = Engine(plain.sg, rewrite=False)
    plain.engine.load_base(kb.graph)
    a, _ = plain.validate(small)
    b, _ = fast_validator().validate(small)
    assert_same(a, b, "rewritten and plain queries")


def test_every_plan_gives_the_reference_findings():
    """Where a constraint has several proven-equivalent batch queries (rewrites 2 and 2b), the
    engine picks one by measurement (Engine.plan): each of them, forced, gives the reference's
    findings on the sample; so does the adaptive choice over a run of batches."""
    kb, _, sample = synthetic()
    ref = sample_reference()
    several = [c for c in fast_validator().engine.checks if c.kind == "sparql" and len(c.sparql.plans) > 1]
    assert several, "no constraint has a second plan: this test checks nothing"
    for plan in (0, 1):
        v = FastValidator(kb)
        v.engine.plans = plan
        found, _ = v.validate(sample)
        assert_same(ref, found, f"plan {plan} forced")
    v = FastValidator(kb)
    found = []
    for start in range(0, len(sample), 100):  # ten batches: trials of each plan, then the choice
        found.extend(v.validate(sample[start:start + 100])[0])
    assert_same(ref, found, "adaptive plans over ten batches")
    stats = [st for plans in v.engine._plan_time.values() for st in plans]
    assert stats and all(runs >= Engine.TRIALS or runs == 1 for _, _, runs in stats)  # 1: given up


def test_plan_choice():
    """Each plan tried TRIALS times, except one whose first trial cost GIVE_UP times the best
    plan's time per weight; then the least time per weight."""
    from reasoner.fast import GIVE_UP, choose_plan

    def choices(cost, n):  # cost: seconds per batch of weight 1, by plan
        stats, order = [[0.0, 0, 0] for _ in cost], []
        for _ in range(n):
            i = choose_plan(stats, 2)
            order.append(i)
            stats[i][0] += cost[i]
            stats[i][1] += 1
            stats[i][2] += 1
        return order

    assert choices([1.0, GIVE_UP * 1.5, 0.5], 8) == [0, 0, 1, 2, 2, 2, 2, 2]
    assert choices([1.0, GIVE_UP * 0.9], 6) == [0, 0, 1, 1, 0, 0]  # not bad enough to give up


def test_knowledge_graph_stars_as_sub_selects_give_the_reference_findings():
    """Rewrite 6 (a star of the knowledge graph evaluated as a sub-SELECT) applies only where the
    knowledge graph holds Engine.WRAP_ROWS solutions of the star, which the bundled graph never
    does (checked below: its plans are as written). Forced on every star of two patterns or more
    (a threshold of 0), in every plan (a third one among them: the batch query without the
    EXISTS rewrites, wrapped), the findings are the reference's."""
    kb, _, sample = synthetic()
    ref = sample_reference()
    v = FastValidator(kb)
    eng = v.engine
    assert max(eng.star_rows.values()) < Engine.WRAP_ROWS
    assert all(c.sparql.plans == c.sparql.written_plans for c in eng.checks if c.kind == "sparql")
    eng.wrap_rows = 0
    eng.wrap_large_stars()
    wrapped = [c for c in eng.checks if c.kind == "sparql" and c.sparql.plans != c.sparql.written_plans]
    assert len(wrapped) >= 10 and any(c.kind == "core" and c.query != c.written_query for c in eng.checks)
    assert any("cptkg:column1 ?c1" in p.split("{ SELECT", 2)[-1] for c in wrapped for p in c.sparql.plans)
    assert any(len(c.sparql.plans) == len(c.sparql.written_plans) + 1 for c in wrapped)  # as written, wrapped
    for plan in (0, 1, 2):
        eng.plans = plan
        found, _ = v.validate(sample)
        assert_same(ref, found, f"every star wrapped, plan {plan}")


def test_kb_shapes_with_seeded_faults():
    """The knowledge-base shapes (sh:or, sh:in, sh:languageIn, sh:uniqueLang, sh:class ...) on the
    knowledge graph with triples removed and values changed at random: same results."""
    kb = engine()[0]
    sg = shapes_graph(kb.content, "kb")
    rng = random.Random(SEED)
    triples = sorted(kb.graph, key=lambda t: tuple(map(str, t)))
    for round_ in range(2):
        data = Graph()
        for t in triples:
            if rng.random() < 0.03:
                continue  # a missing fact
            if rng.random() < 0.01:
                t = (t[0], t[1], URIRef("https://w3id.org/cptkg/vocab#Nonsense"))  # a wrong value
            data.add(t)
        _, ref = run_shacl(Graph() + data, sg)
        conforms, fast = validate_graphs(data, sg, allow_warnings=True)
        key_ref = Counter((str(r["focus"]), r["shape"], r["severity"], str(r["path"]), str(r["value"])) for r in ref)
        key_fast = Counter()
        for r in fast:
            owner = r.shape
            while not isinstance(owner, URIRef):
                owner = sg.value(None, SH.property, owner) or sg.value(None, SH.sparql, owner)
            key_fast[(str(r.focus), str(owner).rsplit("/", 1)[-1], {SH.Violation: "violation", SH.Warning: "warning",
                      SH.Info: "info"}[r.severity], str(r.path), str(r.value))] += 1
        assert key_ref == key_fast, (f"round {round_}: reference only {list((key_ref - key_fast).items())[:5]}, "
                                     f"fast only {list((key_fast - key_ref).items())[:5]}")
        assert len(key_ref) > 20


def test_refuses_what_it_does_not_implement():
    sg = Graph().parse(data="""
        @prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <http://example.org/> .
        ex:S a sh:NodeShape ; sh:targetClass ex:C ; sh:rule [ a sh:TripleRule ] .""", format="turtle")
    with pytest.raises(Unsupported, match="rule"):
        Engine(sg)
    sg = Graph().parse(data="""
        @prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <http://example.org/> .
        ex:S a sh:NodeShape ; sh:targetClass ex:C ; sh:property [ sh:path ex:p ; sh:frobnicate 3 ] .""",
                       format="turtle")
    with pytest.raises(Unsupported, match="frobnicate"):
        Engine(sg)


def test_encounter_shapes_on_encounter_cases():
    """The encounter-input shapes (sh:or, sh:nodeKind, sh:alternativePath with sh:inversePath,
    sh:targetObjectsOf, SPARQL constraints) on every encounter case: same results and messages."""
    from pathlib import Path

    from reasoner.inputs import read_records

    kb = engine()[0]
    sg = shapes_graph(kb.content, "encounter")
    paths = sorted((Path(__file__).parent / "cases" / "encounter").glob("*.json"))
    assert paths
    for path in paths:
        data = Graph() + kb.graph
        for rec in read_records(path, "encounter", kb.content.context):
            if rec.error is None:
                data += rec.graph
        _, ref = run_shacl(Graph() + data, sg)
        _, fast = validate_graphs(data, sg, allow_warnings=True)
        sev = {SH.Violation: "violation", SH.Warning: "warning", SH.Info: "info"}
        a = Counter((str(r["focus"]), r["severity"], r["message"], str(r["path"])) for r in ref)
        b = Counter((str(r.focus), sev[r.severity], str(r.messages[0]), str(r.path)) for r in fast)
        assert a == b, f"{path.name}: reference only {list((a - b).items())[:3]}, fast only {list((b - a).items())[:3]}"


def test_ill_typed_literals_from_turtle_go_to_the_reference(tmp_path):
    """Turtle claims are taken as written: a claim whose date or units are ill-typed is validated by
    pySHACL inside the fast engine, and the findings are the reference's."""
    from reasoner.inputs import read_records
    from reasoner.validate import ClaimValidator

    kb = engine()[0]
    lines = []
    for cid, date, units in (("ok", "2024-06-03", "1"), ("baddate", "2024-02-30", "1"), ("badunits", "2024-06-03", "two")):
        lines.append(f"""<{cid}> a cptkg:Claim ; cptkg:claimId "{cid}" ; cptkg:line <{cid}-L1>, <{cid}-L2> .
<{cid}-L1> a cptkg:ClaimLine ; cptkg:lineNumber 1 ; cptkg:code cpt:64483 ; cptkg:units "{units}"^^xsd:integer ;
  cptkg:serviceDate "{date}"^^xsd:date ; cptkg:servicePlace pos:11 ; cptkg:claimType claim:professional .
<{cid}-L2> a cptkg:ClaimLine ; cptkg:lineNumber 2 ; cptkg:code cpt:77003 ; cptkg:units 1 ;
  cptkg:serviceDate "{date}"^^xsd:date ; cptkg:servicePlace pos:11 ; cptkg:claimType claim:professional .""")
    ttl = tmp_path / "claims.ttl"
    ttl.write_text("""@prefix cptkg: <https://w3id.org/cptkg/vocab#> . @prefix cpt: <https://w3id.org/cptkg/code/> .
@prefix pos: <https://w3id.org/cptkg/pos/> . @prefix claim: <https://w3id.org/cptkg/claim-type/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
""" + "\n".join(lines) + "\n")
    logging.disable(logging.WARNING)
    try:
        records = [r for r in read_records(ttl, "claim", kb.content.context) if r.error is None]
        assert len(records) == 3
        fast = FastValidator(kb)
        fast_findings, _ = fast.validate(records)
        # rdflib's SUM raises on "two"^^xsd:integer: the reference cannot validate that claim at all
        # (the fast engine then gives its own answer, see FastValidator._validate_reference)
        ref_findings, _ = ClaimValidator(kb).validate([r for r in records if r.id != "badunits"])
    finally:
        logging.disable(logging.NOTSET)
    assert fast.stats["reference_claims"] == 2 and fast.stats["fast_claims"] == 1
    assert_same(ref_findings, [f for f in fast_findings if f["claim"] != "badunits"],
                "Turtle claims with ill-typed literals")
    assert {f["claim"] for f in fast_findings if f["shape"] == "ClaimLineWellFormed"} == {"baddate", "badunits"}


def test_messages_filled_in_as_pyshacl_does():
    """format_message fills a message in one pass where that is safe; on random templates and
    values (braces, backslashes, placeholders inside values, unbound and prefixed names) it gives
    what pySHACL's replacement, variable by variable with re.sub, gives, errors included."""
    import re

    from reasoner.fast import format_message

    def pyshacl(msg, bound):
        for var, val in bound.items():
            msg = re.sub("{{[?$]{}}}".format(var), str(val), msg)
        return msg

    rnd = random.Random(11)
    pieces = ["{?a}", "{$b}", "{?c}", "{?ab}", "x", " ", "{", "}", "\\", "?", "$", "a", "é", "{?a", "\\n"]
    values = ["1", "x y", "{?b}", "}", "{", "\\1", "\\n", "é", "", "{?c}", "a\\b", URIRef("https://x/y")]
    unsafe = 0
    for _ in range(20_000):
        msg = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8)))
        bound = {k: rnd.choice(values) for k in rnd.sample(["a", "b", "c", "ab"], rnd.randint(0, 4))}
        outcome = []
        for f in (pyshacl, format_message):
            try:
                outcome.append(f(msg, bound))
            except re.error as exc:
                outcome.append(type(exc))
        assert outcome[0] == outcome[1], (msg, bound)
        unsafe += "{" in "".join(map(str, bound.values())) and "{" in msg
    assert unsafe > 1000  # the careful path is exercised too
