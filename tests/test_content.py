"""The content itself: discovery, headers, identifiers, knowledge-base checks, and the coverage
gate (every rule fires in some case and is silent in another; every shape fires somewhere)."""
from pathlib import Path

import pytest
from rdflib import Graph, Namespace, URIRef
from rdflib.namespace import RDF

from harness import CASES, ROOT, case_files, derive_case, encounter_case, engine, load_case, validate_case
from reasoner.check import duplicate_problems, imports_problems, kb_shape_results, query_problems, shape_file_problems
from reasoner.content import discover
from reasoner.kb import parse_turtle
from reasoner.vocab import CPTKG, RULE, SH

TC = Namespace("https://w3id.org/cptkg/test#")


@pytest.fixture(scope="module")
def content():
    return discover(ROOT)


def test_discovery_finds_every_role(content):
    assert len(content.modules) >= 20
    assert {q.role for q in content.rules} == {"derive", "edits"}
    assert len(content.reports) >= 5
    for group in ("encounter", "coding", "kb"):
        assert content.shapes[group], f"no shapes in shapes/{group}"
    assert content.context is not None


def test_query_headers_complete_and_ids_unique(content):
    assert query_problems(content) == []


def test_every_module_imported_and_resolvable(content):
    assert imports_problems(content) == []


def test_no_duplicate_identifiers(content):
    kb = engine()[0]
    assert duplicate_problems(kb) == []


def test_shape_files_usable_by_pyshacl(content):
    assert shape_file_problems(content) == []


def test_knowledge_base_shapes_conform():
    kb = engine()[0]
    bad = [r for r in kb_shape_results(kb) if r["severity"] == "violation"]
    assert not bad, "\n".join(f"{r['focus']}: {r['message']} [{r['shape']}]" for r in bad)


def test_no_ama_descriptor_field(content):
    """Labels are ours; official descriptors may be loaded only by a licensed user, never shipped."""
    kb = engine()[0]
    assert not list(kb.graph.triples((None, CPTKG.officialDescriptor, None)))


def test_74220_is_not_a_barium_enema():
    """The source article's error: 74220 is the esophagus study; barium enema is 74270/74280."""
    kb = engine()[0]
    from reasoner.vocab import CPT

    crit = kb.graph.value(CPT["74220"], CPTKG.criteria)
    assert str(kb.graph.value(crit, CPTKG.kind)).endswith("/esophagus-study")
    for code in ("74270", "74280"):
        crit = kb.graph.value(CPT[code], CPTKG.criteria)
        assert str(kb.graph.value(crit, CPTKG.kind)).endswith("/colon-study")


# --- the coverage gate ---------------------------------------------------------------------

def _rules_fired():
    fired = {}
    for path in case_files("derive"):
        _, _, derived = derive_case(path)
        rules = {str(r).rsplit("/", 1)[-1] for r in derived.objects(None, CPTKG.derivedBy)}
        fired[path.stem] = rules
    return fired


def test_every_rule_fires_in_a_case_and_is_silent_in_another(content):
    fired = _rules_fired()
    for rule in content.rules:
        if not rule.active:
            continue
        firing = [case for case, rules in fired.items() if rule.id in rules]
        silent = [case for case, rules in fired.items() if rule.id not in rules]
        assert firing, f"rule {rule.id} fires in no derive case"
        assert silent, f"rule {rule.id} fires in every derive case"


def _shape_ids(paths):
    ids = set()
    for p in paths:
        g = parse_turtle(p)
        ids |= {str(s).rsplit("/", 1)[-1] for s in g.subjects(RDF.type, SH.NodeShape) if isinstance(s, URIRef)}
    return ids


def test_every_coding_shape_fires_in_a_case_and_is_silent_in_another(content):
    fired = {}
    for path in case_files("validate"):
        _, findings = validate_case(path)
        fired[path.stem] = {f["shape"] for f in findings}
    for shape in _shape_ids(content.shapes["coding"]):
        assert any(shape in s for s in fired.values()), f"shape {shape} fires in no validate case"
        assert any(shape not in s for s in fired.values()), f"shape {shape} fires in every validate case"


