"""The fast derivation engine (the same rules on pyoxigraph, batched) against the reference
(rdflib, one encounter at a time): identical output on every derive case, overlays included."""
import json
from collections import defaultdict

import pytest

from harness import case_files, engine, load_case
from reasoner.fastderive import FastDeriver
from reasoner.inputs import record_from_object
from reasoner.render import summarize_encounter


def _groups():
    groups = defaultdict(list)
    for p in case_files("derive"):
        groups[tuple(load_case(p).get("overlays", ()))].append(p)
    return sorted(groups.items())


@pytest.mark.parametrize("overlays,paths", _groups(), ids=lambda v: "+".join(v) if isinstance(v, tuple) else None)
def test_fast_equals_reference_on_every_case(overlays, paths):
    kb, deriver, _, _ = engine(overlays)
    fast = FastDeriver(kb)
    records = [record_from_object(load_case(p)["encounter"], "encounter", kb.content.context, file=p, index=i)
               for i, p in enumerate(paths)]
    batch = fast.derive_many(records)  # all cases of the group in one batch
    diffs = []
    for rec in records:
        ref = summarize_encounter(kb, rec, deriver.derive(rec.graph))
        got = summarize_encounter(kb, rec, batch[rec.node])
        if json.dumps(ref, sort_keys=True) != json.dumps(got, sort_keys=True):
            diffs.append(rec.id)
    assert not diffs, f"fast and reference engines differ on {diffs}"
    assert len(records) == len(paths)


def _renamed(encounter, tag):
    """The encounter with every id (and every reference to one) prefixed, so that the encounters
    of all cases can share one file (one base IRI) without sharing a node."""
    enc = json.loads(json.dumps(encounter))
    enc["id"] = f"{tag}-{enc['id']}"
    for key in ("procedures", "imaging"):
        for item in enc.get(key, []):
            if "id" in item:
                item["id"] = f"{tag}-{item['id']}"
            for ref in ("guides", "confirms"):
                if ref in item:
                    item[ref] = f"{tag}-{item[ref]}" if isinstance(item[ref], str) else [f"{tag}-{r}" for r in item[ref]]
    return enc


def test_fast_one_batch_of_every_case():
    """Every derive case's encounter in one batch (one file, distinct ids, no overlays; nodes such
    as performers are shared between encounters as in a real file): each encounter's derivation
    equals the reference's, triple for triple. Catches a rule that joins across encounters."""
    kb, deriver, _, _ = engine(())
    fast = FastDeriver(kb)
    paths = case_files("derive")
    records = [record_from_object(_renamed(load_case(p)["encounter"], f"c{i}"), "encounter", kb.content.context,
                                  file="all-cases.json", index=i) for i, p in enumerate(paths)]
    assert all(r.error is None for r in records)
    assert len({r.node for r in records}) == len(records) == len(paths) >= 70
    for rec in records[::2]:
        rec.graph  # these go through the rdflib path (parsed graph), the others as N-Triples
    batch = fast.derive_many(records)
    diffs = []
    for rec in records:
        ref = deriver.derive(rec.graph)
        got = batch[rec.node]
        if set(ref) != set(got):
            diffs.append(rec.id)
        elif json.dumps(summarize_encounter(kb, rec, ref), sort_keys=True) != json.dumps(
                summarize_encounter(kb, rec, got), sort_keys=True):
            diffs.append(rec.id)
    assert not diffs, f"fast (one batch) and reference engines differ on {diffs}"
    assert sum(len(g) for g in batch.values()) > 20 * len(records)


def test_knowledge_graph_stars_as_sub_selects_derive_as_the_reference(monkeypatch):
    """Rewrite 6 (fastsparql.wrap_large_stars) applies where the knowledge graph holds
    WRAP_ROWS solutions of a star, which the bundled graph never does; forced on every star (a
    threshold of 0), every derive case in one batch still derives what the reference derives."""
    from reasoner.fast import WRAP_ROWS
    kb, deriver, _, _ = engine(())
    assert max(FastDeriver(kb).star_rows.values()) < WRAP_ROWS
    written = [t for st in FastDeriver(kb).stages for _, t in st]
    monkeypatch.setattr(FastDeriver, "wrap_rows", 0)
    fast = FastDeriver(kb)
    wrapped = [t for st in fast.stages for _, t in st]
    changed = [t for a, t in zip(written, wrapped) if a != t]
    assert len(changed) >= 5 and any("cptkg:column1 ?c1" in t.split("{ SELECT", 1)[-1] for t in changed)
    paths = case_files("derive")
    records = [record_from_object(_renamed(load_case(p)["encounter"], f"c{i}"), "encounter", kb.content.context,
                                  file="all-cases.json", index=i) for i, p in enumerate(paths)]
    assert len(fast.alternatives) >= 5 and all(len(p) == 2 for p in fast.alternatives.values())
    ref = {rec.node: set(deriver.derive(rec.graph)) for rec in records}
    for plan in (0, 1, "adaptive"):  # rewritten and wrapped; as written and wrapped; chosen by time
        fast.plans = plan
        batch = fast.derive_many(records)
        diffs = [rec.id for rec in records if ref[rec.node] != set(batch[rec.node])]
        assert not diffs, f"with every star wrapped (plan {plan}), fast and reference differ on {diffs}"


