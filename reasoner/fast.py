"""The fast validator: SHACL shapes compiled once to whole-batch SPARQL, run on pyoxigraph.

pySHACL (reasoner/validate.py) stays the reference engine and the shapes in shapes/ the
specification. `FastValidator` has ClaimValidator's interface (`validate(records)` -> findings,
report) and gives the same findings: tests/test_fast_differential.py compares the two on every
validate case and on a seeded batch of 10,000 synthetic claims; tests/test_w3c_shacl.py runs the
W3C SHACL test suite through `validate_graphs`, the generic entry point.

Design
  * The knowledge graph is converted once to pyoxigraph terms and loaded into an in-memory Store.
    A batch of claims is added to the same default graph (triples the knowledge graph already
    holds are skipped, so the union keeps pySHACL's set semantics) and taken out after it: a
    small batch quad by quad, a large one by a new store refilled with the knowledge graph's
    quads (Engine.load_batch / unload_batch). Claims written as N-Triples by
    reasoner/fastinput.py (canonical literals only) are loaded as text, without rdflib terms.
  * Every shape with a target is compiled once, at construction, into SPARQL SELECT queries over
    the whole batch, one per constraint: the target becomes a pattern binding ?this to every focus
    node (`sh:targetClass` through rdf:type/rdfs:subClassOf*, `sh:targetNode`, `sh:targetSubjectsOf`,
    `sh:targetObjectsOf`, implicit class targets); a property shape adds `?this path ?value`; a
    core constraint becomes a filter on the value; a SHACL-SPARQL constraint becomes its own query
    with $this bound by that pattern (exact when every $this is read where the pattern has bound it,
    see reasoner/fastsparql.py; otherwise the query runs once per focus node with $this replaced by
    the node, which is SHACL's definition of pre-binding). `$PATH`, sh:prefixes (with owl:imports),
    $currentShape, ?failure, the deduplication of rows and the {?var} / {$this} messages follow
    pySHACL (sparql_based_constraints.py, constraint_component.py).
  * Nested shapes (sh:node, sh:not, sh:and, sh:or, sh:xone, sh:qualifiedValueShape, a property
    shape's own sh:property) become boolean SPARQL expressions "does not conform" built from EXISTS.
  * Implemented: sh:class, datatype, nodeKind, minCount, maxCount, min/maxExclusive, min/maxInclusive,
    minLength, maxLength, pattern (+flags), languageIn, uniqueLang, equals, disjoint, lessThan,
    lessThanOrEquals, not, and, or, xone, node, property, qualifiedValueShape (+min/max, disjoint),
    closed (+ignoredProperties), hasValue, in, sparql (SELECT), deactivated, severity, message.
    Anything else (SPARQL-based constraint components, sh:ask constraints, SHACL-AF rules and
    targets, recursive shapes, a SPARQL constraint inside a nested shape ...) makes the compiler
    raise `Unsupported` naming the shape and the component: nothing is silently ignored.
  * Messages: the shape's sh:message for core constraints (a short generic message of ours when it
    has none; pySHACL's generic wording is not reproduced); for SPARQL constraints the constraint's
    messages, filled in as pySHACL does.

Quadratic NOT EXISTS, and what is done about it
  oxigraph plans the inside of a FILTER [NOT] EXISTS without the variables the outer row binds, so
  a correlated EXISTS ("another line of the same claim ...") scans the batch once per row: the
  time grows with the square of the batch. Measured with bench/bench_validate.py --scaling (the
  coding shapes, compiled SPARQL alone, 2 shared cores): without the rewrites 1.8 / 3.4 / 5.8 ms a
  claim at 1,000 / 2,000 / 4,000 claims a batch (doubling with the batch); with them 0.63 / 0.64 /
  0.86 / 0.95 ms a claim at 1,000 / 2,000 / 4,000 / 8,000. The remedy is
  a rewrite proven to keep the solutions (reasoner/fastsparql.py, rewrite 2): FILTER NOT EXISTS
  { P } becomes MINUS { SELECT DISTINCT V WHERE { G' P } }, where G' re-states the triples of the
  enclosing group that bind the shared variables V (FILTER EXISTS becomes a join with the same
  sub-select); an OPTIONAL followed by more triples is moved after them when that is equivalent
  (rewrite 3, which oxigraph otherwise plans as a cross product of the knowledge graph). Where
  the conditions of the proof do not hold the query is left as written. Batching itself stays
  exact, so no sub-batching is needed; tests/test_fast_differential.py also checks that the
  rewritten and the plain queries give the same findings. A SHACL-SPARQL constraint also gets the
  plan of rewrite 2b (a small cover instead of the whole group, fastsparql.rewrite_select) when it
  differs; which plan is faster depends on the shape, so the engine times both on the first
  batches and keeps the faster (Engine.plan); every plan is held to the reference by the tests.

Where the two SPARQL engines read the data differently
  oxigraph stores some literals by value (canonical form; xsd:int, xsd:byte ... as xsd:integer):
  such literals are mapped back to the original term when they come out, sh:datatype is re-checked
  in Python with pySHACL's rules for them, and two literals oxigraph would merge make the batch go
  to the reference. A literal that rdflib and oxigraph evaluate differently (ill-typed for rdflib
  like "2024-13-45"^^xsd:date, which rdflib then compares as a string; or invalid for oxigraph
  only, like "20240105"^^xsd:date) makes its claim go to the reference engine, with any claim
  sharing a node with it (`FastValidator.split`; `FastValidator.stats` counts them). The JSON,
  CSV and FHIR readers refuse such values as input errors, so only Turtle input can bring them.
  A constraint with LIMIT and no ORDER BY keeps the first rows of each focus node: which rows is
  unspecified in SPARQL, so its message may name another row than pySHACL's; GROUP_CONCAT lists
  its items in the engine's order.
"""
from __future__ import annotations

import re
import time
from collections import defaultdict

import pyoxigraph as ox
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, XSD

from . import fastsparql as fs
from .errors import ContentError
from .terms import literal_to_rdflib
from .vocab import CPTKG, SH

SEVERITY = {SH.Violation: "violation", SH.Warning: "warning", SH.Info: "info"}
SEVERITY_ORDER = {"violation": 0, "warning": 1, "info": 2}

# How the store reads the N-Triples reasoner/fastinput.py writes: that text is valid by
# construction (see there), so oxigraph's lenient parser takes it without checking it again.
WRITTEN_NT = {"format": ox.RdfFormat.N_TRIPLES, "lenient": True}


class Unsupported(ContentError):
    """A shape uses something this engine does not implement; it refuses rather than ignore it."""


# ---------------------------------------------------------------------------------------------
# terms

_XSD = str(XSD)
# datatypes oxigraph stores by value (canonical lexical form; derived integers as xsd:integer)
_NORMALIZED = {_XSD + n for n in (
    "boolean", "integer", "decimal", "float", "double", "date", "dateTime", "dateTimeStamp", "time",
    "duration", "dayTimeDuration", "yearMonthDuration", "gYear", "gYearMonth", "gMonth", "gMonthDay",
    "gDay", "byte", "short", "int", "long", "unsignedByte", "unsignedShort", "unsignedInt",
    "unsignedLong", "positiveInteger", "nonNegativeInteger", "negativeInteger", "nonPositiveInteger")}
_BNODE_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_XSD_STRING = _XSD + "string"


def sparql_term(term) -> str:
    """An rdflib term as SPARQL text (full IRIs, escaped literals)."""
    if isinstance(term, URIRef):
        return f"<{term}>"
    if isinstance(term, Literal):
        text = str(term).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        if term.language:
            return f'"{text}"@{term.language}'
        if term.datatype:
            return f'"{text}"^^<{term.datatype}>'
        return f'"{text}"'
    raise Unsupported(f"cannot write {term!r} into a query (a blank node where a constant is needed)")


_PROBE = {"boolean": "true", "date": "2000-01-01", "dateTime": "2000-01-01T00:00:00", "time": "00:00:00",
          "duration": "P1D", "dayTimeDuration": "P1D", "yearMonthDuration": "P1Y", "gYear": "2000",
          "gYearMonth": "2000-01", "gMonth": "--01", "gMonthDay": "--01-01", "gDay": "---01",
          "dateTimeStamp": "2000-01-01T00:00:00Z"}
_STORED_DT = {}


def stored_datatype(dt) -> str:
    """The datatype oxigraph gives back for a valid literal of datatype dt (xsd:int -> xsd:integer)."""
    key = str(dt)
    hit = _STORED_DT.get(key)
    if hit is None:
        if key in _NORMALIZED:
            probe = _PROBE.get(key[len(_XSD):], "1")
            st = ox.Store()
            s = ox.NamedNode("urn:x-fast:s")
            st.add(ox.Quad(s, s, ox.Literal(probe, datatype=ox.NamedNode(key))))
            hit = next(iter(st.quads_for_pattern(s, None, None))).object.datatype.value
        else:
            hit = key
        _STORED_DT[key] = hit
    return hit


