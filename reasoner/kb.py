"""Loading the knowledge base: every module into its own named graph, plus rule triples.

`KnowledgeBase.graph` is the union that rules run over; `KnowledgeBase.dataset` keeps each
module in its own named graph (served and exported that way), so an analyst can ask which
module asserted a fact and overlays stay separable.
"""
from __future__ import annotations

from pathlib import Path

from rdflib import Dataset, Graph, Literal, URIRef
from rdflib.namespace import DCTERMS, RDF, RDFS

from .content import Content, discover
from .errors import ContentError
from .vocab import BASE, CPTKG, PREFIXES, RULE, bind_all

GRAPH = BASE + "graph/"
RULES_GRAPH = URIRef(GRAPH + "rules")


def expand_curie(curie: str, where=None) -> URIRef:
    if curie.startswith("http://") or curie.startswith("https://"):
        return URIRef(curie)
    prefix, _, local = curie.partition(":")
    if prefix not in PREFIXES or not local:
        raise ContentError(f"cannot expand '{curie}' (known prefixes: {', '.join(sorted(PREFIXES))})", file=where)
    return URIRef(str(PREFIXES[prefix]) + local)


def parse_turtle(path: Path, graph: Graph | None = None) -> Graph:
    graph = graph if graph is not None else Graph()
    try:
        graph.parse(path, format="turtle")
    except Exception as exc:  # rdflib raises several types; all mean: this file is bad
        raise ContentError(f"cannot parse Turtle: {exc}", file=path) from exc
    return graph


def rule_triples(content: Content) -> Graph:
    """Turn query headers into rule: triples, so analysts can query the rules themselves."""
    g = bind_all(Graph())
    for q in content.all_queries():
        r = RULE[q.id]
        g.add((r, RDF.type, CPTKG.Rule))
        g.add((r, RDFS.label, Literal(q.title)))
        g.add((r, CPTKG.ruleKind, Literal(q.kind or q.role)))
        if q.stage:
            g.add((r, CPTKG.stage, Literal(q.stage)))
        g.add((r, CPTKG.status, Literal(q.status if q.role != "inactive" else "inactive")))
        g.add((r, CPTKG.file, Literal(q.path.relative_to(content.root).as_posix())))
        if q.header.get("description"):
            g.add((r, DCTERMS.description, Literal(q.header["description"])))
        if q.header.get("severity"):
            g.add((r, CPTKG.severity, Literal(q.header["severity"])))
        for s in q.sources:
            g.add((r, DCTERMS.source, expand_curie(s, q.path)))
    return g


class KnowledgeBase:
    def __init__(self, content: Content | None = None, overlays=()):
        self.content = content or discover(overlays=overlays)
        self.overlays = tuple(overlays) or getattr(self.content, "selected_overlays", ())
        self.dataset = bind_all(Dataset())
        self.graph = bind_all(Graph())
        self.module_graphs = {}
        for module in self.content.modules:
            self._add_module(module)
        for name in self.overlays:
            for module in self.content.overlays.get(name, []):
                self._add_module(module)
            self._apply_supersedes(name)
        rules = rule_triples(self.content)
        self._add_graph(RULES_GRAPH, rules)

    def _apply_supersedes(self, name):
        """An overlay states `<node> cptkg:supersedes <base statement>`: in that layer the base
        statement (an edit, a limit) does not hold. Its triples leave the union graph the rules
        run over; the module's own named graph keeps them, and `cptkg:supersededBy` says why."""
        for module in self.content.overlays.get(name, []):
            g = self.module_graphs[module.id]
            for by, old in g.subject_objects(CPTKG.supersedes):
                for t in list(self.graph.triples((old, None, None))):
                    self.graph.remove(t)
                self.graph.add((old, CPTKG.supersededBy, by))

    def _add_module(self, module):
        name = URIRef(GRAPH + module.id)
        g = parse_turtle(module.path)
        self.module_graphs[module.id] = g
        self._add_graph(name, g)

    def _add_graph(self, name, g):
        ng = self.dataset.graph(name)
        for t in g:
            ng.add(t)
            self.graph.add(t)

    def rules(self):
        """Active derive/edit rules of the base content and the selected overlays."""
        rules = [q for q in self.content.rules if q.active]
        for name in self.overlays:
            rules += [q for q in self.content.overlay_rules.get(name, []) if q.active]
        return rules


_CACHE = {}


def load(content: Content | None = None, overlays=()) -> KnowledgeBase:
    """Load (once per process) the knowledge base for a content root and overlay selection."""
    content = content or discover(overlays=overlays)
    key = (str(content.root), tuple(overlays))
    kb = _CACHE.get(key)
    if kb is None:
        kb = KnowledgeBase(content, overlays)
        _CACHE[key] = kb
    return kb
