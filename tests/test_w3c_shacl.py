"""The W3C SHACL test suite (core and sparql) through the fast engine's generic entry point.

Every sht:Validate test either passes (same sh:conforms and the same multiset of results, each
compared on focus node, result path, value, severity, source shape and constraint component, blank
nodes compared as "a blank node" as pySHACL's own runner does) or is refused: the engine raises
`Unsupported` naming the shape and the component it does not implement. A test that neither passes
nor is refused fails. Tests whose expected result is sht:Failure pass when the engine refuses.

The suite lives outside the repository (../shared/w3c-shacl-tests, read-only in CI); the tests
skip with a reason when it is absent. `test_w3c_counts` prints passed / refused and guards the
count of passing tests against a silent fall.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDF

from reasoner.errors import ContentError
from reasoner.fast import Unsupported, validate_graphs
from reasoner.vocab import SH

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT.parent / "shared" / "w3c-shacl-tests"
MF = Namespace("http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#")
SHT = Namespace("http://www.w3.org/ns/shacl-test#")
MIN_PASSED = 114  # passing tests when this file was written (6 refused): a fall means a regression


_GRAPHS = {}


def _graph(uri):
    """The test file as parsed, keeping lexical forms: rdflib would otherwise turn "1"^^xsd:boolean
    into "true" and "none"^^xsd:boolean into "false" before any SHACL engine sees them (the suite
    tests both: core/property/uniqueLang-002, core/property/or-datatypes-001)."""
    import rdflib

    path = Path(str(uri).replace("file://", ""))
    if path not in _GRAPHS:
        saved = rdflib.NORMALIZE_LITERALS
        rdflib.NORMALIZE_LITERALS = False
        try:
            _GRAPHS[path] = Graph().parse(path, format="turtle", publicID=path.as_uri())
        finally:
            rdflib.NORMALIZE_LITERALS = saved
    return _GRAPHS[path]


def _manifest_tests(path, seen=None):
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    g = _graph(path.as_uri())
    out = []
    for inc in g.objects(None, MF.include):
        out.extend(_manifest_tests(Path(str(inc).replace("file://", "")), seen))
    for entry in sorted(g.subjects(RDF.type, SHT.Validate)):
        out.append((path, g, entry))
    return out


def _tests():
    if not (SUITE / "manifest.ttl").exists():
        return []
    return _manifest_tests(SUITE / "manifest.ttl")


TESTS = _tests()
def _path_text(g, node, depth=0):
    if isinstance(node, URIRef):
        return f"<{node}>"
    if node is None or depth > 10:
        return "?"
    if (node, RDF.first, None) in g:
        return "(" + " / ".join(_path_text(g, x, depth + 1) for x in Collection(g, node)) + ")"
    for p, fmt in ((SH.inversePath, "^{}"), (SH.zeroOrMorePath, "{}*"), (SH.oneOrMorePath, "{}+"),
                   (SH.zeroOrOnePath, "{}?")):
        x = g.value(node, p)
        if x is not None:
            return fmt.format(_path_text(g, x, depth + 1))
    alt = g.value(node, SH.alternativePath)
    if alt is not None:
        return "(" + " | ".join(_path_text(g, x, depth + 1) for x in Collection(g, alt)) + ")"
    return "?"


def _term(t):
    if t is None:
        return ""
    if isinstance(t, BNode):
        return "_:"
    if isinstance(t, Literal):
        return t.n3()
    return str(t)


def _expected(g, result_node):
    conforms = g.value(result_node, SH.conforms)
    out = Counter()
    for r in g.objects(result_node, SH.result):
        out[(_term(g.value(r, SH.focusNode)), _path_text(g, g.value(r, SH.resultPath))
             if g.value(r, SH.resultPath) is not None else "", _term(g.value(r, SH.value)),
             _term(g.value(r, SH.resultSeverity)), _term(g.value(r, SH.sourceShape)),
             _term(g.value(r, SH.sourceConstraintComponent)))] += 1
    return bool(conforms.value) if conforms is not None else None, out


def _actual(shapes, results):
    out = Counter()
    for r in results:
        out[(_term(r.focus), _path_text(shapes, r.path) if r.path is not None else "", _term(r.value),
             _term(r.severity), _term(r.shape), _term(r.component))] += 1
    return out


def run_test(manifest_graph, entry):
    """'passed', or 'refused: <reason>'; raises AssertionError when the engine is wrong."""
    action = manifest_graph.value(entry, MF.action)
    result = manifest_graph.value(entry, MF.result)
    data = _graph(manifest_graph.value(action, SHT.dataGraph))
    shapes = _graph(manifest_graph.value(action, SHT.shapesGraph))
    try:
        conforms, results = validate_graphs(data, shapes)
    except Unsupported as exc:
        return f"refused: {exc}"
    except ContentError as exc:
        if result == SHT.Failure:
            return "passed"
        raise AssertionError(f"engine error: {exc}")
    if result == SHT.Failure:
        raise AssertionError("expected a failure (the shapes are not valid SHACL), the engine validated")
    exp_conforms, expected = _expected(manifest_graph, result)
    actual = _actual(shapes, results)
    assert conforms == exp_conforms, f"conforms {conforms}, expected {exp_conforms}"
    assert actual == expected, (f"results differ\n  missing: {sorted((expected - actual).elements())}\n"
                                f"  extra:   {sorted((actual - expected).elements())}")
    return "passed"


def _id(t):
    path, _, entry = t
    return f"{path.parent.name}/{str(entry).rsplit('/', 1)[-1]}"


@pytest.mark.skipif(not TESTS, reason=f"W3C SHACL test suite not found at {SUITE}")
@pytest.mark.parametrize("case", TESTS, ids=[_id(t) for t in TESTS])
def test_w3c(case):
    _, g, entry = case
    outcome = run_test(g, entry)
    assert outcome == "passed" or outcome.startswith("refused: ")


@pytest.mark.skipif(not TESTS, reason=f"W3C SHACL test suite not found at {SUITE}")
def test_w3c_counts(capsys):
    passed, refused, failed = [], [], []
    for case in TESTS:
        try:
            outcome = run_test(case[1], case[2])
        except AssertionError as exc:
            failed.append((_id(case), str(exc).splitlines()[0]))
            continue
        (passed if outcome == "passed" else refused).append((_id(case), outcome))
    with capsys.disabled():
        print(f"\nW3C SHACL suite (core + sparql) on the fast engine: {len(passed)} passed, "
              f"{len(refused)} refused, {len(failed)} failed, of {len(TESTS)}")
        for name, why in refused:
            print(f"  refused {name}: {why[len('refused: '):][:140]}")
    assert not failed, failed
    assert len(passed) >= MIN_PASSED, f"only {len(passed)} W3C tests pass (floor {MIN_PASSED})"