class TermCodec:
    """rdflib <-> pyoxigraph terms, with the way back for literals oxigraph stores differently."""

    def __init__(self):
        self._to = {}
        self._iri = {}
        self._bnode_back = {}
        self._valid = {}
        self._ill = {}
        self._stored = {}        # (lexical, datatype) -> stored ox literal
        self._origin = {}        # stored ox literal -> original rdflib literal
        self._lit_back = {}      # ox literal -> rdflib literal, for literals not in _origin
        self.suspect = set()     # stored ox literals whose original differs or is ill-typed
        self._dirty = False      # terms added since the snapshot (reset has something to undo)
        self._scratch = ox.Store()
        self._subj = ox.NamedNode("urn:x-fast:s")

    def to_ox(self, term):
        hit = self._to.get(term)
        if hit is not None:
            if type(term) is Literal and (term.ill_typed is True) != self._ill[term]:
                # rdflib normalises "none"^^xsd:boolean to "false" but keeps it ill-typed: two equal
                # literals that pySHACL judges differently cannot be one term in the store
                raise Unsupported(f"the literal {term.n3()} occurs both well-typed and ill-typed "
                                  f"(rdflib normalised an ill-typed lexical form); use the reference engine")
            return hit
        self._dirty = True
        if isinstance(term, URIRef):
            out = ox.NamedNode(str(term))
        elif isinstance(term, BNode):
            ident = str(term)
            if not _BNODE_OK.match(ident):
                ident = "b" + format(abs(hash(ident)), "x") + str(len(self._bnode_back))
            out = ox.BlankNode(ident)
            self._bnode_back[ident] = term
        elif isinstance(term, Literal):
            out = self._literal(term)
            self._ill[term] = getattr(term, "ill_typed", False) is True
        else:
            raise Unsupported(f"cannot load the term {term!r}")
        self._to[term] = out
        return out

    def _literal(self, lit):
        lex = str(lit)
        if lit.language:
            return ox.Literal(lex, language=lit.language)
        dt = str(lit.datatype) if lit.datatype is not None else None
        out = ox.Literal(lex, datatype=ox.NamedNode(dt)) if dt else ox.Literal(lex)
        ill = getattr(lit, "ill_typed", False) is True
        if dt in _NORMALIZED:
            stored = self._stored_form(lex, dt, out)
            prev = self._origin.get(stored)
            if prev is not None and prev != lit:
                raise Unsupported(f"the literals {prev.n3()} and {lit.n3()} are one term in the fast store; "
                                  f"use the reference engine for this data")
            self._origin[stored] = lit
            if stored != out or ill:
                self.suspect.add(stored)
            return out
        if dt == _XSD_STRING:
            self._origin.setdefault(ox.Literal(lex), lit)
        if ill:
            self.suspect.add(out)
        return out

    def snapshot(self):
        """Remember the state after the knowledge graph is loaded; `reset()` goes back to it, so
        the caches hold the knowledge graph and one batch, not every claim ever seen."""
        self._base = (dict(self._to), dict(self._ill), dict(self._origin), set(self.suspect),
                      dict(self._bnode_back))
        self._dirty = False

    def reset(self):
        # Only terms made by to_ox need undoing (records loaded as N-Triples make none): copying
        # the knowledge graph's maps for every batch costs more than the batch when the graph holds
        # a full edit table. The IRI cache of from_ox is a cache of equal values and stays.
        if self._dirty:
            to, ill, origin, suspect, bnodes = self._base
            self._to, self._ill, self._origin = dict(to), dict(ill), dict(origin)
            self.suspect, self._bnode_back = set(suspect), dict(bnodes)
            self._dirty = False
        if len(self._iri) > 50_000:
            self._iri.clear()
        if len(self._valid) > 200_000:
            self._valid.clear()
        if len(self._stored) > 200_000:
            self._stored.clear()

    def engines_disagree(self, lit):
        """True when rdflib (pySHACL's SPARQL engine) and oxigraph may evaluate this literal
        differently: ill-typed for rdflib, or not a valid value for oxigraph ("20240105" is an
        xsd:date to rdflib, not to oxigraph; rdflib compares "2024-13-45" as a string, oxigraph
        raises an error). Claims carrying such literals go to the reference engine."""
        if not isinstance(lit, Literal) or lit.language:
            return False
        if getattr(lit, "ill_typed", False) is True:
            return True
        dt = lit.datatype
        if dt is None or str(dt) not in _NORMALIZED:
            return False
        key = (str(lit), str(dt))
        hit = self._valid.get(key)
        if hit is None:
            lt = ox.Literal(str(lit), datatype=ox.NamedNode(str(dt)))
            q = ox.Quad(self._subj, self._subj, lt)
            self._scratch.add(q)
            rows = list(self._scratch.query("SELECT (?o <= ?o AS ?ok) WHERE { ?s ?p ?o }"))
            self._scratch.clear()
            hit = self._valid[key] = rows[0]["ok"] is not None
        return not hit

    def _stored_form(self, lex, dt, lit):
        key = (lex, dt)
        hit = self._stored.get(key)
        if hit is None:
            q = ox.Quad(self._subj, self._subj, lit)
            self._scratch.add(q)
            hit = next(iter(self._scratch.quads_for_pattern(self._subj, None, None))).object
            self._scratch.remove(q)
            self._scratch.clear()
            self._stored[key] = hit
        return hit

    def from_ox(self, term):
        if isinstance(term, ox.NamedNode):
            hit = self._iri.get(term.value)
            if hit is None:
                hit = self._iri[term.value] = URIRef(term.value)
            return hit
        if isinstance(term, ox.BlankNode):
            return self._bnode_back.get(term.value) or BNode(term.value)
        if isinstance(term, ox.Literal):
            orig = self._origin.get(term)
            if orig is not None:
                return orig
            hit = self._lit_back.get(term)
            if hit is not None:
                return hit
            hit = literal_to_rdflib(term)
            if len(self._lit_back) > 100_000:
                self._lit_back.clear()
            self._lit_back[term] = hit
            return hit
        raise Unsupported(f"unexpected term {term!r} in a result")

    def quad(self, triple):
        s, p, o = triple
        to = self._to
        xs, xp, xo = to.get(s), to.get(p), to.get(o)
        if xs is None or type(s) is Literal:
            xs = self.to_ox(s)
        if xp is None:
            xp = self.to_ox(p)
        if xo is None or type(o) is Literal:
            xo = self.to_ox(o)
        return ox.Quad(xs, xp, xo)


# ---------------------------------------------------------------------------------------------
# pySHACL's datatype rule, applied to the original literal when the store cannot decide


def pyshacl_datatype_ok(v, dtype_rule) -> bool:
    from pyshacl.constraints.core.value_constraints import DatatypeConstraintComponent

    if not isinstance(v, Literal):
        return False
    if v.datatype == dtype_rule:
        if getattr(v, "ill_typed", None) is True:
            return False
        return DatatypeConstraintComponent._assert_actual_datatype(None, v, dtype_rule)
    if dtype_rule == RDFS.Literal:
        return True
    if v.datatype is None and v.language is None and dtype_rule == XSD.string:
        return DatatypeConstraintComponent._assert_actual_datatype(None, v, dtype_rule)
    if dtype_rule == RDF.langString and v.language:
        return DatatypeConstraintComponent._assert_actual_datatype(None, v, dtype_rule)
    return False


# ---------------------------------------------------------------------------------------------
# shapes

SHAPE_TYPES = (SH.NodeShape, SH.PropertyShape)
TARGET_PREDICATES = (SH.targetClass, SH.targetNode, SH.targetSubjectsOf, SH.targetObjectsOf)
SHAPE_REFERENCES = (SH.node, SH.property, SH["not"], SH.qualifiedValueShape)
SHAPE_LISTS = (SH["and"], SH["or"], SH.xone)
COMPONENT_OF = {
    SH["class"]: SH.ClassConstraintComponent, SH.datatype: SH.DatatypeConstraintComponent,
    SH.nodeKind: SH.NodeKindConstraintComponent, SH.minCount: SH.MinCountConstraintComponent,
    SH.maxCount: SH.MaxCountConstraintComponent, SH.minExclusive: SH.MinExclusiveConstraintComponent,
    SH.minInclusive: SH.MinInclusiveConstraintComponent, SH.maxExclusive: SH.MaxExclusiveConstraintComponent,
    SH.maxInclusive: SH.MaxInclusiveConstraintComponent, SH.minLength: SH.MinLengthConstraintComponent,
    SH.maxLength: SH.MaxLengthConstraintComponent, SH.pattern: SH.PatternConstraintComponent,
    SH.languageIn: SH.LanguageInConstraintComponent, SH.uniqueLang: SH.UniqueLangConstraintComponent,
    SH.equals: SH.EqualsConstraintComponent, SH.disjoint: SH.DisjointConstraintComponent,
    SH.lessThan: SH.LessThanConstraintComponent, SH.lessThanOrEquals: SH.LessThanOrEqualsConstraintComponent,
    SH["not"]: SH.NotConstraintComponent, SH["and"]: SH.AndConstraintComponent,
    SH["or"]: SH.OrConstraintComponent, SH.xone: SH.XoneConstraintComponent, SH.node: SH.NodeConstraintComponent,
    SH.property: SH.PropertyConstraintComponent, SH.qualifiedValueShape: SH.QualifiedValueShapeConstraintComponent,
    SH.closed: SH.ClosedConstraintComponent, SH.hasValue: SH.HasValueConstraintComponent,
    SH["in"]: SH.InConstraintComponent, SH.sparql: SH.SPARQLConstraintComponent,
}
# predicates on a shape that are not constraint parameters
NON_CONSTRAINT = {
    RDF.type, *TARGET_PREDICATES, SH.severity, SH.message, SH.deactivated, SH.path, SH.name, SH.description,
    SH.order, SH.group, SH.defaultValue, SH.flags, SH.ignoredProperties, SH.qualifiedMinCount,
    SH.qualifiedMaxCount, SH.qualifiedValueShapesDisjoint, SH.prefixes, SH.declare,
    SH.select,  # a shape that is also its own SPARQL constraint (W3C sparql/node/sparql-002)
}
VALUE_PARAMS = {SH["class"], SH.datatype, SH.nodeKind, SH.minExclusive, SH.minInclusive, SH.maxExclusive,
                SH.maxInclusive, SH.minLength, SH.maxLength, SH.pattern, SH.languageIn, SH["in"], SH.node,
                SH["not"], SH["and"], SH["or"], SH.xone}
NODE_KINDS = {
    SH.IRI: "isIRI({v})", SH.BlankNode: "isBlank({v})", SH.Literal: "isLiteral({v})",
    SH.BlankNodeOrIRI: "(isIRI({v}) || isBlank({v}))", SH.BlankNodeOrLiteral: "(isBlank({v}) || isLiteral({v}))",
    SH.IRIOrLiteral: "(isIRI({v}) || isLiteral({v}))",
}
GENERIC = {
    SH.MinCountConstraintComponent: "Less than {n} values", SH.MaxCountConstraintComponent: "More than {n} values",
    SH.ClassConstraintComponent: "Value does not have class {n}",
    SH.DatatypeConstraintComponent: "Value is not Literal with datatype {n}",
    SH.NodeKindConstraintComponent: "Value is not of Node Kind {n}",
}


