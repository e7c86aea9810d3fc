"""Input checks of described encounters (shapes/encounter) on the fast SHACL engine.

`FastEncounterChecker` has EncounterChecker's interface (reasoner/validate.py): `check(records)`
returns {record id: [result dicts]} with the same keys and values run_shacl builds (focus, path,
severity, message, shape, shape_label, sources, value). tests/test_fast_check.py compares the
two on every encounter case, every derive case and a seeded batch with injected input errors.

How it works
  * The encounter shapes are compiled once by reasoner.fast.Engine, and the knowledge graph is
    loaded into its store once, through `FastValidator(kb, group="encounter")`; a batch of
    records is added, the compiled queries run, and the store goes back to the knowledge graph.
  * FastValidator's split decides which records this engine may take: a record carrying a
    literal rdflib and oxigraph read differently (an ill-typed date, "20240105"^^xsd:date ...)
    goes to the reference EncounterChecker, with every record sharing a node with it.
  * When the engine refuses the shapes (`Unsupported` at construction) every batch goes to the
    reference; when it refuses a batch (two literals the store would merge ...), that batch does.
    Nothing is skipped: a record is checked by one engine or the other.
  * Messages: a shape's sh:message as the engine gives it; where the shape has none, pySHACL's
    own generic message, made by pySHACL's constraint component classes (`GenericMessages`), so
    "Value is not Literal with datatype xsd:boolean" reads the same whichever engine ran.
    A result with more than one message sends its batch to the reference (which of them
    pySHACL's report names first is an accident of its graph, not something to imitate).
  * Order: pySHACL lists a record's results shape by shape in an order that depends on Python's
    hash seed; here a record's results come in a fixed order: by named shape, then the order
    of the constraints in the shapes file (pySHACL's order inside one shape), then focus node and
    value. `derive` reports the first violation of a record, so within one shape both agree.
"""
from __future__ import annotations

import time

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import DCTERMS, RDFS

from .fast import COMPONENT_OF, SEVERITY, FastValidator, Unsupported
from .validate import EncounterChecker, _local, _owning_shape, shapes_graph
from .vocab import SH

# constraint component -> the parameter that names it (pySHACL keys its classes by parameter)
_PARAM_OF = {comp: param for param, comp in COMPONENT_OF.items()}
_PARAM_OF[SH.QualifiedMinCountConstraintComponent] = SH.qualifiedValueShape
_PARAM_OF[SH.QualifiedMaxCountConstraintComponent] = SH.qualifiedValueShape


class GenericMessages:
    """pySHACL's generic result message for a shape without sh:message, made by pySHACL's own
    constraint component (make_generic_messages) on the same shapes graph."""

    def __init__(self, sg):
        from pyshacl.shapes_graph import ShapesGraph

        self.sg = sg
        self._wrapped = ShapesGraph(sg)   # adds pySHACL's two system triples, as every run does
        self._components = {}
        self._data = Graph()              # namespaces of a fresh Graph, like EncounterChecker's data graph

    def _component(self, shape, component):
        key = (shape, component)
        hit = self._components.get(key)
        if hit is None:
            from pyshacl.constraints import CONSTRAINT_PARAMETERS_MAP

            param = _PARAM_OF.get(component)
            cls = CONSTRAINT_PARAMETERS_MAP.get(param)
            if cls is None:
                raise Unsupported(f"no pySHACL generic message for {component} on {shape}")
            if not self._wrapped._node_shape_cache:
                self._wrapped.shapes  # noqa: B018  (pySHACL builds its shapes on first access)
            try:
                pyshacl_shape = self._wrapped.lookup_shape_from_node(shape)
            except KeyError:
                raise Unsupported(f"pySHACL does not know the shape {shape}") from None
            hit = self._components[key] = cls(pyshacl_shape)
        return hit

    def message(self, shape, component, focus, value, rec):
        comp = self._component(shape, component)
        data = self._data
        if isinstance(focus, BNode):
            # the message describes a blank node by its triples, which are the record's
            data = Graph()
            for t in rec.graph:
                data.add(t)
        msgs = comp.make_generic_messages(data, focus, value)
        if not msgs:
            return ""
        if len(msgs) > 1:
            raise Unsupported(f"pySHACL makes {len(msgs)} generic messages for {component}")
        return str(msgs[0])


def _subjects(rec):
    """The subjects of a record's triples, without parsing N-Triples a fast reader wrote."""
    if getattr(rec, "nt", None) is not None and getattr(rec, "_graph", None) is None:
        out = []
        for line in rec.nt:
            if line.startswith("<"):
                out.append(URIRef(line[1:line.index(">")]))
            else:  # not written by reasoner/fastinput.py today; read it properly if it ever is
                return list(dict.fromkeys(rec.graph.subjects()))
        return list(dict.fromkeys(out))
    return list(rec.graph.subjects(unique=True))