def test_fast_without_rewrites_agrees():
    """The original rule texts on the fast engine give the same derivations (the rewrites change
    nothing but the plan)."""
    kb, _, _, _ = engine(())
    paths = case_files("derive")[:25]
    records = [record_from_object(_renamed(load_case(p)["encounter"], f"c{i}"), "encounter", kb.content.context,
                                  file="some-cases.json", index=i) for i, p in enumerate(paths)]
    rewritten = FastDeriver(kb).derive_many(records)
    plain = FastDeriver(kb, rewrite=False).derive_many(records)
    assert all(set(rewritten[r.node]) == set(plain[r.node]) for r in records)
    assert any(t != o for t, o in zip((x for s in FastDeriver(kb).stages for _, x in s),
                                      (x for s in FastDeriver(kb, rewrite=False).stages for _, x in s)))


def test_derivation_graph_binds_as_the_reference():
    from rdflib import Graph
    from reasoner.fastderive import Derivation
    from reasoner.vocab import bind_all
    assert sorted(Derivation().namespaces()) == sorted(bind_all(Graph()).namespaces())


def test_every_rule_pattern_is_read():
    """The fast engine runs a rule again only when a triple its pattern can match was added since
    it last ran (fastsparql.pattern_reads); a pattern it cannot read runs every time (still exact,
    slower). Every shipped rule is read."""
    for overlays in {tuple(load_case(p).get("overlays", ())) for p in case_files("derive")}:
        fast = FastDeriver(engine(overlays)[0])
        unread = [r for r, keys in fast.reads.items() if keys is None]
        assert not unread, overlays


def test_derivation_reads_before_and_after_its_store_is_built():
    """A derivation answers subjects/objects/value from its own indexes until the graph is used as
    rdflib uses it; the answers, in order, are those of a plain rdflib graph of the same triples."""
    from rdflib import Graph, Literal, URIRef

    from reasoner.fastderive import Derivation

    ex = lambda n: URIRef(f"https://example.org/{n}")
    triples = [(ex("l1"), ex("code"), ex("c1")), (ex("l1"), ex("act"), ex("a2")), (ex("l1"), ex("act"), ex("a1")),
               (ex("l2"), ex("code"), ex("c1")), (ex("l2"), ex("units"), Literal(2))]
    plain, d = Graph(), Derivation()
    for t in triples:
        plain.add(t)
        d.add_derived(t)
    asks = [("subjects", (ex("code"), ex("c1"))), ("objects", (ex("l1"), ex("act"))), ("value", (ex("l2"), ex("units"))),
            ("value", (ex("l3"), ex("units"))), ("objects", (ex("l9"), ex("act")))]
    answers = [list(getattr(d, m)(*a)) if m != "value" else d.value(*a) for m, a in asks]
    assert d._pending is not None, "reading through subjects/objects/value must not build the store"
    assert answers == [list(getattr(plain, m)(*a)) if m != "value" else plain.value(*a) for m, a in asks]
    assert len(d) == 5 and d._pending is None and set(d) == set(plain)
    d.add_derived((ex("l3"), ex("units"), Literal(1)))
    assert d.value(ex("l3"), ex("units")) == Literal(1) and len(d) == 6