def _is_true(o):
    """Only the literal true switches sh:uniqueLang / sh:closed on (W3C uniqueLang-002: "1" does not)."""
    return isinstance(o, Literal) and o.datatype == XSD.boolean and str(o) == "true"


class Shape:
    def __init__(self, sg, node):
        self.node = node
        self.path = sg.value(node, SH.path)
        self.is_property = self.path is not None
        self.severity = sg.value(node, SH.severity) or SH.Violation
        self.messages = sorted(sg.objects(node, SH.message), key=str)
        d = sg.value(node, SH.deactivated)
        self.deactivated = isinstance(d, Literal) and d.value is True

    def name(self):
        return str(self.node) if isinstance(self.node, URIRef) else f"blank node shape {self.node.n3()}"


class Check:
    """One compiled query and what its rows mean."""

    def __init__(self, shape, component, query, focus, value=None, path=None, kind="core",
                 param=None, sparql=None):
        self.shape = shape
        self.component = component
        self.query = query            # SPARQL text, or None when built per batch (datatype)
        self.focus = focus            # result variable holding the focus node
        self.value = value            # result variable holding the value node (or None)
        self.path = path              # rdflib path term for sh:resultPath (or None)
        self.kind = kind              # core | datatype | sparql
        self.param = param
        self.sparql = sparql          # SparqlConstraint for kind == sparql


class SparqlConstraint:
    def __init__(self, node, text, messages, prologue, batch_query, per_focus_query, binds_this,
                 projects_this, projected, gen):
        self.gen = gen
        self.node = node
        self.text = text
        self.messages = messages
        self.prologue = prologue
        self.batch_query = batch_query
        self.per_focus_query = per_focus_query
        self.binds_this = binds_this
        self.projects_this = projects_this
        self.projected = projected


def optimise(query_text):
    """Rewrites 2 and 3 of reasoner/fastsparql.py on a query this module wrote."""
    q = fs.parse_query(query_text)
    return fs.Query(q.prologue, q.modifier, q.projection, fs.rewrite_group(q.where), q.modifiers).render()


