"""Reading the knowledge base: oxigraph's Turtle parser (reasoner.kb.read_turtle_fast, for large
files such as a generated edit table) gives the graph rdflib's parser gives, or declines."""
from pathlib import Path

import pytest
from rdflib import BNode, Graph
from rdflib.compare import isomorphic

from harness import ROOT
from reasoner import kb
from reasoner.errors import ContentError

TURTLE_FILES = sorted(p for d in ("ontology", "shapes", "tests/cases") for p in (ROOT / d).rglob("*.ttl"))


def same_reading(path):
    """(read fast?, the fast graph, rdflib's graph)."""
    ref = Graph().parse(path, format="turtle")
    g = Graph()
    return kb.read_turtle_fast(Path(path), g), g, ref


def assert_same(g, ref):
    assert len(g) == len(ref)
    assert isomorphic(g, ref)
    assert set(g.namespaces()) == set(ref.namespaces())


def test_every_content_file_reads_the_same():
    fast = 0
    for path in TURTLE_FILES:
        ok, g, ref = same_reading(path)
        if ok:
            fast += 1
            assert_same(g, ref)
        else:
            assert len(g) == 0, path
    # most files pass the screen, so the comparison above is not empty
    assert fast >= 0.9 * len(TURTLE_FILES), (fast, len(TURTLE_FILES))


EDGE = r'''@prefix ex: <http://example.org/ns#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix : <http://example.org/default/> .
@base <http://example.org/base/> .
ex:a ex:int 1, -0, +7 ; ex:dec 1.50, .5 ; ex:dbl 1e3, 1.0E-2 ; ex:bool true, false ;
    ex:typed "01"^^xsd:integer, "1E3"^^xsd:double, "2024-02-30"^^xsd:date, "abc"^^xsd:integer,
        "2024-03-15"^^xsd:date, "x"^^ex:custom ;
    ex:str "plain", 'single', """long
text "quoted" here""", "esc \" \\ \n \t \u00e9 \U0001F600", "caf\u00e9"@en, "Grüße"@de ;
    ex:rel <relative>, <#frag>, <../up> ;
    ex:bn [ ex:p 1 ; ex:q [ ex:r 2 ] ], _:x, _:x ;
    ex:list ( 1 "two" ex:three ) ;
    :local ex:a\-b .
_:x ex:p _:y .
'''


def test_edge_cases_read_the_same(tmp_path):
    p = tmp_path / "edge.ttl"
    p.write_text(EDGE, encoding="utf-8")
    ok, g, ref = same_reading(p)
    assert ok
    assert_same(g, ref)


@pytest.mark.parametrize("text", [
    '@prefix ex: <http://example.org/> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> . ex:a ex:p "x"^^xsd:string .',
    '@prefix ex: <http://example.org/> . ex:a ex:p "x"^^<http://www.w3.org/2001/XMLSchema#string> .',
    '@prefix ex: <http://example.org/> . ex:a ex:p "colour"@en-GB .',
])
def test_what_oxigraph_cannot_tell_apart_goes_to_rdflib(tmp_path, text):
    p = tmp_path / "screened.ttl"
    p.write_text(text, encoding="utf-8")
    g = Graph()
    assert kb.read_turtle_fast(p, g) is False
    assert len(g) == 0
    # and parse_turtle still reads it, through rdflib, whatever the size threshold
    ref = Graph().parse(p, format="turtle")
    kb_graph = kb.parse_turtle(p)
    assert isomorphic(kb_graph, ref)


def test_blank_node_labels_are_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(kb, "FAST_TURTLE_BYTES", 0)
    g = Graph()
    for name in ("one", "two"):
        p = tmp_path / f"{name}.ttl"
        p.write_text('@prefix ex: <http://example.org/> . _:x ex:p ex:o .', encoding="utf-8")
        kb.parse_turtle(p, g)
    assert len({s for s in g.subjects() if isinstance(s, BNode)}) == 2


def test_a_large_file_with_a_syntax_error_gets_rdflibs_message(tmp_path, monkeypatch):
    monkeypatch.setattr(kb, "FAST_TURTLE_BYTES", 0)
    p = tmp_path / "bad.ttl"
    p.write_text('@prefix ex: <http://example.org/> .\nex:a ex:p ex:o ;\nex:b .\n', encoding="utf-8")
    assert kb.read_turtle_fast(p, Graph()) is False
    with pytest.raises(ContentError) as exc:
        kb.parse_turtle(p)
    assert "bad.ttl" in str(exc.value) and "cannot parse Turtle" in str(exc.value)


def test_the_knowledge_base_is_the_same_read_either_way(monkeypatch):
    from reasoner.content import discover

    content = discover(ROOT)
    ref = kb.KnowledgeBase(content)
    calls = []
    real = kb.read_turtle_fast

    def spy(path, graph):
        calls.append(real(path, graph))
        return calls[-1]
    monkeypatch.setattr(kb, "FAST_TURTLE_BYTES", 0)
    monkeypatch.setattr(kb, "read_turtle_fast", spy)
    fast = kb.KnowledgeBase(content)
    assert calls.count(True) >= len(content.modules) - 2   # every module but the screened ones
    assert_same(fast.graph, ref.graph)