class FastEncounterChecker:
    """Same interface and results as reasoner.validate.EncounterChecker, on pyoxigraph."""

    def __init__(self, kb):
        self.kb = kb
        self._ref = None
        self.refused = None      # why the engine refused the shapes (then the reference does it all)
        self.validator = None
        # encounters checked here and handed to the reference, with the time spent
        self.stats = {"fast_encounters": 0, "fast_seconds": 0.0, "reference_encounters": 0,
                      "reference_seconds": 0.0, "refused_batches": 0}
        try:
            self.validator = FastValidator(kb, group="encounter")
            self.sg = self.validator.sg
            self.generic = GenericMessages(self.sg)
        except Unsupported as exc:
            self.validator = None
            self.refused = str(exc)
            self.sg = shapes_graph(kb.content, "encounter")
        self._shape_info = {}
        self._order = self._constraint_order()

    # -- the reference, on the same shapes graph (so blank-node paths are the same nodes) -------
    def _reference(self):
        if self._ref is None:
            self._ref = EncounterChecker(self.kb)
            self._ref.sg = self.sg
        return self._ref

    def _constraint_order(self):
        """(shape, component) -> position in the shapes files, walking each named shape's
        constraints and property shapes in the order they are written (pySHACL's order)."""
        sg, order = self.sg, {}

        def walk(node, seen):
            if node in seen:
                return
            seen.add(node)
            for p, o in sg.predicate_objects(node):
                if p == SH.property:
                    walk(o, seen)
                elif p == SH.qualifiedValueShape:
                    for comp in (SH.QualifiedMinCountConstraintComponent, SH.QualifiedMaxCountConstraintComponent):
                        order.setdefault((node, comp), len(order))
                elif p == SH.sparql:  # each SPARQL constraint in the order written
                    order.setdefault((node, SH.SPARQLConstraintComponent, o), len(order))
                elif p in COMPONENT_OF:
                    order.setdefault((node, COMPONENT_OF[p]), len(order))

        for node in sorted({s for s in sg.subjects() if isinstance(s, URIRef)}, key=str):
            walk(node, set())
        return order

    # -- checking ------------------------------------------------------------------------------
    def check(self, records):
        if not self.sg or not records:
            return {}
        if self.validator is None:
            return self._timed_reference(records)
        t0 = time.perf_counter()
        fast_records, ref_records, triples, nt = self.validator._split(records)
        try:
            fast = self._check_fast(fast_records, triples, nt)
        except Unsupported:
            self.stats["refused_batches"] += 1
            fast, fast_records, ref_records = {}, [], list(records)
        self.stats["fast_encounters"] += len(fast_records)
        self.stats["fast_seconds"] += time.perf_counter() - t0
        ref = self._timed_reference(ref_records) if ref_records else {}
        problems = {}
        for rec in records:  # in the order of the records
            for part in (fast, ref):
                if rec.id in part and rec.id not in problems:
                    problems[rec.id] = list(fast.get(rec.id, [])) + list(ref.get(rec.id, []))
        return problems

    def _timed_reference(self, records):
        t0 = time.perf_counter()
        out = self._reference().check(records)
        self.stats["reference_encounters"] += len(records)
        self.stats["reference_seconds"] += time.perf_counter() - t0
        return out

    def _check_fast(self, records, triples, nt):
        if not records:
            return {}
        results = self.validator.run_batch(triples, nt)
        if not results:
            return {}
        owner = {}
        for rec in records:
            for s in _subjects(rec):
                owner.setdefault(s, rec)
        rows = []
        for r in results:
            rec = owner.get(r.focus)
            if rec is None:
                continue  # a result on the knowledge graph itself is `cptkg check`'s business
            rows.append((rec, self._result(r, rec)))
        problems = {}
        for rec, res in sorted(rows, key=lambda x: x[1][1]):
            problems.setdefault(rec.id, []).append(res[0])
        return problems

    def _info(self, shape):
        hit = self._shape_info.get(shape)
        if hit is None:
            sg = self.sg
            owner = _owning_shape(sg, shape)
            hit = self._shape_info[shape] = (
                _local(owner) if isinstance(owner, URIRef) else str(owner),
                str(sg.value(owner, RDFS.label) or ""),
                sorted(str(s) for s in sg.objects(owner, DCTERMS.source)),
                not any(True for _ in sg.objects(shape, SH.message)),
            )
        return hit

    def _result(self, r, rec):
        name, label, sources, no_message = self._info(r.shape)
        if len(r.messages) > 1:
            raise Unsupported(f"a result of {name} has {len(r.messages)} messages")
        if r.component == SH.SPARQLConstraintComponent and r.messages:
            message = str(r.messages[0])
        elif no_message and r.component != SH.SPARQLConstraintComponent:
            message = self.generic.message(r.shape, r.component, r.focus, r.value, rec)
        elif r.messages:
            message = str(r.messages[0])
        else:
            raise Unsupported(f"a result of {name} without a message")
        res = {
            "focus": r.focus,
            "path": r.path,
            "severity": SEVERITY.get(r.severity, "violation"),
            "message": message,
            "shape": name,
            "shape_label": label,
            "sources": list(sources),
            "value": r.value,
        }
        at = (r.shape, r.component, r.constraint) if r.component == SH.SPARQLConstraintComponent else (r.shape, r.component)
        key = (name, self._order.get(at, len(self._order)), _sort_text(r.focus),
               _sort_text(r.value), message)
        return res, key


def _sort_text(term):
    if term is None:
        return ""
    if isinstance(term, Literal):
        return "2" + term.n3()
    return ("1" if isinstance(term, BNode) else "0") + str(term)