class Compiler:
    """Shapes graph -> list of Check. Raises Unsupported for anything not implemented."""

    def __init__(self, sg: Graph, rewrite=True):
        self.sg = sg
        self.rewrite = rewrite
        self._n = 0
        self.shapes = {}
        self._custom_params = self._custom_component_params()
        self._anc = ""
        self.datatypes = set()
        self.nested_datatypes = False

    def fresh(self, stem="v"):
        self._n += 1
        return f"?_{stem}{self._n}"

    def shape(self, node):
        s = self.shapes.get(node)
        if s is None:
            s = self.shapes[node] = Shape(self.sg, node)
            self._check_supported(s)
        return s

    def _custom_component_params(self):
        out = {}
        for comp in set(self.sg.subjects(SH.parameter, None)):
            for param in self.sg.objects(comp, SH.parameter):
                p = self.sg.value(param, SH.path)
                if p is not None:
                    out[p] = comp
        return out

    def _check_supported(self, s):
        sg = self.sg
        for p in set(sg.predicates(s.node, None)):
            if p in self._custom_params:
                raise Unsupported(f"shape {s.name()} uses the constraint component {self._custom_params[p]} "
                                  f"(SPARQL-based constraint components are not implemented by the fast engine)")
            if p in NON_CONSTRAINT or p in COMPONENT_OF:
                continue
            if str(p).startswith(str(SH)):
                raise Unsupported(f"shape {s.name()} uses {p} which the fast engine does not implement")
        if sg.value(s.node, SH.datatype) in (RDFS.Datatype,):
            raise Unsupported(f"shape {s.name()}: sh:datatype rdfs:Datatype is not implemented")
        for t in sg.objects(s.node, SH.targetNode):
            if isinstance(t, BNode):
                raise Unsupported(f"shape {s.name()}: a blank node sh:targetNode is not implemented")
        if s.is_property:
            self.path_text(s.path, s)

    # -- paths ---------------------------------------------------------------------------------
    def path_text(self, path, shape, depth=0):
        sg = self.sg
        if depth > 12:
            raise Unsupported(f"shape {shape.name()}: path too deep")
        if isinstance(path, URIRef):
            return f"<{path}>"
        if isinstance(path, Literal):
            raise Unsupported(f"shape {shape.name()}: a literal is not a path")
        if (path, RDF.first, None) in sg:
            items = list(Collection(sg, path))
            if len(items) < 2:
                raise Unsupported(f"shape {shape.name()}: a sequence path needs two or more members")
            return "(" + "/".join(self.path_text(i, shape, depth + 1) for i in items) + ")"
        for pred, fmt in ((SH.inversePath, "^{}"), (SH.zeroOrMorePath, "{}*"), (SH.oneOrMorePath, "{}+"),
                          (SH.zeroOrOnePath, "{}?")):
            inner = sg.value(path, pred)
            if inner is not None:
                return "(" + fmt.format(self.path_text(inner, shape, depth + 1)) + ")"
        alt = sg.value(path, SH.alternativePath)
        if alt is not None:
            items = list(Collection(sg, alt))
            if len(items) < 2:
                raise Unsupported(f"shape {shape.name()}: an alternative path needs two or more members")
            return "(" + "|".join(self.path_text(i, shape, depth + 1) for i in items) + ")"
        raise Unsupported(f"shape {shape.name()}: cannot read the path {path.n3()}")

    # -- targets -------------------------------------------------------------------------------
    def target_group(self, s):
        sg = self.sg
        parts = []
        classes = set(sg.objects(s.node, SH.targetClass))
        if any((s.node, RDF.type, c) in sg for c in [RDFS.Class, *sg.subjects(RDFS.subClassOf, RDFS.Class)]):
            classes.add(s.node)
        for c in sorted(classes):
            if isinstance(c, URIRef):
                parts.append(f"{{ ?this <{RDF.type}>/<{RDFS.subClassOf}>* <{c}> }}")
            else:
                raise Unsupported(f"shape {s.name()}: a blank node class target is not implemented")
        nodes = sorted(sg.objects(s.node, SH.targetNode))
        if nodes:
            parts.append("{ VALUES ?this { " + " ".join(sparql_term(n) for n in nodes) + " } }")
        for p in sorted(sg.objects(s.node, SH.targetSubjectsOf)):
            parts.append(f"{{ ?this <{p}> [] }}")
        for p in sorted(sg.objects(s.node, SH.targetObjectsOf)):
            parts.append(f"{{ [] <{p}> ?this }}")
        for pred in (SH.target,):
            if (s.node, pred, None) in sg:
                raise Unsupported(f"shape {s.name()} uses {pred} (SHACL-AF targets are not implemented)")
        if not parts:
            return None
        return "{ SELECT DISTINCT ?this WHERE { " + " UNION ".join(parts) + " } }"

    def top_shapes(self):
        sg = self.sg
        nodes = set()
        for p in TARGET_PREDICATES:
            nodes.update(sg.subjects(p, None))
        for t in SHAPE_TYPES:
            for n in sg.subjects(RDF.type, t):
                if (n, RDF.type, RDFS.Class) in sg:
                    nodes.add(n)
        for n in list(sg.subjects(RDF.type, RDFS.Class)):
            if any((n, RDF.type, t) in sg for t in SHAPE_TYPES):
                nodes.add(n)
        for p in (SH.rule, SH.target):
            for n in sg.subjects(p, None):
                raise Unsupported(f"shape {n} uses {p} (SHACL Advanced Features are not implemented)")
        return sorted(nodes, key=lambda n: (isinstance(n, BNode), str(n)))

    def compile(self):
        checks = []
        for node in self.top_shapes():
            s = self.shape(node)
            if s.deactivated:
                continue
            gen = self.target_group(s)
            if gen is None:
                continue
            checks.extend(self.checks_for(s, gen, "?this", top=True, stack=()))
        if self.rewrite:
            for c in checks:
                if c.query is not None:
                    c.query = optimise(c.query)
        return checks

    # -- checks for reporting ------------------------------------------------------------------
    def checks_for(self, s, gen, focus, top, stack):
        if s.deactivated:
            return []
        if s.node in stack:
            raise Unsupported(f"shape {s.name()} is recursive")
        stack = stack + (s.node,)
        sg = self.sg
        out = []
        if s.is_property:
            v = self.fresh("v")
            values = f"{focus} {self.path_text(s.path, s)} {v} ."
        else:
            v, values = focus, ""
        for p, o in sorted(sg.predicate_objects(s.node), key=lambda po: (str(po[0]), str(po[1]))):
            if p not in COMPONENT_OF or p in (SH.property, SH.sparql):
                continue
            comp = COMPONENT_OF[p]
            if p in VALUE_PARAMS:
                if p == SH.datatype:
                    self.datatypes.add(o)
                    new = [Check(s, comp, None, focus, v, s.path, kind="datatype", param=(gen, values, o, self._anc))]
                else:
                    bad = self.bad_value(s, p, o, v, stack)
                    q = f"SELECT DISTINCT {self._anc}{self._cols(focus, v)} WHERE {{ {gen} {values} FILTER ({bad}) }}"
                    new = [Check(s, comp, q, focus, v, s.path)]
            else:
                new = self.focus_checks(s, p, o, gen, focus, values, v, stack)
            for c in new:
                c.param_value = o
            out.extend(new)
        for q in sorted(sg.objects(s.node, SH.property), key=str):
            qs = self.shape(q)
            if s.is_property:
                # the nested shape runs once per focus node of this one: keep them apart
                saved = self._anc
                self._anc = f"{saved}{focus} "
                try:
                    out.extend(self.checks_for(qs, f"{gen} {values}", v, top=False, stack=stack))
                finally:
                    self._anc = saved
            else:
                out.extend(self.checks_for(qs, gen, focus, top=top, stack=stack))
        for c in sorted(sg.objects(s.node, SH.sparql), key=str):
            if not top or focus != "?this":
                raise Unsupported(f"shape {s.name()}: a SPARQL constraint below a property shape or in a "
                                  f"nested shape is not implemented")
            sc = self.sparql_constraint(s, c, gen)
            if sc is not None:
                out.append(Check(s, SH.SPARQLConstraintComponent, None, "?this", kind="sparql", sparql=sc,
                                 path=s.path))
        return out

    @staticmethod
    def _cols(focus, v):
        return focus if v == focus or v is None else f"{focus} {v}"

    def focus_checks(self, s, p, o, gen, focus, values, v, stack):
        """Components that judge the focus node as a whole (no value node in the result)."""
        comp = COMPONENT_OF[p]
        path = self.path_text(s.path, s) if s.is_property else None
        if p in (SH.minCount, SH.maxCount):
            if not s.is_property:
                raise Unsupported(f"shape {s.name()}: {p} on a node shape")
            n = int(o)
            cond = self.count_cond(focus, path, p, n)
            if cond is None:
                return []
            return [Check(s, comp, f"SELECT DISTINCT {self._anc}{focus} WHERE {{ {gen} {cond} }}", focus, None, s.path)]
        if p == SH.hasValue:
            if s.is_property:
                cond = f"FILTER NOT EXISTS {{ {focus} {path} {sparql_term(o)} }}"
                return [Check(s, comp, f"SELECT DISTINCT {self._anc}{focus} WHERE {{ {gen} {cond} }}", focus, None, s.path)]
            cond = f"FILTER (!sameTerm({focus}, {sparql_term(o)}))"
            return [Check(s, comp, f"SELECT DISTINCT {self._anc}{focus} WHERE {{ {gen} {cond} }}", focus, None, None)]
        if p == SH.uniqueLang:
            if not _is_true(o):
                return []
            if not s.is_property:
                raise Unsupported(f"shape {s.name()}: sh:uniqueLang on a node shape")
            a, b = self.fresh("a"), self.fresh("b")
            cond = (f"{focus} {path} {a}, {b} . FILTER (!sameTerm({a}, {b}) && isLiteral({a}) && isLiteral({b}) "
                    f"&& lang({a}) != \"\" && LCASE(lang({a})) = LCASE(lang({b})))")
            lang = self.fresh("lang")
            q = f"SELECT DISTINCT {self._anc}{focus} (LCASE(lang({a})) AS {lang}) WHERE {{ {gen} {cond} }}"
            return [Check(s, comp, q, focus, None, s.path)]
        if p in (SH.equals, SH.disjoint, SH.lessThan, SH.lessThanOrEquals):
            return self.pair_checks(s, p, o, gen, focus, values, v)
        if p == SH.closed:
            if not _is_true(o):
                return []
            allowed = self.closed_allowed(s)
            pv, ov = self.fresh("p"), self.fresh("o")
            flt = f"FILTER ({pv} NOT IN ({', '.join(allowed)}))" if allowed else ""
            q = f"SELECT DISTINCT {self._anc}{focus} {pv} {ov} WHERE {{ {gen} {values} {v} {pv} {ov} . {flt} }}"
            if s.is_property:
                q = f"SELECT DISTINCT {self._anc}{focus} {v} {pv} {ov} WHERE {{ {gen} {values} {v} {pv} {ov} . {flt} }}"
            c = Check(s, comp, q, focus, ov, None)
            c.path_var = pv
            return [c]
        if p == SH.qualifiedValueShape:
            return self.qualified_checks(s, o, gen, focus, v, stack)
        raise Unsupported(f"shape {s.name()}: the constraint component {comp} is not implemented")

    def count_cond(self, focus, path, p, n):
        if p == SH.minCount:
            if n <= 0:
                return None
            vs = [self.fresh("c") for _ in range(n)]
            return f"FILTER NOT EXISTS {{ {focus} {path} {', '.join(vs)} . {self.distinct(vs)} }}"
        vs = [self.fresh("c") for _ in range(n + 1)]
        if n + 1 > 6:
            raise Unsupported(f"sh:maxCount {n} above 5 is not implemented")
        return f"{focus} {path} {', '.join(vs)} . {self.distinct(vs)}"

    @staticmethod
    def distinct(vs):
        conds = [f"!sameTerm({a}, {b})" for i, a in enumerate(vs) for b in vs[i + 1:]]
        return f"FILTER ({' && '.join(conds)})" if conds else ""

    def closed_allowed(self, s):
        sg = self.sg
        allowed = set()
        for q in sg.objects(s.node, SH.property):
            qp = sg.value(q, SH.path)
            if isinstance(qp, URIRef):
                allowed.add(qp)
        ign = sg.value(s.node, SH.ignoredProperties)
        if ign is not None:
            allowed.update(Collection(sg, ign))
        return [f"<{a}>" for a in sorted(allowed)]

    def pair_checks(self, s, p, o, gen, focus, values, v):
        comp = COMPONENT_OF[p]
        if not isinstance(o, URIRef):
            raise Unsupported(f"shape {s.name()}: {p} needs an IRI")
        other = f"<{o}>"
        w = self.fresh("w")
        if p == SH.equals:
            q1 = (f"SELECT DISTINCT {self._anc}{self._cols(focus, v)} WHERE {{ {gen} {values} "
                  f"FILTER NOT EXISTS {{ {focus} {other} {v} }} }}")
            if s.is_property:
                path = self.path_text(s.path, s)
                back = f"FILTER NOT EXISTS {{ {focus} {path} {w} }}"
            else:
                back = f"FILTER (!sameTerm({w}, {focus}))"
            q2 = f"SELECT DISTINCT {self._anc}{focus} {w} WHERE {{ {gen} {focus} {other} {w} . {back} }}"
            return [Check(s, comp, q1, focus, v, s.path), Check(s, comp, q2, focus, w, s.path)]
        if p == SH.disjoint:
            q = f"SELECT DISTINCT {self._anc}{self._cols(focus, v)} WHERE {{ {gen} {values} {focus} {other} {v} . }}"
            return [Check(s, comp, q, focus, v, s.path)]
        if not s.is_property:
            raise Unsupported(f"shape {s.name()}: {p} on a node shape")
        op = "<" if p == SH.lessThan else "<="
        q = (f"SELECT DISTINCT {self._anc}{focus} {v} {w} WHERE {{ {gen} {values} {focus} {other} {w} . "
             f"FILTER (!COALESCE({v} {op} {w}, false)) }}")
        return [Check(s, comp, q, focus, v, s.path)]

    def qualified_checks(self, s, o, gen, focus, v, stack):
        if not s.is_property:
            raise Unsupported(f"shape {s.name()}: sh:qualifiedValueShape on a node shape")
        cond = self.qualified_conds(s, o, focus, stack)
        out = []
        for kind, c in cond:
            comp = SH.QualifiedMinCountConstraintComponent if kind == "min" else SH.QualifiedMaxCountConstraintComponent
            out.append(Check(s, comp, f"SELECT DISTINCT {self._anc}{focus} WHERE {{ {gen} FILTER ({c}) }}", focus, None, s.path))
        return out

    def qualified_conds(self, s, o, focus, stack):
        sg = self.sg
        path = self.path_text(s.path, s)
        qmin = sg.value(s.node, SH.qualifiedMinCount)
        qmax = sg.value(s.node, SH.qualifiedMaxCount)
        disjoint = sg.value(s.node, SH.qualifiedValueShapesDisjoint)
        siblings = []
        if isinstance(disjoint, Literal) and disjoint.value is True:
            for parent in sg.subjects(SH.property, s.node):
                for sib in sg.objects(parent, SH.property):
                    if sib == s.node:
                        continue
                    for qs in sg.objects(sib, SH.qualifiedValueShape):
                        if qs != o:
                            siblings.append(qs)

        def conforming(x):
            parts = [f"!({self.nonconf(o, x, stack)})"]
            for sib in sorted(set(siblings), key=str):
                parts.append(f"({self.nonconf(sib, x, stack)})")
            return " && ".join(parts)

        out = []
        if qmin is not None and int(qmin) > 0:
            n = int(qmin)
            if n > 5:
                raise Unsupported(f"shape {s.name()}: sh:qualifiedMinCount above 5 is not implemented")
            vs = [self.fresh("q") for _ in range(n)]
            conf = " && ".join(f"({conforming(x)})" for x in vs)
            dist = self.distinct(vs)[len("FILTER "):] if n > 1 else "true"
            out.append(("min", f"NOT EXISTS {{ {focus} {path} {', '.join(vs)} . FILTER ({conf} && {dist}) }}"))
        if qmax is not None:
            n = int(qmax)
            if n > 4:
                raise Unsupported(f"shape {s.name()}: sh:qualifiedMaxCount above 4 is not implemented")
            vs = [self.fresh("q") for _ in range(n + 1)]
            conf = " && ".join(f"({conforming(x)})" for x in vs)
            dist = self.distinct(vs)[len("FILTER "):] if n + 1 > 1 else "true"
            out.append(("max", f"EXISTS {{ {focus} {path} {', '.join(vs)} . FILTER ({conf} && {dist}) }}"))
        return out

    # -- value conditions ----------------------------------------------------------------------
    def bad_value(self, s, p, o, v, stack):
        """A SPARQL expression, never an error, true when value v breaks the component."""
        sg = self.sg
        if p == SH["class"]:
            return f"NOT EXISTS {{ {v} <{RDF.type}>/<{RDFS.subClassOf}>* {sparql_term(o)} }}"
        if p == SH.nodeKind:
            if o not in NODE_KINDS:
                raise Unsupported(f"shape {s.name()}: unknown sh:nodeKind {o}")
            return "!" + NODE_KINDS[o].format(v=v)
        if p in (SH.minExclusive, SH.minInclusive, SH.maxExclusive, SH.maxInclusive):
            op = {SH.minExclusive: ">", SH.minInclusive: ">=", SH.maxExclusive: "<", SH.maxInclusive: "<="}[p]
            return f"!COALESCE(isLiteral({v}) && {v} {op} {sparql_term(o)}, false)"
        if p in (SH.minLength, SH.maxLength):
            op = ">=" if p == SH.minLength else "<="
            return f"!COALESCE(!isBlank({v}) && STRLEN(STR({v})) {op} {int(o)}, false)"
        if p == SH.pattern:
            flags = sg.value(s.node, SH.flags)
            fl = f", {sparql_term(Literal(str(flags)))}" if flags is not None else ""
            return f"!COALESCE(!isBlank({v}) && REGEX(STR({v}), {sparql_term(Literal(str(o)))}{fl}), false)"
        if p == SH.languageIn:
            tags = [str(t).lower() for t in Collection(sg, o)]
            lst = ", ".join(sparql_term(Literal(t)) for t in tags) or '""'
            return (f"!COALESCE(isLiteral({v}) && lang({v}) != \"\" && (LCASE(lang({v})) IN ({lst}) || "
                    f"LCASE(STRBEFORE(CONCAT(lang({v}), \"-\"), \"-\")) IN ({lst})), false)")
        if p == SH["in"]:
            members = list(Collection(sg, o))
            if any(isinstance(m, BNode) for m in members):
                raise Unsupported(f"shape {s.name()}: a blank node in sh:in is not implemented")
            if not members:
                return "true"
            return "!(" + " || ".join(f"sameTerm({v}, {sparql_term(m)})" for m in members) + ")"
        if p == SH.node:
            return self.nonconf(o, v, stack)
        if p == SH["not"]:
            return f"!({self.nonconf(o, v, stack)})"
        if p in (SH["and"], SH["or"], SH.xone):
            members = list(Collection(sg, o))
            if p == SH["and"]:
                return "(" + " || ".join(f"({self.nonconf(m, v, stack)})" for m in members) + ")" if members else "false"
            if p == SH["or"]:
                return "(" + " && ".join(f"({self.nonconf(m, v, stack)})" for m in members) + ")" if members else "true"
            return "((" + " + ".join(f"IF({self.nonconf(m, v, stack)}, 0, 1)" for m in members) + ") != 1)" \
                if members else "true"
        raise Unsupported(f"shape {s.name()}: the constraint component {COMPONENT_OF.get(p, p)} is not implemented")

    def nonconf(self, node, x, stack):
        """A SPARQL expression, never an error, true when the node x does not conform to the shape."""
        s = self.shape(node)
        if s.deactivated:
            return "false"
        if s.node in stack:
            raise Unsupported(f"shape {s.name()} is recursive")
        stack = stack + (s.node,)
        sg = self.sg
        parts = []
        path = self.path_text(s.path, s) if s.is_property else None
        for p, o in sorted(sg.predicate_objects(s.node), key=lambda po: (str(po[0]), str(po[1]))):
            if p not in COMPONENT_OF:
                continue
            if p == SH.sparql:
                raise Unsupported(f"shape {s.name()}: a SPARQL constraint in a nested shape is not implemented")
            if p == SH.property:
                if s.is_property:
                    y = self.fresh("y")
                    parts.append(f"EXISTS {{ {x} {path} {y} . FILTER ({self.nonconf(o, y, stack)}) }}")
                else:
                    parts.append(self.nonconf(o, x, stack))
                continue
            if p in VALUE_PARAMS:
                if p == SH.datatype:
                    bad = self.datatype_bad_expr(o, "{v}")
                elif True:
                    bad = None
                if s.is_property:
                    y = self.fresh("y")
                    b = self.bad_value(s, p, o, y, stack) if p != SH.datatype else bad.format(v=y)
                    parts.append(f"EXISTS {{ {x} {path} {y} . FILTER ({b}) }}")
                else:
                    parts.append(self.bad_value(s, p, o, x, stack) if p != SH.datatype else bad.format(v=x))
                continue
            if p in (SH.minCount, SH.maxCount):
                n = int(o)
                if p == SH.minCount:
                    if n > 0:
                        vs = [self.fresh("c") for _ in range(n)]
                        parts.append(f"NOT EXISTS {{ {x} {path} {', '.join(vs)} . {self.distinct(vs)} }}")
                else:
                    if n + 1 > 6:
                        raise Unsupported(f"shape {s.name()}: sh:maxCount {n} above 5 is not implemented")
                    vs = [self.fresh("c") for _ in range(n + 1)]
                    parts.append(f"EXISTS {{ {x} {path} {', '.join(vs)} . {self.distinct(vs)} }}")
                continue
            if p == SH.hasValue:
                parts.append(f"NOT EXISTS {{ {x} {path} {sparql_term(o)} }}" if s.is_property
                             else f"!sameTerm({x}, {sparql_term(o)})")
                continue
            if p == SH.uniqueLang:
                if _is_true(o):
                    a, b = self.fresh("a"), self.fresh("b")
                    parts.append(f"EXISTS {{ {x} {path} {a}, {b} . FILTER (!sameTerm({a}, {b}) && isLiteral({a}) "
                                 f"&& isLiteral({b}) && lang({a}) != \"\" && LCASE(lang({a})) = LCASE(lang({b}))) }}")
                continue
            if p in (SH.equals, SH.disjoint, SH.lessThan, SH.lessThanOrEquals):
                other = f"<{o}>"
                y, w = self.fresh("y"), self.fresh("w")
                vals = f"{x} {path} {y} ." if s.is_property else f"BIND ({x} AS {y})"
                if p == SH.equals:
                    back = f"{x} {path} {w}" if s.is_property else f"FILTER (sameTerm({w}, {x}))"
                    parts.append(f"EXISTS {{ {vals} FILTER NOT EXISTS {{ {x} {other} {y} }} }}")
                    parts.append(f"EXISTS {{ {x} {other} {w} . FILTER NOT EXISTS {{ {back} }} }}"
                                 if s.is_property else f"EXISTS {{ {x} {other} {w} . FILTER (!sameTerm({w}, {x})) }}")
                elif p == SH.disjoint:
                    parts.append(f"EXISTS {{ {vals} {x} {other} {y} . }}")
                else:
                    op = "<" if p == SH.lessThan else "<="
                    parts.append(f"EXISTS {{ {vals} {x} {other} {w} . FILTER (!COALESCE({y} {op} {w}, false)) }}")
                continue
            if p == SH.closed:
                if _is_true(o):
                    allowed = self.closed_allowed(s)
                    y, pv, ov = self.fresh("y"), self.fresh("p"), self.fresh("o")
                    vals = f"{x} {path} {y} ." if s.is_property else f"BIND ({x} AS {y})"
                    flt = f"FILTER ({pv} NOT IN ({', '.join(allowed)}))" if allowed else ""
                    parts.append(f"EXISTS {{ {vals} {y} {pv} {ov} . {flt} }}")
                continue
            if p == SH.qualifiedValueShape:
                if not s.is_property:
                    raise Unsupported(f"shape {s.name()}: sh:qualifiedValueShape on a node shape")
                parts.extend(c for _, c in self.qualified_conds(s, o, x, stack))
                continue
            raise Unsupported(f"shape {s.name()}: the constraint component {COMPONENT_OF[p]} is not implemented")
        if not parts:
            return "false"
        return "(" + " || ".join(f"({p})" for p in parts) + ")"

    def datatype_bad_expr(self, dt, v="{v}"):
        """sh:datatype as a pure SPARQL test (used inside nested shapes; suspect literals are not
        re-checked there, so they make the compiler refuse at run time, see FastEngine)."""
        self.datatypes.add(dt)
        self.nested_datatypes = True
        if stored_datatype(dt) != str(dt):
            raise Unsupported(f"sh:datatype {dt} in a nested shape (the store keeps it as {stored_datatype(dt)})")
        if dt == RDFS.Literal:
            return f"!isLiteral({v})"
        return f"!(isLiteral({v}) && datatype({v}) = <{stored_datatype(dt)}>)"

    # -- SPARQL constraints --------------------------------------------------------------------
    def prefixes_for(self, c):
        """pySHACL's prefix collection (sparql_query_helper.collect_prefixes)."""
        sg = self.sg
        prefixes = {"rdf": str(RDF), "rdfs": str(RDFS), "owl": str(OWL)}
        vals = set(sg.objects(c, SH.prefixes))
        if not vals:
            return prefixes
        onts = set(sg.subjects(RDF.type, OWL.Ontology))
        ont_declares = set()
        for o in onts:
            ont_declares.update(sg.objects(o, SH.declare))
        ng_declares = set(sg.objects(sg.identifier, SH.declare)) if sg.identifier else set()
        global_declares = ng_declares | ont_declares
        for val in vals:
            own = set(sg.objects(val, SH.declare))
            seen, todo = {val}, list(sg.objects(val, OWL.imports))
            while todo:  # declarations of imported ontologies (W3C sparql/node/prefixes-001)
                imp = todo.pop()
                if imp in seen:
                    continue
                seen.add(imp)
                own |= set(sg.objects(imp, SH.declare))
                todo.extend(sg.objects(imp, OWL.imports))
            all_declares = own | ng_declares if own and val in onts else global_declares | own
            for dec in all_declares:
                prefix = sg.value(dec, SH.prefix)
                ns = sg.value(dec, SH.namespace)
                if prefix is None or ns is None:
                    raise Unsupported(f"sh:declare {dec} needs one sh:prefix and one sh:namespace")
                prefixes[str(prefix)] = str(ns)
        return prefixes

    def sparql_constraint(self, s, c, gen):
        from pyshacl.helper.sparql_query_helper import SPARQLQueryHelper as H

        sg = self.sg
        d = sg.value(c, SH.deactivated)
        if isinstance(d, Literal) and d.value is True:
            return None
        selects = list(sg.objects(c, SH.select))
        if len(selects) != 1:
            raise Unsupported(f"shape {s.name()}: a SPARQL constraint needs exactly one sh:select "
                              f"(sh:ask constraints are not implemented)")
        text = str(selects[0])
        helper = H(None, c, text)
        try:
            helper.check_invalid_sparql(text)
        except Exception as exc:  # the reference refuses the shape; so do we
            raise ContentError(f"the SHACL engine refused the shapes: {exc}") from exc
        if H.bind_sg_regex.search(text):
            raise Unsupported(f"shape {s.name()}: $shapesGraph is not supported (nor by pySHACL)")
        if s.is_property:
            text = H.bind_path_regex.sub(r"\g<1>" + self.path_text(s.path, s).replace("\\", "\\\\"), text)
        elif H.bind_path_regex.search(text):
            raise Unsupported(f"shape {s.name()}: $PATH in a SPARQL constraint of a node shape")
        if H.bind_cs_regex.search(text):
            if not isinstance(s.node, URIRef):
                raise Unsupported(f"shape {s.name()}: $currentShape of a blank node shape")
            text = H.bind_cs_regex.sub(r"\g<1>" + f"<{s.node}>", text)
        binds_this = bool(H.bind_this_regex.search(text))
        prefixes = self.prefixes_for(c)
        prologue = "".join(f"PREFIX {p}: <{ns}>\n" for p, ns in prefixes.items())
        messages = sorted(sg.objects(c, SH.message), key=str)
        try:
            q = fs.parse_query(text)
        except fs.SparqlSyntaxError as exc:
            raise Unsupported(f"shape {s.name()}: cannot read the SPARQL constraint ({exc})") from exc
        projected = q.projected_vars()
        projects_this = projected is None or "this" in projected
        batch = None
        limit = None
        per_focus = prologue + text
        why = ""
        if binds_this:
            ok, why = fs.this_is_safe(q)
            if ok:
                where = fs.Group([*fs.parse_group("{ " + gen + " }").elems, *q.where.elems])
                projection = list(q.projection)
                if projected is not None and "this" not in projected:
                    projection.append(fs.Tok("?this", "var"))
                modifiers, limit = fs.split_limit(q.modifiers)
                gb = q.group_by_vars()
                if gb is not None and "this" not in gb:
                    i = next(i for i, t in enumerate(modifiers) if fs.kw(t, "BY"))
                    modifiers.insert(i + 1, fs.Tok("?this", "var"))
                bq = fs.Query([], q.modifier, projection, fs.rewrite_group(where) if self.rewrite else where,
                              modifiers)
                batch = prologue + bq.render()
                plans = [batch]
                plain = prologue + fs.Query([], q.modifier, projection, where, modifiers).render()
                if self.rewrite:
                    # the same query under rewrite 2b (a small cover instead of the whole group):
                    # another plan for oxigraph, faster on some shapes, slower on others (Engine.plan)
                    cover = fs.rewrite_select(plain, cover=True, lookups=False)
                    if cover not in (plain, batch):
                        plans.append(cover)
        sc = SparqlConstraint(c, text, messages, prologue, batch, per_focus, binds_this, projects_this, projected, gen)
        sc.plans = plans if batch is not None else []
        sc.written_batch = plain if batch is not None else None   # rewrite 1 alone
        sc.parsed, sc.why = q, why
        sc.limit = limit if batch is not None else None
        return sc