@pytest.mark.parametrize("path", case_files("encounter"), ids=lambda p: p.stem)
def test_encounter_input_case(path):
    case, records, problems = encounter_case(path)
    exp = case["expect"]
    if "error" in exp:
        errs = [r.error for r in records if r.error is not None]
        assert errs, "the file should be rejected"
        e = errs[0]
        assert exp["error"] in e.message and e.record == exp["record"] and e.field == exp["field"], str(e)
        return
    hits = [p for rid, ps in problems.items() for p in ps
            if p["shape"] == exp["shape"] and exp["message"].lower() in p["message"].lower()
            and (exp.get("record") is None or rid == exp["record"])]
    shown = {rid: [(p["shape"], p["message"]) for p in ps] for rid, ps in problems.items()}
    assert hits, f"expected {exp}; got {shown}"


def test_every_encounter_shape_fires_in_a_case(content):
    fired = set()
    for path in case_files("encounter"):
        _, _, problems = encounter_case(path)
        fired |= {p["shape"] for ps in problems.values() for p in ps}
    for shape in _shape_ids(content.shapes["encounter"]):
        assert shape in fired, f"encounter shape {shape} fires in no case"


def test_encounter_shapes_silent_on_worked_examples():
    kb, _, _, checker = engine()
    from reasoner.inputs import record_from_object

    records = [record_from_object(load_case(p)["encounter"], "encounter", kb.content.context, file=p, index=i)
               for i, p in enumerate(case_files("derive"))]
    problems = checker.check(records)
    assert not problems, problems


KB_CASES = sorted((CASES / "kb").glob("*.ttl"))


@pytest.mark.parametrize("path", KB_CASES, ids=lambda p: p.stem)
def test_kb_case(path):
    """Each file adds broken knowledge; `cptkg check` must name the shape (or HermiT must object),
    and not on the nodes the case lists as tc:silentOn."""
    kb = engine()[0]
    case = parse_turtle(path)
    me = URIRef(path.resolve().as_uri())
    expect_shape = case.value(me, TC.expectShape)
    focus = case.value(me, TC.focus)
    severity = str(case.value(me, TC.severity) or "violation")
    inconsistent = case.value(me, TC.expectInconsistent)
    data = Graph()
    data += kb.graph
    for t in case:
        if t[0] != me:
            data.add(t)

    class _KB:  # the knowledge base plus the case
        graph = data
        content = kb.content

    if inconsistent:
        from reasoner.owl import consistency

        ok, _, message = consistency(data)
        assert not ok, message
        return
    results = kb_shape_results(_KB)
    shape = str(expect_shape).rsplit("/", 1)[-1]
    hits = [r for r in results if r["shape"] == shape and r["severity"] == severity
            and (focus is None or r["focus"] == focus)]
    assert hits, f"expected {expect_shape} on {focus}; got {[(r['shape'], str(r['focus'])) for r in results]}"
    for quiet in case.objects(me, TC.silentOn):  # the same shape must not fire on these nodes
        wrong = [r["message"] for r in results if r["focus"] == quiet and r["shape"] == shape]
        assert not wrong, f"{expect_shape} must not fire on {quiet}; got {wrong}"


def test_every_kb_shape_fires_in_a_kb_case(content):
    expected = set()
    for path in KB_CASES:
        g = parse_turtle(path)
        expected |= {str(o).rsplit("/", 1)[-1] for o in g.objects(None, TC.expectShape)}
    for shape in _shape_ids(content.shapes["kb"]):
        assert shape in expected, f"kb shape {shape} has no case in tests/cases/kb"


def test_owl_consistent():
    from reasoner.owl import consistency

    ok, unsat, message = consistency(engine()[0].graph)
    assert ok and not unsat, message


@pytest.mark.parametrize("overlay", sorted(discover(ROOT).overlays), ids=str)
def test_overlay_loads_and_conforms(overlay):
    """Each overlay folder loads with --overlay NAME and keeps the knowledge base sound."""
    kb = engine((overlay,))[0]
    bad = [r for r in kb_shape_results(kb) if r["severity"] == "violation"]
    assert not bad, "\n".join(f"{r['focus']}: {r['message']} [{r['shape']}]" for r in bad)
    assert any(kb.graph.triples((None, RDF.type, CPTKG.Overlay)))


def test_overlay_supersedes_leaves_default_untouched():
    from reasoner.vocab import BASE

    default = engine()[0]
    layered = engine(("cpt-assistant-2008",))[0]
    old = URIRef(BASE + "edit/mue-77003")
    assert (old, CPTKG.maxUnits, None) in default.graph
    assert (old, CPTKG.maxUnits, None) not in layered.graph
    assert (old, CPTKG.supersededBy, None) in layered.graph
