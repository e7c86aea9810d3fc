"""Running SPARQL (a file, or a shipped report by name) over the knowledge graph plus data files.

Report parameters are declared in the query header (`# param: code (code, default=77002): ...`)
and bound by a VALUES block placed at the start of the outermost WHERE, so the same query text
runs unchanged on any SPARQL 1.1 engine.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import XSD

from .content import Query, _load_query
from .errors import ContentError, CptkgError
from .inputs import read_records
from .vocab import CPT, PREFIXES


def resolve(content, name_or_path) -> Query:
    p = Path(name_or_path)
    if p.suffix == ".rq" and p.exists():
        return _load_query(p, "adhoc")
    if p.suffix == ".rq":
        raise CptkgError("no such query file", file=p)
    return content.report(name_or_path)


def _term(value, ptype, name):
    if ptype == "code":
        return f"<{CPT}{value.strip().upper()}>"
    if ptype == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise CptkgError(f"parameter '{name}' must be a date YYYY-MM-DD, not '{value}'")
        return f'"{value}"^^<{XSD.date}>'
    if ptype == "integer":
        if not re.fullmatch(r"-?\d+", value):
            raise CptkgError(f"parameter '{name}' must be a whole number, not '{value}'")
        return value
    if ptype == "iri":
        if ":" in value and not value.startswith("http"):
            prefix, _, local = value.partition(":")
            if prefix in PREFIXES:
                return f"<{PREFIXES[prefix]}{local}>"
        return f"<{value}>"
    return json.dumps(value)


def bind_params(query: Query, params: dict) -> str:
    declared = {p["name"]: p for p in query.params}
    unknown = set(params) - set(declared)
    if unknown:
        known = ", ".join(declared) or "none"
        raise CptkgError(f"query '{query.id}' has no parameter {', '.join(sorted(unknown))} (parameters: {known})")
    names, terms = [], []
    for name, decl in declared.items():
        value = params.get(name, decl["default"])
        if value is None:
            raise CptkgError(f"query '{query.id}' needs --param {name}=... ({decl['description']})")
        if value == "" or value == "*":
            continue  # unbound: the query treats it as "any"
        names.append("?" + name)
        terms.append(_term(str(value), decl["type"], name))
    if not names:
        return query.text
    values = f"VALUES ({' '.join(names)}) {{ ({' '.join(terms)}) }}"
    m = re.search(r"\bWHERE\s*\{", query.text, re.I)
    if not m:
        raise ContentError("parameterised query has no WHERE {", file=query.path)
    return query.text[: m.end()] + "\n  " + values + "\n" + query.text[m.end():]


def data_graph(kb, data_files):

    g = Graph()
    g += kb.graph
    for path in data_files:
        g += file_graph(kb, path)
    return g


def file_graph(kb, path):
    """One data file as RDF; a claim file comes with its validation findings (sh:ValidationResult),
    so the report queries over claims can count findings by code and by rule."""
    from .validate import ClaimValidator, findings_graph

    kind = "claim" if _looks_like_claims(path) else "encounter"
    g = Graph()
    records = []
    for rec in read_records(path, kind, kb.content.context):
        if rec.error:
            raise rec.error
        g += rec.graph
        records.append(rec)
    if kind == "claim" and records:
        findings, _ = ClaimValidator(kb).validate(records)
        g += findings_graph(findings)
    return g


def _looks_like_claims(path):
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return True
    head = p.read_text(encoding="utf-8")[:4000]
    return '"claims"' in head or '"lines"' in head or "cptkg:line " in head or "ClaimLine" in head


def run_query(kb, name_or_path, data=(), params=None):
    query = resolve(kb.content, name_or_path)
    text = bind_params(query, params or {})
    g = data_graph(kb, data) if data else kb.graph
    try:
        result = g.query(text)
    except Exception as exc:
        raise ContentError(f"query failed: {exc}", file=query.path) from exc
    return result


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, URIRef):
        s = str(v)
        for prefix, ns in PREFIXES.items():
            if s.startswith(str(ns)) and prefix not in ("rdf", "rdfs", "owl", "xsd"):
                return f"{prefix}:{s[len(str(ns)):]}"
        return s
    return str(v)


def rows(result):
    names = [str(v) for v in result.vars]
    return names, [[_cell(r[i]) for i in range(len(names))] for r in result]


def format_result(result, fmt):
    if result.type in ("CONSTRUCT", "DESCRIBE"):
        return result.graph.serialize(format="turtle")
    if result.type == "ASK":
        return ("true" if result.askAnswer else "false") + "\n"
    names, data = rows(result)
    if fmt == "json":
        return result.serialize(format="json").decode("utf-8") + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        w.writerows(data)
        return buf.getvalue()
    widths = [max([len(n)] + [len(r[i]) for r in data]) for i, n in enumerate(names)]
    widths = [min(w, 80) for w in widths]
    line = "  ".join(n.ljust(widths[i]) for i, n in enumerate(names))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in data:
        out.append("  ".join(c[:80].ljust(widths[i]) for i, c in enumerate(r)))
    out.append(f"({len(data)} rows)")
    return "\n".join(out) + "\n"


def list_reports(content):
    out = []
    for q in content.reports:
        params = ", ".join(
            f"{p['name']}" + (f"={p['default']}" if p["default"] is not None else "") for p in q.params)
        out.append(f"{q.id}: {q.title}" + (f"  [params: {params}]" if params else ""))
    return "\n".join(out) + "\n"