# ---------------------------------------------------------------------------------------------
# evaluation


class Result:
    __slots__ = ("focus", "path", "value", "severity", "shape", "component", "messages", "constraint")

    def __init__(self, focus, path, value, severity, shape, component, messages, constraint=None):
        self.focus, self.path, self.value, self.severity = focus, path, value, severity
        self.shape, self.component, self.messages, self.constraint = shape, component, messages, constraint


def format_message(msg, bound):
    """pySHACL's _format_sparql_based_result_message, for a dict of bound variables: for each
    variable in turn, re.sub of `{?var}` / `{$var}` by the value's text."""
    plain = _plain_template(msg)
    values = {var: str(val) for var, val in bound.items()}
    if plain and not any(_UNSAFE_VALUE.search(v) for v in values.values()):
        # one pass gives what the replacements in turn give: no value brings a brace (so no new
        # placeholder) nor a backslash (which re.sub would read as an escape), and the template
        # has braces only in its placeholders
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), msg)
    for var, val in values.items():
        msg = re.sub("{{[?$]{}}}".format(var), val, msg)
    return msg


_PLACEHOLDER = re.compile(r"\{[?$](\w+)\}")
_UNSAFE_VALUE = re.compile(r"[{}\\]")
_PLAIN = {}


def _plain_template(msg):
    """True when the message has no brace outside its `{?var}` placeholders (cached per text)."""
    hit = _PLAIN.get(msg)
    if hit is None:
        if len(_PLAIN) > 10_000:
            _PLAIN.clear()
        hit = _PLAIN[msg] = not _UNSAFE_VALUE.search(_PLACEHOLDER.sub("", msg))
    return hit


