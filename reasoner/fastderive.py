"""The derivation rules on pyoxigraph: the same SPARQL, a batch of encounters at a time.

The reference is reasoner.rules.Deriver (rdflib, one encounter at a time). This engine loads the
knowledge graph once into an Oxigraph store and runs the very same rule texts, stage by stage to
a fixpoint, over a whole batch of encounters: the rules join through the encounter and its acts,
so encounters do not see each other and a batch gives what one-by-one gives. The differential
test (tests/test_fast_derive.py) holds it to the reference on every derive case.
"""
from __future__ import annotations

import pyoxigraph as ox
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import RDF

from .errors import ContentError
from .rules import MAX_PASSES, PRODUCT_TYPES, Deriver
from .vocab import CPTKG, RULE, bind_all

BATCH = ox.NamedNode("urn:cptkg:graph:batch")
DERIVED = ox.NamedNode("urn:cptkg:graph:derived")
_RDF_TYPE = ox.NamedNode(str(RDF.type))
_DERIVED_BY = ox.NamedNode(str(CPTKG.derivedBy))
_PRODUCTS = {ox.NamedNode(str(t)) for t in PRODUCT_TYPES}
_LINKS = [ox.NamedNode(str(p)) for p in (CPTKG.encounter,)]


def to_rdflib(term):
    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if isinstance(term, ox.Literal):
        if term.language:
            return Literal(term.value, lang=term.language)
        return Literal(term.value, datatype=URIRef(term.datatype.value))
    raise TypeError(term)


def load_graph(store, graph, to_graph=None):
    data = graph.serialize(format="nt", encoding="utf-8")
    if to_graph is None:
        store.load(data, format=ox.RdfFormat.N_TRIPLES)
    else:
        store.load(data, format=ox.RdfFormat.N_TRIPLES, to_graph=to_graph)


class FastDeriver:
    def __init__(self, kb):
        self.kb = kb
        reference = Deriver(kb)  # parses and orders the same rules; texts are reused as they are
        self.stages = [[(r.id, r.text) for r, _ in rules] for _, rules in reference.stages]
        self.screens = [(r.id, r.text) for r, _ in reference.screens]
        self.store = ox.Store()
        load_graph(self.store, kb.graph)
        self.view = [ox.DefaultGraph(), BATCH, DERIVED]

    def _run(self, rules, seen):
        for _ in range(MAX_PASSES):
            grew = False
            for rule_id, text in rules:
                try:
                    triples = list(self.store.query(text, default_graph=self.view))
                except (SyntaxError, OSError, ValueError) as exc:
                    raise ContentError(f"rule failed on the fast engine: {exc}") from exc
                new = []
                for t in triples:
                    key = (t.subject, t.predicate, t.object)
                    if key not in seen:
                        seen.add(key)
                        new.append(t)
                if not new:
                    continue
                grew = True
                quads = [ox.Quad(t.subject, t.predicate, t.object, DERIVED) for t in new]
                rule_iri = ox.NamedNode(str(RULE[rule_id]))
                for t in new:
                    if t.predicate == _RDF_TYPE and t.object in _PRODUCTS:
                        key = (t.subject, _DERIVED_BY, rule_iri)
                        if key not in seen:
                            seen.add(key)
                            quads.append(ox.Quad(t.subject, _DERIVED_BY, rule_iri, DERIVED))
                self.store.extend(quads)
            if not grew:
                return
        raise ContentError(f"rules do not settle after {MAX_PASSES} passes: {', '.join(r for r, _ in rules)}")

    def derive_many(self, records):
        """Derive a batch; return {record.node: rdflib Graph of its derivation}, as Deriver.derive gives."""
        batch = Graph()
        for rec in records:
            batch += rec.graph
        load_graph(self.store, batch, BATCH)
        seen = set()
        try:
            for rules in self.stages:
                self._run(rules, seen)
                if self.screens:
                    self._run(self.screens, seen)
            return self._split(records, seen)
        finally:
            self.store.clear_graph(BATCH)
            self.store.clear_graph(DERIVED)

    def derive(self, record_graph):
        class _R:
            graph = record_graph
            node = None
        return next(iter(self.derive_many([_R]).values()), bind_all(Graph()))

    def _split(self, records, triples):
        """Group derived triples by encounter: lines link to it; suppressions and modifier
        assignments link to lines; provenance follows its subject."""
        by_subject = {}
        for s, p, o in triples:
            by_subject.setdefault(s, []).append((s, p, o))
        line_enc = {}
        enc_key = ox.NamedNode(str(CPTKG.encounter))
        for s, p, o in triples:
            if p == enc_key:
                line_enc[s] = o
        owner = dict(line_enc)
        sup, assigns = ox.NamedNode(str(CPTKG.suppresses)), ox.NamedNode(str(CPTKG.assignsTo))
        for s, p, o in triples:
            if p in (sup, assigns) and o in line_enc:
                owner[s] = line_enc[o]
        graphs = {}
        for rec in records:
            graphs[rec.node] = bind_all(Graph())
        node_of = {ox.NamedNode(str(rec.node)): rec.node for rec in records if rec.node is not None}
        for subject, enc in owner.items():
            target = graphs.get(node_of.get(enc))
            if target is None:
                if len(records) == 1:
                    target = next(iter(graphs.values()))
                else:
                    continue
            for s, p, o in by_subject.get(subject, []):
                target.add((to_rdflib(s), to_rdflib(p), to_rdflib(o)))
        return graphs