def test_derived_terms_read_back_from_their_text():
    """The deriver keeps derived triples as oxigraph's N-Triples text and makes rdflib terms from
    it: the same terms as from oxigraph's own objects, escapes, languages and datatypes too."""
    import pyoxigraph as ox

    from reasoner.fastderive import _term_from_nt, to_rdflib

    xsd = "http://www.w3.org/2001/XMLSchema#"
    terms = [
        ox.NamedNode("https://w3id.org/cptkg/data/enc%201#line-77003"),
        ox.BlankNode("b0a1"),
        ox.Literal("plain"),
        ox.Literal('quote " backslash \\ newline \n tab \t return \r control \u0001 e\u0301 \U0001F600'),
        ox.Literal("mit Kontrast", language="de-CH"),
        ox.Literal("3", datatype=ox.NamedNode(xsd + "integer")),
        ox.Literal("2026-01-01", datatype=ox.NamedNode(xsd + "date")),
        ox.Literal("with spaces and <brackets> and ^^ and @", datatype=ox.NamedNode(xsd + "string")),
        ox.Literal(""),
    ]
    s, p = ox.NamedNode("https://w3id.org/cptkg/data/s"), ox.NamedNode("https://w3id.org/cptkg/vocab#p")
    for t in terms:
        text = str(ox.Triple(s, p, t))
        s_text, p_text, o_text = text.split(" ", 2)
        assert _term_from_nt(o_text) == to_rdflib(t), text
        assert type(_term_from_nt(o_text)) is type(to_rdflib(t))
        assert _term_from_nt(s_text) == to_rdflib(s) and _term_from_nt(p_text) == to_rdflib(p)
    assert _term_from_nt(str(ox.Triple(terms[1], p, s)).split(" ", 1)[0]) == to_rdflib(terms[1])


def test_store_renewed_after_as_many_quads_as_the_knowledge_graph_holds(monkeypatch):
    """Refilling the store costs in proportion to the knowledge graph (2.4 s with a full-size edit
    table), so it is renewed after RENEW batch quads or, with a larger graph, after as many as the
    graph holds; never on every batch. Derivations after a renewal are still the reference's."""
    import reasoner.fastderive as fd
    kb, deriver, _, _ = engine(())
    monkeypatch.setattr(fd, "RENEW", 10)  # the bundled graph (thousands of quads) is now the larger
    fast = FastDeriver(kb)
    renewed = []
    build = fast._renew
    fast._renew = lambda: (renewed.append(fast._loaded), build())
    paths = case_files("derive")[:10]
    records = [record_from_object(_renamed(load_case(p)["encounter"], f"r{i}"), "encounter", kb.content.context,
                                  file="renew.json", index=i) for i, p in enumerate(paths)]
    ref = {rec.node: set(deriver.derive(rec.graph)) for rec in records}
    runs = 0
    while not renewed:
        batch = fast.derive_many(records)
        runs += 1
        assert all(ref[r.node] == set(batch[r.node]) for r in records)
        assert runs < 1000
    assert runs > 1 and renewed[0] > len(fast._base) and fast._loaded < len(fast._base)
    batch = fast.derive_many(records)
    assert all(ref[r.node] == set(batch[r.node]) for r in records)


RESTATING_RULE = """# title: Test rule re-stating what the knowledge graph holds
# kind: derive
# stage: 7
# source: src:worked-examples
# status: active
# description: Constructs a triple the knowledge graph holds (the code's notation) and one it does not.
PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
CONSTRUCT { ?code skos:notation ?n . ?line cptkg:reason ?r . }
WHERE { ?line a cptkg:CodeLine ; cptkg:code ?code . ?code skos:notation ?n .
        BIND (CONCAT("restated ", ?n) AS ?r) }
"""


def test_a_rule_restating_a_knowledge_graph_triple_derives_only_what_is_new(tmp_path):
    """A triple a rule constructs is derived only when the store does not hold it already; the
    fast engine remembers the knowledge graph's triples with a predicate a template can make.
    Both engines: the re-stated notation is not in the derivation, the new reason is."""
    from harness import content_copy
    from rdflib import URIRef
    from rdflib.namespace import SKOS
    from reasoner.content import discover
    from reasoner.kb import load
    from reasoner.rules import Deriver

    root = content_copy(tmp_path / "content")
    (root / "queries" / "derive" / "zz-restate-notation.rq").write_text(RESTATING_RULE)
    kb = load(discover(root))
    reference, fast = Deriver(kb), FastDeriver(kb)
    assert f"<{SKOS.notation}>" in {str(t.predicate) for t in fast._known_base}
    paths = case_files("derive")[:8]
    records = [record_from_object(_renamed(load_case(p)["encounter"], f"k{i}"), "encounter", kb.content.context,
                                  file="restate.json", index=i) for i, p in enumerate(paths)]
    batch = fast.derive_many(records)
    restated = 0
    for rec in records:
        ref = set(reference.derive(rec.graph))
        assert ref == set(batch[rec.node]), rec.id
        # alone in its batch, a derived triple about no line of the encounter is still its own
        assert ref == set(fast.derive_many([rec])[rec.node]), rec.id
        assert not any(p == SKOS.notation for _, p, _ in ref)
        restated += sum(1 for _, p, o in ref if p == URIRef("https://w3id.org/cptkg/vocab#reason")
                        and str(o).startswith("restated "))
    assert restated > 0