# Rewrite 6 (fastsparql.wrap_large_stars): a star of triple patterns (one subject) with at least
# this many solutions in the knowledge graph alone is evaluated as a sub-SELECT, joined by hash.
# oxigraph's planner has no statistics; this is the one it is given. With the bundled graph no
# star reaches it (the largest has 163 solutions; the bundling edits' star 95: BundledPair took
# 50 ms a 2,000-claim batch as written, 72 as a sub-SELECT); with an imported edit table of
# 87,724 edits, BundledPair took 27.8 s a batch as written and 1.4 s as a sub-SELECT,
# BundledPairBypassed 8.6 s and 0.8 s.
WRAP_ROWS = 2000


def star_counter(store, rows, counts, **query_options):
    """For fastsparql.wrap_large_stars: a function telling whether a star has at least `rows`
    solutions in the store (the knowledge graph alone), each star counted once into `counts`."""

    def large(prologue, star):
        if star not in counts:
            try:
                res = list(store.query(prologue + "SELECT (COUNT(*) AS ?n) WHERE " + star, **query_options))
                counts[star] = int(res[0]["n"].value)
            except (SyntaxError, ValueError, LookupError):   # not for oxigraph: left as written
                counts[star] = -1
        return counts[star] >= rows

    return large


GIVE_UP = 3   # a plan whose first trial costs this many times the best so far is not tried again


def choose_plan(stats, trials):
    """The index of the plan to run next, from [seconds, weight, runs] per plan: each plan is
    tried `trials` times (but once only when its first trial cost GIVE_UP times the best plan's
    time per weight: with a large knowledge graph a bad plan costs seconds a batch), then the one
    with the least time per weight is kept."""
    rates = [secs / max(w, 1) for secs, w, runs in stats if runs]
    best = min(rates) if rates else None
    for i, (secs, w, runs) in enumerate(stats):
        if runs < trials and not (runs and secs / max(w, 1) > GIVE_UP * best):
            return i
    return min(range(len(stats)), key=lambda k: stats[k][0] / max(stats[k][1], 1) if stats[k][2] else float("inf"))


