"""The derivation rules on pyoxigraph: the same SPARQL, a batch of encounters at a time.

The reference is reasoner.rules.Deriver (rdflib, one encounter at a time). This engine loads the
knowledge graph into an Oxigraph store and runs the same rules, stage by stage to a fixpoint,
over a whole batch of encounters: the rules join through the encounter and its acts, so
encounters do not see each other and a batch gives what one-by-one gives. The differential tests
(tests/test_fast_derive.py) hold it to the reference on every derive case, case by case and with
every case's encounter in one batch.

What differs from the reference, each step exact:
  * The rule texts are rewritten (reasoner/fastsparql.py, `rewrite_construct`: rewrites 2b, 3, 4
    and 5, each with its equivalence argument there): oxigraph plans the inside of a correlated
    FILTER [NOT] EXISTS without the outer bindings, so it scanned the whole batch once per row and
    the time per encounter grew with the batch; the rewritten WHERE has the same solutions and
    is planned once. Rewrite 5 and the choice of what a rewritten EXISTS re-states use the
    predicates and classes only the knowledge graph holds (`_knowledge_only`: neither a term of
    the JSON-LD context nor in a rule's template); they change the plan, not the solutions. The
    template is kept verbatim; a text the conditions do not cover runs as written.
    `rewrite=False` runs the original texts (for comparison).
  * A rule is run again within the fixpoint only when a triple it can match, in a place where
    more triples can add solutions, was added since it last ran (fastsparql.pattern_dependencies:
    the predicates and rdf:type classes its pattern names, with their sign): otherwise its
    solutions are those it gave then, or fewer (the new triples only feed a NOT EXISTS), and all
    it constructs from them is already added. So the first rule (reading only the encounter and
    the knowledge graph) runs once; a stage whose rules only suppress lines (NOT EXISTS
    { ?s cptkg:suppresses ?line }) is not run a second time; and the screens are not run again
    after a stage that only suppressed lines or added modifiers.
  * The knowledge graph is the store's default graph, the batch a named graph (less what the
    knowledge graph already holds) and derived triples another (less what the store already
    holds, as the reference adds only triples not in its graph); the rules read the union of
    all graphs, which is then a set, as rdflib's graph is. Records written as N-Triples by
    reasoner/fastinput.py are loaded as they are, without an rdflib graph.
  * A fresh store every RENEW quads loaded: oxigraph's in-memory store keeps every IRI and
    literal it has seen in its dictionary after the quads are removed, so memory would grow
    along a stream of batches. With a larger knowledge graph, after as many quads as it holds:
    refilling the store costs about 2.5 us a quad of it (2.4 s with an imported edit table of
    87,724 edits, which before this was paid on every batch).

Measured (the derive cases replicated as bench/bench_derive.py does, CPU time per encounter of
the rule queries, one process on a shared 2-core machine): before 10.0 / 16.1 / 37.0 / 88.1 ms at
batches of 50 / 500 / 2,000 / 5,000 encounters (quadratic: choose-combination-code,
include-guidance-in-primary, select-code-by-criteria, the screens); after 0.9 / 0.65 / 0.6 / 0.66
ms, about flat from 500 on (at 50 each rule's per-query costs weigh: parsing and planning,
the knowledge-graph side of the joins). derive_many all included: 12.9 / 19.3 / 39.9 / 90.8 ms
before, 1.9 / 1.7 / 1.6 / 1.8 ms after; beyond the queries, building the rdflib graphs of the
result (_split) is the largest part.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pyoxigraph as ox
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import RDF
from rdflib.plugins.stores.memory import SimpleMemory

from . import fastsparql as fs
from .errors import ContentError
from .fast import WRAP_ROWS, WRITTEN_NT, Engine, choose_plan, star_counter
from .rules import MAX_PASSES, PRODUCT_TYPES, Deriver
from .terms import cached, to_rdflib
from .vocab import CPTKG, RULE, bind_all

BATCH = ox.NamedNode("urn:cptkg:graph:batch")
DERIVED = ox.NamedNode("urn:cptkg:graph:derived")
_DERIVED_NQ = str(DERIVED)
_RDF_TYPE = ox.NamedNode(str(RDF.type))
_DERIVED_BY = ox.NamedNode(str(CPTKG.derivedBy))
_PRODUCTS = {ox.NamedNode(str(t)) for t in PRODUCT_TYPES}
_DEFAULT = ox.DefaultGraph()
_DEDUP_BATCH = (f"DELETE {{ GRAPH <{BATCH.value}> {{ ?s ?p ?o }} }} "
                f"WHERE {{ GRAPH <{BATCH.value}> {{ ?s ?p ?o }} ?s ?p ?o }}")
RENEW = 250_000  # quads loaded into one store before a fresh one is made (bounds memory: about 7 batches of 1000)


class Derivation(Graph):
    """The graph of one encounter's derivation. Its namespace bindings (vocab.bind_all, as the
    reference's graph has them) are made when first asked for: binding the prefixes of a new
    rdflib graph costs more than deriving the encounter, and most derivations are only read.

    Its triples are kept as a list until a caller uses the graph as rdflib does (iterates it,
    serializes it, asks for a pattern): only then are they put in rdflib's SimpleMemory store.
    The summary of a batch run reads a derivation through subjects/objects/value alone, which are
    answered from two small indexes in the order SimpleMemory would give (insertion order), so
    most derivations never build a store."""

    def __init__(self):
        self._pending = []      # triples not yet in the store (None once they are)
        self._spo = self._pos = None
        super().__init__(store=SimpleMemory())

    # rdflib's Graph reaches its store through this (name-mangled) attribute
    @property
    def _Graph__store(self):
        store = self.__dict__["_real_store"]
        pending = self.__dict__.get("_pending")
        if pending:
            self._pending = None
            self._spo = self._pos = None
            for t in pending:
                store.add(t, self)
        else:
            self._pending = None
        return store

    @_Graph__store.setter
    def _Graph__store(self, store):
        self.__dict__["_real_store"] = store

    def add_derived(self, triple):
        """Add a triple made by the engine from terms it made (no checks, as Graph.add would do)."""
        if self._pending is not None:
            self._pending.append(triple)
            self._spo = self._pos = None
        else:
            self.store.add(triple, self)

    def _indexes(self):
        if self._spo is None:
            spo, pos = {}, {}
            for s_, p, o in self._pending:
                spo.setdefault(s_, {}).setdefault(p, {})[o] = None
                pos.setdefault(p, {}).setdefault(o, {})[s_] = None
            self._spo, self._pos = spo, pos
        return self._spo, self._pos

    def subjects(self, predicate=None, object=None, unique=False):
        if self._pending is None or predicate is None or object is None:
            return super().subjects(predicate, object, unique)
        return iter(list(self._indexes()[1].get(predicate, {}).get(object, ())))

    def objects(self, subject=None, predicate=None, unique=False):
        if self._pending is None or subject is None or predicate is None:
            return super().objects(subject, predicate, unique)
        return iter(list(self._indexes()[0].get(subject, {}).get(predicate, ())))

    def value(self, subject=None, predicate=RDF.value, object=None, default=None, any=True):
        if self._pending is None or subject is None or predicate is None or object is not None or not any:
            return super().value(subject, predicate, object, default, any)
        return next(self.objects(subject, predicate), default)

    @property
    def namespace_manager(self):
        nm = self._Graph__namespace_manager
        if nm is None:
            nm = Graph.namespace_manager.fget(self)
            bind_all(self)
        return nm

    @namespace_manager.setter
    def namespace_manager(self, nm):
        Graph.namespace_manager.fset(self, nm)


def load_graph(store, graph, to_graph=None):
    """Add an rdflib graph to the store, keeping its blank node ids (Store.load would rename them,
    and a derived triple naming a blank node of the knowledge graph, such as a criteria set, would
    then name a node the reference's graph does not have)."""
    data = graph.serialize(format="nt", encoding="utf-8")
    quads = ox.parse(data, format=ox.RdfFormat.N_TRIPLES, rename_blank_nodes=False)
    if to_graph is not None:
        quads = (ox.Quad(q.subject, q.predicate, q.object, to_graph) for q in quads)
    store.extend(quads)


_RDF_TYPE_NT = f"<{RDF.type}>"


def _keys(p, o):
    """What a derived triple (predicate and object in N-Triples) can change: its predicate, and
    for rdf:type its class."""
    if p == _RDF_TYPE_NT:
        return (p[1:-1], ("type", o[1:-1])) if o[0] == "<" else (p[1:-1],)
    return (p[1:-1],)


def _knowledge_only(kb, prepared):
    """For fastsparql's rewrites: a function telling whether a key of pattern_reads (a predicate,
    or ("type", class)) names triples only the knowledge graph can hold, neither an encounter
    (the terms of the JSON-LD context) nor a rule (the predicates and classes of the CONSTRUCT
    templates). Only the plan depends on it. None when the context cannot be read."""
    try:
        ctx = json.loads(Path(kb.content.context).read_text(encoding="utf-8"))["@context"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    prefixes = {k: v for k, v in ctx.items() if isinstance(v, str) and v.endswith(("#", "/"))}
    given = {str(RDF.type)}
    for value in ctx.values():
        iri = value.get("@id") if isinstance(value, dict) else value
        if not isinstance(iri, str) or iri.startswith("@"):
            continue
        prefix, _, local = iri.partition(":")
        iri = prefixes[prefix] + local if prefix in prefixes else iri
        given.update((iri, ("type", iri)))
    made = _template_keys(prepared, classes=True)
    if made is None:
        return None
    made.update((str(CPTKG.derivedBy), ("type", str(CPTKG.CodeLine))))
    return lambda key: key not in given and key not in made


def _template_keys(prepared, classes=False):
    """The predicates the rules' CONSTRUCT templates can make (and with classes, the classes
    their rdf:type triples name, as ("type", class)); None when a template leaves one open."""
    made = set()
    for q in prepared:
        for s_, p, o in q.algebra.get("template") or ():
            if not isinstance(p, URIRef):
                return None
            made.add(str(p))
            if classes and p == RDF.type:
                if not isinstance(o, URIRef):
                    return None
                made.add(("type", str(o)))
    return made


class FastDeriver:
    wrap_rows = WRAP_ROWS
    plans = "adaptive"

    def __init__(self, kb, rewrite=True):
        self.kb = kb
        reference = Deriver(kb)  # parses and orders the same rules
        prepared = [p for _, rules in reference.stages for _, p in rules] + [p for _, p in reference.screens]
        bounded = _knowledge_only(kb, prepared)

        def text(t):
            return fs.rewrite_construct(t, bounded=bounded) if rewrite else t

        self.originals = {r.id: r.text for _, rules in reference.stages for r, _ in rules}
        self.originals.update({r.id: r.text for r, _ in reference.screens})
        self.stages = [[(r.id, text(r.text)) for r, _ in rules] for _, rules in reference.stages]
        self.screens = [(r.id, text(r.text)) for r, _ in reference.screens]
        self.reads = {}  # rule -> the keys whose new triples may give it new solutions (None: any)
        for rid, t in self.originals.items():
            deps = fs.pattern_dependencies(t)
            self.reads[rid] = None if deps is None else {k for k, sign in deps.items() if sign != "-"}
        base = ox.Store()
        load_graph(base, kb.graph)
        # rewrite 6 with the knowledge graph's counts (fast.Engine.WRAP_ROWS)
        self.star_rows = {}
        large = star_counter(base, self.wrap_rows, self.star_rows, use_default_graph_as_union=True)
        self.stages = [[(rid, fs.wrap_large_stars(t, large)) for rid, t in rules] for rules in self.stages]
        self.screens = [(rid, fs.wrap_large_stars(t, large)) for rid, t in self.screens]
        # A rule with a large star has a second plan: its text as written (EXISTS filters not
        # rewritten) with the star wrapped. After the hash join with the large relation few rows
        # remain, and oxigraph runs an EXISTS per row by index lookups; rewrites 2b and 4 re-state
        # part of the group, joined with the large relation on fewer variables. Which is faster
        # depends on the rule: each is timed on the first batches (as fast.Engine.plan does).
        self.alternatives = {}   # rule -> [plans]
        self._plan_time = {}     # rule -> [[seconds, encounters, runs] per plan]
        for rid, t in [x for rules in self.stages for x in rules] + self.screens:
            original = self.originals[rid]
            if rewrite and t != text(original):
                written = fs.wrap_large_stars(original, large)
                if written != t:
                    self.alternatives[rid] = [t, written]
        self._base = list(base)
        # A rule's triple is new unless the store already holds it: of the knowledge graph, only
        # the triples whose predicate a template can make need remembering (with a full edit
        # table, 845,000 triples were kept for the few thousand that can be).
        made = _template_keys(prepared)
        self._known_base = {q.triple for q in (
            self._base if made is None else
            (q for p in sorted(made) for q in base.quads_for_pattern(None, ox.NamedNode(p), None)))}
        # the store just built holds what a renewed one would (_base): the first batches use it
        self.store, self._loaded = base, 0

    def _renew(self):
        self.store = ox.Store()
        self.store.extend(self._base)
        self._loaded = 0

    def _stale(self, rule_id, state):
        """Must the rule run (again)? Not when no triple it can match was added since it last ran."""
        last = state["ran"].get(rule_id)
        if last is None:
            return True
        reads = self.reads.get(rule_id)
        changed = state["changed"]
        if reads is None:
            return state["tick"] > last
        return any(changed.get(k, -1) > last for k in reads)

    def _run(self, rules, state):
        """Run rules until none adds a triple. A triple is new when this batch's rules have not
        made it (seen) and the store held it neither in the knowledge graph nor in the batch
        (known: the same as asking the store, without making a quad per row)."""
        seen, derived, known = state["seen"], state["derived"], state["known"]
        for _ in range(MAX_PASSES):
            grew = False
            for rule_id, text in rules:
                if not self._stale(rule_id, state):
                    continue
                state["ran"][rule_id] = state["tick"]
                plans = self.alternatives.get(rule_id)
                if plans is not None:
                    i, text = self._plan(rule_id, plans)
                    t0 = time.perf_counter()
                try:
                    triples = list(self.store.query(text, use_default_graph_as_union=True))
                except (SyntaxError, OSError, ValueError) as exc:
                    raise ContentError(f"rule failed on the fast engine: {exc}") from exc
                if plans is not None:
                    st = self._plan_time.setdefault(rule_id, [[0.0, 0, 0] for _ in plans])[i]
                    st[0] += time.perf_counter() - t0
                    st[1] += state["weight"]
                    st[2] += 1
                # ox.Triple hashes by value at a fraction of the cost of reading its terms out
                # (each attribute read makes a new Python object), so rows are compared whole
                uniq = dict.fromkeys(triples)
                fresh = [t for t in uniq if t not in seen and t not in known]
                seen.update(uniq)
                if not fresh:
                    continue
                grew = True
                rule_iri = ox.NamedNode(str(RULE[rule_id]))
                new = list(fresh)
                for t in uniq:  # as the reference: every product node the rule constructs
                    if t.predicate == _RDF_TYPE and t.object in _PRODUCTS:
                        key = ox.Triple(t.subject, _DERIVED_BY, rule_iri)
                        if key not in seen:
                            seen.add(key)
                            new.append(key)
                state["tick"] += 1
                changed, tick = state["changed"], state["tick"]
                # each new triple as N-Triples text (subject, predicate, object), made in one call:
                # reading the terms out of an ox.Triple makes a Python object per attribute read
                texts = [str(t) for t in new]
                for x in texts:
                    _, p, o = x.split(" ", 2)
                    for k in _keys(p, o):
                        changed[k] = tick
                derived.extend(texts)
                # into the derived graph as N-Quads text, blank node ids kept: a tenth of the cost
                # of making an ox.Quad from each triple's terms; oxigraph wrote the text, so its
                # lenient parser (no IRI checks) reads it back the same, a quarter faster
                self.store.extend(ox.parse("\n".join(f"{x} {_DERIVED_NQ} ." for x in texts),
                                           format=ox.RdfFormat.N_QUADS, rename_blank_nodes=False,
                                           lenient=True))
            if not grew:
                return
        raise ContentError(f"rules do not settle after {MAX_PASSES} passes: {', '.join(r for r, _ in rules)}")

    def _plan(self, rule_id, plans):
        """(index, text) of the plan to run, chosen as fast.choose_plan does (time per
        encounter); `plans` set to an index fixes the plan (the tests check each)."""
        if self.plans != "adaptive":
            i = min(int(self.plans), len(plans) - 1)
            return i, plans[i]
        i = choose_plan(self._plan_time.setdefault(rule_id, [[0.0, 0, 0] for _ in plans]), Engine.TRIALS)
        return i, plans[i]

    def _load(self, records):
        nt, graphs = [], []
        for rec in records:
            lines = getattr(rec, "nt", None)
            if lines is not None and getattr(rec, "_graph", None) is None:
                nt.extend(lines)
            else:
                graphs.append(rec.graph)
        if nt:
            self.store.load("\n".join(nt), to_graph=BATCH, **WRITTEN_NT)
        if graphs:
            merged = Graph()
            for g in graphs:
                merged += g
            load_graph(self.store, merged, BATCH)
        self.store.update(_DEDUP_BATCH)  # what the knowledge graph holds is not the batch's
        self._loaded += len(nt) + sum(len(g) for g in graphs)

    def derive_many(self, records):
        """Derive a batch; return {record.node: rdflib Graph of its derivation}, as Deriver.derive gives."""
        if self._loaded > max(RENEW, len(self._base)):
            self._renew()
        self._load(records)
        known = set(self._known_base)
        known.update(q.triple for q in self.store.quads_for_pattern(None, None, None, BATCH))
        state = {"seen": set(), "derived": [], "ran": {}, "changed": {}, "tick": 0, "known": known,
                 "weight": len(records)}
        try:
            for rules in self.stages:
                self._run(rules, state)
                if self.screens:
                    self._run(self.screens, state)
            self._loaded += len(state["derived"])
            return self._split(records, state["derived"])
        finally:
            self.store.clear_graph(BATCH)
            self.store.clear_graph(DERIVED)

    def derive(self, record_graph):
        class _R:
            graph = record_graph
            node = None
        return next(iter(self.derive_many([_R]).values()), Derivation())

    def _split(self, records, texts):
        """Group derived triples (N-Triples text, as _run keeps them) by encounter: lines link to
        it; suppressions and modifier assignments link to lines; provenance follows its subject.
        Each distinct term is made into an rdflib term once per batch."""
        rows = [x.split(" ", 2) for x in texts]
        by_subject = {}
        for row in rows:
            by_subject.setdefault(row[0], []).append(row)
        enc_key = f"<{CPTKG.encounter}>"
        line_enc = {s: o for s, p, o in rows if p == enc_key}
        owner = dict(line_enc)
        linked = (f"<{CPTKG.suppresses}>", f"<{CPTKG.assignsTo}>")
        for s, p, o in rows:
            if p in linked and o in line_enc:
                owner[s] = line_enc[o]
        graphs = {}
        for rec in records:
            graphs[rec.node] = Derivation()
        term = cached(_term_from_nt)
        node_of = {f"<{rec.node}>": rec.node for rec in records if rec.node is not None}
        for subject, enc in owner.items():
            target = graphs.get(node_of.get(enc))
            if target is None:
                if len(records) == 1:
                    target = next(iter(graphs.values()))
                else:
                    continue
            add = target.add_derived
            for s, p, o in by_subject.get(subject, []):
                add((term(s), term(p), term(o)))
        return graphs


def _term_from_nt(x):
    """The rdflib term of one N-Triples term as oxigraph writes it (an IRI as it is, a blank node
    label, a literal with N-Triples escapes, which oxigraph's parser reads back)."""
    if x[0] == "<":
        return URIRef(x[1:-1])
    if x.startswith("_:"):
        return BNode(x[2:])
    return to_rdflib(next(iter(ox.parse(f"<urn:x:s> <urn:x:p> {x} .", format=ox.RdfFormat.N_TRIPLES))).object)
