"""Validation with SHACL: claims against shapes/coding, encounters against shapes/encounter,
the knowledge base against shapes/kb. pySHACL is the reference engine.

Findings are plain records (claim, line, code, severity, message, shape, sources, focus), beside
the standard sh:ValidationReport graph.
"""
from __future__ import annotations

from rdflib import Graph, URIRef
from rdflib.namespace import DCTERMS, RDF, RDFS, SKOS

from .kb import parse_turtle
from .sparqlcache import install as _install_sparql_cache
from .vocab import CPTKG, SH, bind_all

SEVERITY = {SH.Violation: "violation", SH.Warning: "warning", SH.Info: "info"}
SEVERITY_ORDER = {"violation": 0, "warning": 1, "info": 2}


def shapes_graph(content, group):
    g = bind_all(Graph())
    for path in sorted((content.root / "shapes").glob("*.ttl")):
        parse_turtle(path, g)
    for path in content.shapes.get(group, []):
        parse_turtle(path, g)
    return g


def _local(node):
    return str(node).rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _owning_shape(sg, shape):
    """A property shape's result names the blank node; report the named node shape that owns it."""
    seen = set()
    while not isinstance(shape, URIRef) and shape not in seen:
        seen.add(shape)
        parent = sg.value(None, SH.property, shape) or sg.value(None, SH.sparql, shape)
        if parent is None:
            break
        shape = parent
    return shape


def run_shacl(data_graph, sg):
    """Validate in place with pySHACL; return (report graph, list of raw results)."""
    from pyshacl import validate as shacl_validate

    _install_sparql_cache()

    conforms, report, _ = shacl_validate(
        data_graph, shacl_graph=sg, advanced=True, inference="none",
        allow_warnings=True, allow_infos=True, inplace=True, abort_on_first=False,
    )
    if not isinstance(report, Graph):
        from .errors import ContentError

        raise ContentError(f"the SHACL engine refused the shapes: {report}")
    results = []
    for r in report.subjects(RDF.type, SH.ValidationResult):
        source_shape = report.value(r, SH.sourceShape)
        owner = _owning_shape(sg, source_shape)
        sources = sorted(str(s) for s in sg.objects(owner, DCTERMS.source))
        results.append({
            "focus": report.value(r, SH.focusNode),
            "path": report.value(r, SH.resultPath),
            "severity": SEVERITY.get(report.value(r, SH.resultSeverity), "violation"),
            "message": str(report.value(r, SH.resultMessage) or ""),
            "shape": _local(owner) if isinstance(owner, URIRef) else str(owner),
            "shape_label": str(sg.value(owner, RDFS.label) or ""),
            "sources": sources,
            "value": report.value(r, SH.value),
        })
    return report, results


class SourceLookup:
    """The id and title of a source named by a shape, looked up once (shared by both engines)."""

    def _source(self, iri):
        info = self.__dict__.setdefault("source_info", {})
        if iri not in info:
            title = self.kb.graph.value(URIRef(iri), DCTERMS.title)
            info[iri] = {"id": _local(iri), "title": str(title) if title else None}
        return info[iri]


def unspecified_shapes(sg):
    """Shapes whose message SPARQL leaves partly unspecified, as (GROUP_CONCAT shapes: the order
    of the items; LIMIT-without-ORDER-BY shapes: which row of a focus node is reported). Two
    correct engines may differ there; comparisons of findings allow for it (finding_key)."""
    import re

    concat, limit = set(), set()
    for shape, c in sg.subject_objects(SH.sparql):
        text = str(sg.value(c, SH.select)).upper()
        name = _local(shape)
        if "GROUP_CONCAT" in text:
            concat.add(name)
        if re.search(r"\bLIMIT\b", text) and "ORDER BY" not in text:
            limit.add(name)
    return frozenset(concat), frozenset(limit)


def finding_key(finding, unspecified):
    """A finding as a comparable string, allowing for what SPARQL leaves unspecified."""
    import json
    import re

    concat, limit = unspecified
    f = dict(finding)
    if f["shape"] in concat:  # the words in any order; a full stop goes with whichever item is last
        f["message"] = sorted(w for w in re.split(r"[\s,;]+|\.(?=\s|$)", f["message"]) if w)
    if f["shape"] in limit:
        f["message"] = None
    return json.dumps(f, sort_keys=True)


class ClaimValidator(SourceLookup):
    def __init__(self, kb):
        self.kb = kb
        self.sg = shapes_graph(kb.content, "coding")

    def validate(self, records):
        """Validate claim records (each with .graph and .node); return findings, report graph."""
        data = Graph()
        data += self.kb.graph
        for rec in records:
            data += rec.graph
        report, results = run_shacl(data, self.sg)
        by_line = {}
        for rec in records:
            for line in rec.graph.objects(rec.node, CPTKG.line):
                by_line[line] = rec
        findings = []
        for r in results:
            focus = r["focus"]
            rec = by_line.get(focus)
            if rec is None and any(True for _ in data.objects(focus, CPTKG.line)):
                rec = next((x for x in records if x.node == focus), None)
            if rec is None:
                continue  # a result on the knowledge graph itself is `cptkg check`'s business
            g = rec.graph
            code = g.value(focus, CPTKG.code)
            number = g.value(focus, CPTKG.lineNumber)
            findings.append({
                "claim": rec.id,
                "line": int(number) if number is not None else None,
                "code": _local(code) if code is not None else None,
                "severity": r["severity"],
                "message": r["message"],
                "shape": r["shape"],
                "field": _local(r["path"]) if r["path"] is not None else None,
                "sources": [self._source(s) for s in r["sources"]],
                "focus": str(focus),
                "file": str(rec.file),
            })
        findings.sort(key=lambda f: (f["file"], f["claim"], f["line"] or 0, SEVERITY_ORDER[f["severity"]], f["shape"]))
        return findings, report


class EncounterChecker:
    """Input checks on described encounters (shapes/encounter). A violation makes the record bad input."""

    def __init__(self, kb):
        self.kb = kb
        self.sg = shapes_graph(kb.content, "encounter")

    def check(self, records):
        if not self.sg or not records:
            return {}
        data = Graph()
        data += self.kb.graph
        owner = {}
        for rec in records:
            data += rec.graph
            for s in rec.graph.subjects():
                owner.setdefault(s, rec)
        _, results = run_shacl(data, self.sg)
        problems = {}
        for r in results:
            rec = owner.get(r["focus"])
            if rec is None:
                continue
            problems.setdefault(rec.id, []).append(r)
        return problems


SEVERITY_IRI = {v: k for k, v in SEVERITY.items()}


def findings_graph(findings):
    """Findings as standard sh:ValidationResult nodes (named after the focus line), so analysts can
    query them beside the claims: `cptkg query top-findings --data claims.csv`, and the server."""
    from rdflib import Literal, URIRef
    from rdflib.namespace import RDF

    from .vocab import SHAPE

    g = Graph()
    for i, f in enumerate(findings):
        r = URIRef(f"{f['focus']}/finding/{i}")
        g.add((r, RDF.type, SH.ValidationResult))
        g.add((r, SH.focusNode, URIRef(f["focus"])))
        g.add((r, SH.resultSeverity, SEVERITY_IRI[f["severity"]]))
        g.add((r, SH.resultMessage, Literal(f["message"])))
        g.add((r, SH.sourceShape, SHAPE[f["shape"]]))
    return g