class Engine:
    """Compiled shapes plus a store; `run()` evaluates every check on what the store holds."""

    def __init__(self, sg: Graph, rewrite=True, plans="adaptive"):
        self.sg = sg
        self.compiler = Compiler(sg, rewrite=rewrite)
        self.checks = self.compiler.compile()
        self.codec = TermCodec()
        self.store = ox.Store()
        # Plan choice. A SHACL-SPARQL constraint may have several batch queries, each proven to
        # give the same solutions (reasoner/fastsparql.py, rewrites 2 and 2b); which is faster
        # depends on the shape and the data. "adaptive" tries each on the first batches and then
        # keeps the one with the least time per quad loaded; an integer fixes the plan (index,
        # the last one where fewer), as the differential tests do to check every plan.
        self.plans = plans
        self.weight = 1          # the size of the batch in the store (quads), set by the caller
        self._plan_time = {}     # constraint -> [[seconds, weight, runs] per plan]

    TRIALS = 2

    def plan(self, sc):
        """(index, query) of the batch query to run for a SPARQL constraint."""
        plans = sc.plans
        if len(plans) < 2:
            return 0, sc.batch_query
        if self.plans != "adaptive":
            i = min(int(self.plans), len(plans) - 1)
            return i, plans[i]
        i = choose_plan(self._plan_time.setdefault(id(sc), [[0.0, 0, 0] for _ in plans]), self.TRIALS)
        return i, plans[i]

    def _timed(self, sc, i, seconds):
        if self.plans == "adaptive" and len(sc.plans) > 1:
            st = self._plan_time[id(sc)][i]
            st[0] += seconds
            st[1] += self.weight
            st[2] += 1

    def load_base(self, graph):
        """Load the data every batch sees (the knowledge graph), once."""
        self._base_quads = self.load(graph)
        # The hashes of the knowledge graph's quads, to tell a batch quad the graph may hold (then
        # the store answers) from one it cannot (most): a set of the quads themselves took 400 MB
        # with a full edit table, these take a tenth of that.
        self.base_hashes = {hash(q) for q in self.store}
        self.wrap_large_stars()
        self._churn = 0
        self.reset_above_lines = max(self.RESET_ABOVE_LINES, len(self._base_quads) // 4)
        self.renew_after_quads = max(self.RENEW_AFTER_QUADS, len(self._base_quads))
        self.codec.snapshot()

    def base_quads(self):
        """The knowledge graph's quads as the store holds them (what a batch must leave behind),
        read from a store filled as reset() fills one: oxigraph keeps some literals in another
        form than it was given (numbers in canonical form)."""
        store = ox.Store()
        store.extend(self._base_quads)
        return set(store)

    WRAP_ROWS = WRAP_ROWS
    wrap_rows = WRAP_ROWS
    star_rows = None     # star -> its solutions in the knowledge graph, counted by load_base

    def wrap_large_stars(self):
        """Rewrite 6 on every compiled query, with the knowledge graph the store holds now."""
        self.star_rows = {}
        large = star_counter(self.store, self.wrap_rows, self.star_rows)
        for c in self.checks:
            if c.kind == "sparql" and c.sparql.plans:
                sc = c.sparql
                sc.written_plans = getattr(sc, "written_plans", None) or list(sc.plans)
                sc.plans = [fs.wrap_large_stars(p, large) for p in sc.written_plans]
                sc.batch_query = sc.plans[0]
                # with a large star, one more plan: the batch query without the EXISTS rewrites,
                # the star wrapped. After the hash join with the large relation few rows remain,
                # and oxigraph runs each EXISTS per row by index lookups (BundledPair with 87,724
                # edits: 0.68 s a 2,000-claim batch, against 1.5 s under rewrite 2 and 5.6 s under 2b)
                if self.compiler.rewrite and sc.plans != sc.written_plans:
                    written = fs.wrap_large_stars(sc.written_batch, large)
                    if written not in sc.plans:
                        sc.plans.append(written)
            elif c.kind == "core" and c.query is not None:
                c.written_query = getattr(c, "written_query", None) or c.query
                c.query = fs.wrap_large_stars(c.written_query, large)

    # A batch comes out of the store again in one of two ways. A new store refilled with the
    # knowledge graph (reset) costs about 7 ms, 0.14 ms an encounter in batches of 50; removing the
    # batch quad by quad costs less for small batches, but removed quads slow oxigraph's in-memory
    # store down (and their strings stay), so the store is renewed once RENEW_AFTER_QUADS quads
    # have come and gone. Measured on 4,000 synthetic encounters in batches of 50: 0.37 ms an
    # encounter with a new store per batch, 0.25 renewing every 10,000 quads, 0.45 every 250,000.
    # Past RESET_ABOVE_LINES N-Triples lines, reading them as quads in Python costs more than a
    # reset, so large batches (the validator's thousands of claims) get a new store.
    # Both costs of a reset grow with the knowledge graph (refilling it: about 1 us a quad), so
    # with a large graph (an imported edit table of hundreds of thousands of quads) a batch is
    # taken out quad by quad, and the store renewed only after as many quads as the graph holds
    # have come and gone: then a reset costs about as much as reading the batches since the last.
    RESET_ABOVE_LINES = 3000
    RENEW_AFTER_QUADS = 10_000
    reset_above_lines = RESET_ABOVE_LINES   # set for the knowledge graph by load_base
    renew_after_quads = RENEW_AFTER_QUADS

    def load_batch(self, triples, nt, skip=None):
        """Add a batch (rdflib triples, N-Triples lines); returns what unload_batch takes back.
        Quads the knowledge graph holds are not added, so taking the batch out leaves it whole."""
        added = self.load(triples, skip=skip)
        loaded = (added, False)
        if nt and len(nt) <= self.reset_above_lines:
            # the store holds the knowledge graph and this batch's triples added just above: a
            # quad it holds is the graph's (or already in `added`)
            base, store = self.base_hashes, self.store
            quads = [q for q in ox.parse("\n".join(nt), **WRITTEN_NT) if hash(q) not in base or q not in store]
            self.store.extend(quads)
            added.extend(quads)
        elif nt:
            loaded = (added, True)
            self.load_nt(nt)
        return loaded

    def unload_batch(self, loaded):
        """Take a batch out (loaded: what load_batch returned, or None when it failed midway)."""
        added, must_reset = loaded if loaded is not None else ([], True)
        self._churn += len(added)
        if must_reset or self._churn > self.renew_after_quads:
            self.reset()
        else:
            remove = self.store.remove
            for q in added:
                remove(q)
            self.codec.reset()

    def load(self, graph_or_triples, skip=None):
        quads = []
        to = self.codec.quad
        for t in graph_or_triples:
            if skip is not None and t in skip:
                continue
            quads.append(to(t))
        self.store.extend(quads)
        return quads

    def load_nt(self, lines):
        """Load N-Triples lines as they are (reasoner/fastinput.py writes only canonical literals,
        which the store keeps unchanged, so they need no codec)."""
        if lines:
            self.store.load("\n".join(lines), **WRITTEN_NT)

    def reset(self):
        """Back to the knowledge graph alone: a new store filled from the base quads (oxigraph's
        in-memory store does not give memory back when quads are removed: its string dictionary
        keeps every IRI and literal)."""
        self.store = ox.Store()
        self.store.extend(self._base_quads)
        self._churn = 0
        self.codec.reset()

    def run(self):
        out = []
        for c in self.checks:
            if c.kind == "sparql":
                out.extend(self._run_sparql(c))
            elif c.kind == "datatype":
                out.extend(self._run_datatype(c))
            else:
                out.extend(self._run_core(c, c.query))
        return out

    def _rows(self, query, **kw):
        try:
            return self.store.query(query, **kw)
        except SyntaxError as exc:
            raise ContentError(f"internal error: the fast engine wrote a query oxigraph cannot read: {exc}\n{query}")

    def _core_messages(self, c):
        if c.shape.messages:
            return list(c.shape.messages)
        tmpl = GENERIC.get(c.component, "Value does not satisfy {c} {n}")
        n = getattr(c, "param_value", None)
        n = "" if n is None else (f"<{n}>" if isinstance(n, URIRef) else str(n))
        return [Literal(tmpl.format(n=n, c=c.component.rsplit("#", 1)[-1]).strip())]

    def _run_core(self, c, query):
        out = []
        fv = c.focus[1:]
        vv = c.value[1:] if c.value else None
        pv = getattr(c, "path_var", None)
        pv = pv[1:] if pv else None
        frm = self.codec.from_ox
        msgs = self._core_messages(c)
        for row in self._rows(query):
            focus = frm(row[fv])
            value = frm(row[vv]) if vv and row[vv] is not None else None
            path = frm(row[pv]) if pv else c.path
            out.append(Result(focus, path, value, c.shape.severity, c.shape.node, c.component, msgs))
        return out

    def _run_datatype(self, c):
        gen, values, dt, anc = c.param
        v = c.value
        suspect = [x for x in self.codec.suspect]
        if dt == RDFS.Literal:
            cond = f"!isLiteral({v})"
        elif stored_datatype(dt) != str(dt):
            cond = "true"  # the store keeps xsd:byte, xsd:int ... as xsd:integer: decide in Python
        else:
            cond = f"!(isLiteral({v}) && datatype({v}) = <{dt}>)"
        if suspect and cond != "true":
            cond += " || " + " || ".join(f"sameTerm({v}, {_ox_sparql(x)})" for x in suspect)
        query = f"SELECT DISTINCT {anc}{Compiler._cols(c.focus, v)} WHERE {{ {gen} {values} FILTER ({cond}) }}"
        rows = self._run_core(c, query)
        return [r for r in rows if not pyshacl_datatype_ok(r.value, dt)]

    def focus_nodes(self, gen):
        return [row["this"] for row in self._rows(f"SELECT ?this WHERE {{ {gen} }}")]

    def _run_sparql(self, c):
        sc = c.sparql
        frm = self.codec.from_ox
        by_focus = defaultdict(list)
        gen = sc.gen
        names = sc.projected

        def solutions(query, **kw):
            nonlocal names
            res = self._rows(query, **kw)
            if names is None:
                names = [v.value for v in res.variables]
            return res

        if not sc.binds_this:
            rows = list(solutions(sc.per_focus_query))
            for f in self.focus_nodes(gen):
                by_focus[f] = rows
        elif sc.batch_query is not None:
            i, query = self.plan(sc)
            t0 = time.perf_counter()
            for row in solutions(query):
                rows = by_focus[row["this"]]
                if sc.limit is None or len(rows) < sc.limit:
                    rows.append(row)
            self._timed(sc, i, time.perf_counter() - t0)
        else:
            for f in self.focus_nodes(gen):
                if isinstance(f, ox.BlankNode):
                    raise Unsupported(f"shape {shape_name(c.shape)}: the SPARQL constraint must run per focus "
                                      f"node ({sc.why}) and a blank node cannot be written into it")
                text = sc.prologue + fs.substitute(sc.parsed, "this", _ox_sparql(f)).render()
                by_focus[f] = list(solutions(text))
        out = []
        shape = c.shape
        per_focus = sc.binds_this and sc.batch_query is None
        for f_ox, rows in by_focus.items():
            f = frm(f_ox)
            violations = []
            seen_failure = False
            for row in rows:
                var_dict = {}
                for var in names:
                    if per_focus and var == "this":
                        var_dict[var] = f
                        continue
                    val = row[var]
                    if val is not None:
                        var_dict[var] = frm(val)
                if not sc.projects_this:
                    var_dict.pop("this", None)
                failure = var_dict.pop("failure", None)
                if failure is not None:
                    if seen_failure:
                        continue
                    violations.append((True, var_dict))
                    seen_failure = True
                    continue
                p = var_dict.pop("path", None)
                v = var_dict.pop("value", None)
                t = var_dict.pop("this", None)
                if p is not None or v is not None or t is not None:
                    item = (t, p, v, var_dict)
                    if item in violations:
                        continue
                    violations.append(item)
            result_val = None if shape.is_property else f
            for viol in violations:
                if viol[0] is True:
                    bound = dict(viol[1])
                    focus, value, path = f, result_val, None
                else:
                    t, p, v, vd = viol
                    if v is None:
                        v = result_val
                    bound = dict(vd)
                    for k, x in (("this", t), ("path", p), ("value", v)):
                        if x is not None:
                            bound[k] = x
                    focus, value, path = t or f, v, p
                if path is None and shape.is_property:
                    path = shape.path
                messages = []
                for m in sc.messages:
                    if m in shape.messages:
                        continue
                    messages.append(Literal(format_message(str(m.value), bound)) if isinstance(m, Literal) else m)
                for m in shape.messages:
                    messages.append(Literal(format_message(str(m.value), bound)) if isinstance(m, Literal) else m)
                out.append(Result(focus, path, value, shape.severity, shape.node, SH.SPARQLConstraintComponent,
                                  messages, sc.node))
        return out


def shape_name(s):
    return s.name()


def _ox_sparql(term):
    if isinstance(term, ox.Literal):
        text = term.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        if term.language:
            return f'"{text}"@{term.language}'
        return f'"{text}"^^<{term.datatype.value}>'
    if isinstance(term, ox.NamedNode):
        return f"<{term.value}>"
    raise Unsupported(f"cannot write {term!r} into a query")


# ---------------------------------------------------------------------------------------------
# the generic entry point (W3C suite) and the report graph


def validate_graphs(data_graph: Graph, shapes_graph: Graph, allow_warnings=False):
    """Validate an rdflib data graph against an rdflib shapes graph.

    Returns (conforms, results): results are Result objects (focus, path, value, severity,
    shape, component, messages). Raises Unsupported when a shape uses something not implemented.
    """
    engine = Engine(shapes_graph)
    engine.load(data_graph)
    _refuse_nested_suspects(engine)
    results = engine.run()
    conforms = not any(r.severity == SH.Violation or not allow_warnings for r in results)
    return conforms, results


def _refuse_nested_suspects(engine):
    """A nested sh:datatype is decided in SPARQL alone; refuse when the store changed a literal."""
    if engine.codec.suspect and engine.compiler.nested_datatypes:
        raise Unsupported("a nested sh:datatype over ill-typed literals or literals the fast store normalizes "
                          f"({', '.join(sorted(str(x) for x in engine.codec.suspect)[:3])})")


def report_graph(results, conforms, sg=None):
    """The sh:ValidationReport; blank-node shapes, paths and constraints are copied from the shapes
    graph (as pySHACL does), so the report reads on its own."""
    g = Graph()
    g.bind("sh", SH)
    if sg is not None:
        for prefix, ns in sg.namespaces():
            g.bind(prefix, ns, override=False)
    copied = set()

    def copy(node):
        if sg is not None and isinstance(node, BNode) and node not in copied:
            copied.add(node)
            for t in sg.cbd(node):
                g.add(t)
    report = BNode()
    g.add((report, RDF.type, SH.ValidationReport))
    g.add((report, SH.conforms, Literal(conforms)))
    for r in results:
        node = BNode()
        g.add((report, SH.result, node))
        g.add((node, RDF.type, SH.ValidationResult))
        g.add((node, SH.focusNode, r.focus))
        g.add((node, SH.resultSeverity, r.severity))
        g.add((node, SH.sourceShape, r.shape))
        g.add((node, SH.sourceConstraintComponent, r.component))
        if r.path is not None:
            g.add((node, SH.resultPath, r.path))
        if r.value is not None:
            g.add((node, SH.value, r.value))
        if r.constraint is not None:
            g.add((node, SH.sourceConstraint, r.constraint))
        for m in r.messages:
            g.add((node, SH.resultMessage, m))
        for x in (r.shape, r.path, r.constraint):
            copy(x)
    return g


class LazyReport:
    """The sh:ValidationReport graph, built only when asked for (a batch of a million results
    would otherwise cost an rdflib graph nobody reads)."""

    def __init__(self, results, conforms, sg, extra=None):
        self.results = results
        self.conforms = conforms
        self._sg = sg
        self._extra = extra      # the reference engine's report for the claims it validated
        self._graph = None

    @property
    def graph(self):
        if self._graph is None:
            g = self._graph = report_graph(self.results, self.conforms, self._sg)
            if self._extra is not None:
                report = next(g.subjects(RDF.type, SH.ValidationReport))
                other = next(self._extra.subjects(RDF.type, SH.ValidationReport), None)
                for t in self._extra:
                    if t[0] == other:
                        if t[1] == SH.result:
                            g.add((report, SH.result, t[2]))
                        continue
                    g.add(t)
        return self._graph

    def serialize(self, *args, **kwargs):
        return self.graph.serialize(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.graph, name)


# ---------------------------------------------------------------------------------------------
# claims


from .validate import SourceLookup, _local, _owning_shape  # noqa: E402  (one definition, shared with the reference)


def _triples(graph):
    """The triples of an rdflib graph, read from the in-memory store's index when it has one
    (three times faster than Graph.__iter__, which computes the contexts of every triple)."""
    spo = getattr(graph.store, "_Memory__spo", None)
    if spo is None or type(graph) is not Graph:
        return list(graph)
    return [(s, p, o) for s, po in spo.items() for p, os in po.items() for o in os]


class FastValidator(SourceLookup):
    """Same interface and findings as reasoner.validate.ClaimValidator, on pyoxigraph."""

    def __init__(self, kb, group="coding"):
        from .validate import shapes_graph

        self.kb = kb
        self.sg = shapes_graph(kb.content, group)
        self.engine = Engine(self.sg)
        self.kb_triples = kb.graph  # membership of a triple (records read as rdflib triples only)
        self.engine.load_base(kb.graph)
        _refuse_nested_suspects(self.engine)
        self._owner = {}
        self._ref = None
        # claims validated here and handed to the reference (see split), with the time spent
        self.stats = {"fast_claims": 0, "fast_seconds": 0.0, "reference_claims": 0, "reference_seconds": 0.0}

    def _shape_info(self, shape):
        hit = self._owner.get(shape)
        if hit is None:
            owner = _owning_shape(self.sg, shape)
            sources = sorted(str(s) for s in self.sg.objects(owner, DCTERMS.source))
            hit = self._owner[shape] = (_local(owner) if isinstance(owner, URIRef) else str(owner), sources)
        return hit

    def _reference(self):
        if self._ref is None:
            from .validate import ClaimValidator

            self._ref = ClaimValidator(self.kb)
        return self._ref

    def _validate_reference(self, records):
        """The reference on the claims this engine hands over. rdflib's SPARQL raises on some
        ill-typed literals (SUM over units "two"^^xsd:integer); then claims go one at a time, and
        those the reference cannot validate at all come back to be validated here."""
        ref = self._reference()
        try:
            findings, report = ref.validate(records)
            return findings, report, []
        except Exception:
            if len(records) == 1:
                return [], None, list(records)
        findings, report, crashed = [], Graph(), []
        for rec in records:
            f, r, c = self._validate_reference([rec])
            findings.extend(f)
            crashed.extend(c)
            if r is not None:
                report += r
        return findings, report, crashed

    def split(self, records):
        """(records for this engine, records for the reference): a claim carrying a literal the two
        SPARQL engines read differently goes to the reference, with every claim sharing a node
        with it (the reference would merge them into one graph)."""
        return self._split(records)[:2]

    def _split(self, records):
        """(fast records, reference records, rdflib triples, N-Triples lines) for a batch. A record
        written by reasoner/fastinput.py carries only canonical literals and goes to this engine
        as N-Triples; the others are checked literal by literal."""
        disagree = self.engine.codec.engines_disagree
        owner = {}
        parent = list(range(len(records)))
        seen_lit = {}

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        marked = set()
        per_record = []
        for i, rec in enumerate(records):
            if rec.nt is not None and rec._graph is None:
                per_record.append(None)
                for line in rec.nt:
                    s = line[:line.index(" ")]
                    j = owner.setdefault(s, i)
                    if j != i:
                        parent[find(i)] = find(j)
                continue
            mine = _triples(rec.graph)
            per_record.append(mine)
            for s, _, o in mine:
                j = owner.setdefault(s.n3() if type(s) is URIRef else s, i)
                if j != i:
                    parent[find(i)] = find(j)
                if type(o) is Literal:
                    bad = seen_lit.get(o)
                    if bad is None:
                        bad = seen_lit[o] = disagree(o)
                    if bad or o.ill_typed is True:
                        marked.add(i)
        roots = {find(i) for i in marked}
        fast, ref, triples, nt = [], [], [], []
        for i, rec in enumerate(records):
            if roots and find(i) in roots:
                ref.append(rec)
            else:
                fast.append(rec)
                if per_record[i] is None:
                    nt.extend(rec.nt)
                else:
                    triples.extend(per_record[i])
        return fast, ref, triples, nt

    def validate(self, records):
        """Validate claim records (each with .graph and .node); return findings, report."""
        t0 = time.perf_counter()
        fast_records, ref_records, triples, nt = self._split(records)
        try:
            findings, results = self._validate_fast(fast_records, triples, nt)
        except Unsupported:
            findings, results, ref_records = [], [], list(records)
        t1 = time.perf_counter()
        extra = None
        if ref_records:
            ref_findings, extra, crashed = self._validate_reference(ref_records)
            findings.extend(ref_findings)
            if crashed:  # the reference cannot validate these at all: give this engine's answer
                more, more_results = self._validate_fast(crashed, [t for r in crashed for t in _triples(r.graph)], [])
                findings.extend(more)
                results = list(results) + list(more_results)
        t2 = time.perf_counter()
        st = self.stats
        st["fast_claims"] += len(records) - len(ref_records)
        st["fast_seconds"] += t1 - t0
        st["reference_claims"] += len(ref_records)
        st["reference_seconds"] += t2 - t1
        findings.sort(key=lambda f: (f["file"], f["claim"], f["line"] or 0, SEVERITY_ORDER[f["severity"]], f["shape"]))
        conforms = not any(f["severity"] == "violation" for f in findings) and not any(
            r.severity == SH.Violation for r in results)
        return findings, LazyReport(results, conforms, self.sg, extra)

    def run_batch(self, triples, nt):
        """The engine's results on one batch (rdflib triples and N-Triples lines), which is taken
        out of the store again afterwards, whatever happens."""
        engine = self.engine
        engine.weight = len(triples) + len(nt)
        loaded = None
        try:
            loaded = engine.load_batch(triples, nt, skip=self.kb_triples)
            _refuse_nested_suspects(engine)
            return engine.run()
        finally:
            engine.unload_batch(loaded)

    def _validate_fast(self, records, triples, nt):
        if not records:
            return [], []
        results = self.run_batch(triples, nt)
        line_info, claim_rec = {}, {}
        for rec in records:
            claim_rec.setdefault(str(rec.node), rec)
            if rec.nt is not None and rec._graph is None:
                # written from the prepared JSON (reasoner/fastinput.py): its lines are in rec.source
                base = str(rec.node)[: -len(rec.id)]
                for line in rec.source["lines"]:
                    line_info[base + line["id"]] = (rec, int(line["line"]), line["code"])
                continue
            g = rec.graph
            for line in g.objects(rec.node, CPTKG.line):
                code, number = g.value(line, CPTKG.code), g.value(line, CPTKG.lineNumber)
                line_info[str(line)] = (rec, int(number) if number is not None else None,
                                        _local(code) if code is not None else None)
        with_lines = {id(i[0]) for i in line_info.values()}
        findings = []
        for r in results:
            focus = str(r.focus)
            info = line_info.get(focus)
            if info is None:
                rec = claim_rec.get(focus)
                if rec is None or id(rec) not in with_lines:
                    continue  # a result on the knowledge graph itself is `cptkg check`'s business
                info = (rec, None, None)
            rec, number, code = info
            shape, sources = self._shape_info(r.shape)
            findings.append({
                "claim": rec.id,
                "line": number,
                "code": code,
                "severity": SEVERITY.get(r.severity, "violation"),
                "message": str(r.messages[0]) if r.messages else "",
                "shape": shape,
                "field": _local(r.path) if r.path is not None else None,
                "sources": [self._source(s) for s in sources],
                "focus": focus,
                "file": str(rec.file),
            })
        return findings, results
