"""Loading the knowledge base: every module into its own named graph, plus rule triples.

`KnowledgeBase.graph` is the union that rules run over; `KnowledgeBase.dataset` keeps each
module in its own named graph (served and exported that way), so an analyst can ask which
module asserted a fact and overlays stay separable.
"""
from __future__ import annotations

import re
from pathlib import Path

from rdflib import Dataset, Graph, Literal, URIRef
from rdflib.namespace import DCTERMS, RDF, RDFS
from rdflib.plugins.stores.memory import SimpleMemory

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


FAST_TURTLE_BYTES = 1 << 20  # files this large are read by oxigraph's parser (read_turtle_fast)
_LANG_TAG = re.compile(rb"@[A-Za-z][A-Za-z0-9-]*")


def parse_turtle(path: Path, graph: Graph | None = None) -> Graph:
    graph = graph if graph is not None else Graph()
    path = Path(path)
    try:
        if path.stat().st_size >= FAST_TURTLE_BYTES and read_turtle_fast(path, graph):
            return graph
    except OSError:
        pass  # rdflib names the problem below
    try:
        graph.parse(path, format="turtle")
    except Exception as exc:  # rdflib raises several types; all mean: this file is bad
        raise ContentError(f"cannot parse Turtle: {exc}", file=path) from exc
    return graph


def read_turtle_fast(path: Path, graph: Graph) -> bool:
    """Read a Turtle file into `graph` with oxigraph's parser, giving the triples and prefix
    bindings rdflib's parser gives; False (nothing added) where it might not, or where oxigraph
    cannot read the file, so the caller uses rdflib (and its error messages).

    A generated edit table of 90,000 edits (850,000 triples) takes rdflib's Turtle parser about
    a minute in every worker; this about a third of that, most of it rdflib's store. The terms
    are made as rdflib's parser makes them (`Literal(lexical, datatype=...)`, so rdflib's lexical
    normalisation applies alike, blank nodes fresh for each file), with two things oxigraph's
    reading cannot tell apart, which send the file to rdflib: a literal written with the
    datatype xsd:string (oxigraph gives every plain literal that datatype; rdflib keeps plain and
    explicit apart) and a language tag with a capital letter (oxigraph lowers it; rdflib keeps
    it). The screen is on the text, so it errs towards rdflib: `:string` or `#string` anywhere.
    tests/test_kb.py checks, file by file, that both readers give the same graph."""
    import pyoxigraph as ox

    data = path.read_bytes()
    if b":string" in data or b"#string" in data:
        return False
    if any(m.group().lower() != m.group() for m in _LANG_TAG.finditer(data)):
        return False
    try:
        parser = ox.parse(data, format=ox.RdfFormat.TURTLE, base_iri=path.absolute().as_uri(),
                          rename_blank_nodes=True)
        quads = list(parser)
    except (SyntaxError, ValueError):
        return False
    from .terms import cached, to_rdflib

    term = cached(to_rdflib)
    add, ctx = graph.store.add, graph
    for q in quads:
        add((term(q.subject), term(q.predicate), term(q.object)), ctx)
    for prefix, namespace in parser.prefixes.items():
        graph.bind(prefix, namespace)
    return True


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
    """`graph`, the union, is built as the modules are read: each module is parsed straight into
    it. The per-module graphs (`module_graphs`, for `cptkg check`) and the named-graph `dataset`
    (for `serve` and exports) are copies, made the first time they are asked for: a batch worker
    never needs them, and with an imported edit table of hundreds of thousands of edits each copy
    costs as much time and memory as the union itself."""

    def __init__(self, content: Content | None = None, overlays=()):
        self.content = content or discover(overlays=overlays)
        self.overlays = tuple(overlays) or getattr(self.content, "selected_overlays", ())
        # rdflib's SimpleMemory: the union needs no contexts, and its default store (Memory) keeps
        # a second set of every triple for them (with a generated edit table of 850,000 triples:
        # reading 40% faster, iterating 35% faster, about 120 MB less in every worker)
        self.graph = bind_all(Graph(store=SimpleMemory()))
        self._module_graphs = {}   # read so far (the overlays' own, which supersedes reads)
        self._modules = []         # every module, in load order
        self._dataset = None
        for module in self.content.modules:
            parse_turtle(module.path, self.graph)
            self._modules.append(module)
        for name in self.overlays:
            for module in self.content.overlays.get(name, []):
                g = parse_turtle(module.path)
                self._module_graphs[module.id] = g
                self._modules.append(module)
                for t in g:
                    self.graph.add(t)
            self._apply_supersedes(name)
        self.rule_graph = rule_triples(self.content)
        for t in self.rule_graph:
            self.graph.add(t)
        bind_all(self.graph)  # our prefixes, whatever the modules' files bound while read into it

    @property
    def module_graphs(self):
        """Module id -> the module's own graph, in load order (read again from its file once)."""
        if len(self._module_graphs) < len(self._modules):
            graphs = {}
            for module in self._modules:
                g = self._module_graphs.get(module.id)
                graphs[module.id] = g if g is not None else parse_turtle(module.path)
            self._module_graphs = graphs
        return self._module_graphs

    @property
    def dataset(self):
        """Every module in its own named graph, and the rule triples in theirs."""
        if self._dataset is None:
            ds = bind_all(Dataset())
            for mid, g in self.module_graphs.items():
                ng = ds.graph(URIRef(GRAPH + mid))
                for t in g:
                    ng.add(t)
            ng = ds.graph(RULES_GRAPH)
            for t in self.rule_graph:
                ng.add(t)
            self._dataset = ds
        return self._dataset

    def _apply_supersedes(self, name):
        """An overlay states `<node> cptkg:supersedes <base statement>`: in that layer the base
        statement (an edit, a limit) does not hold. Its triples leave the union graph the rules
        run over; the module's own named graph keeps them, and `cptkg:supersededBy` says why."""
        for module in self.content.overlays.get(name, []):
            g = self._module_graphs[module.id]
            for by, old in g.subject_objects(CPTKG.supersedes):
                for t in list(self.graph.triples((old, None, None))):
                    self.graph.remove(t)
                self.graph.add((old, CPTKG.supersededBy, by))

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
