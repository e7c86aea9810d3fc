"""Turning derivation graphs and validation reports into records, text, JSON, CSV and Turtle.

Nothing here decides a code: it reads what the rules and shapes produced.
"""
from __future__ import annotations

import csv
import io
import json

from rdflib import URIRef
from rdflib.namespace import DCTERMS, RDF, RDFS, SKOS

from .vocab import CPTKG

JSON_SCHEMA_VERSION = "1"
DATE_RULE = "screen-date-of-service"


def _local(iri):
    s = str(iri)
    return s.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


_MISSING = object()
_LABELLERS = {}


class Labeller:
    """Looks up notations, labels, rule titles and sources in the knowledge graph."""

    def __init__(self, kb_graph):
        self.g = kb_graph
        self._cache = {}

    @classmethod
    def of(cls, kb_graph):
        """One labeller per knowledge graph, so its caches serve every encounter of a run."""
        hit = _LABELLERS.get(id(kb_graph))
        if hit is None or hit.g is not kb_graph:
            if len(_LABELLERS) > 8:
                _LABELLERS.clear()
            hit = _LABELLERS[id(kb_graph)] = cls(kb_graph)
        return hit

    def _cached(self, kind, node, compute):
        key = (kind, node)
        hit = self._cache.get(key, _MISSING)
        if hit is _MISSING:
            hit = self._cache[key] = compute(node)
        return hit

    def notation(self, node):
        return self._cached("notation", node, self._notation)

    def _notation(self, node):
        v = self.g.value(node, SKOS.notation)
        return str(v) if v is not None else _local(node)

    def label(self, node):
        return self._cached("label", node, self._label)

    def _label(self, node):
        v = self.g.value(node, SKOS.prefLabel) or self.g.value(node, RDFS.label)
        return str(v) if v is not None else None

    def replaced_by(self, code):
        """The notations of the codes that replace a code, sorted and joined, or None."""
        return self._cached("replacedBy", code, lambda c: ", ".join(
            sorted(self.notation(r) for r in self.g.objects(c, CPTKG.replacedBy))) or None)

    def is_addon(self, code):
        return self._cached("addon", code, lambda c: (c, RDF.type, CPTKG.AddOnCode) in self.g)

    def sources(self, node):
        return [dict(s) for s in self._cached("sources", node, self._sources)]

    def _sources(self, node):
        out = []
        for s in sorted(self.g.objects(node, DCTERMS.source)):
            title = self.g.value(s, DCTERMS.title)
            url = self.g.value(s, CPTKG.url)
            conf = self.g.value(s, CPTKG.confidence)
            out.append({"id": _local(s), "title": str(title) if title else None,
                        "url": str(url) if url else None,
                        "confidence": _local(conf) if conf else None})
        return out

    def rule(self, rule_iri):
        key = ("rule", rule_iri)
        if key not in self._cache:
            self._cache[key] = {
                "id": _local(rule_iri),
                "title": str(self.g.value(rule_iri, RDFS.label) or _local(rule_iri)),
                "sources": self.sources(rule_iri),
            }
        return self._cache[key]


def summarize_encounter(kb, record, derived):
    """The derivation of one encounter as a plain record (the stable JSON schema)."""
    lab = Labeller.of(kb.graph)
    enc = record.node
    g = derived
    if record.source is not None and "dateOfService" in record.source:
        dos = record.source["dateOfService"]  # what the record was read from, as written
    else:
        dos = record.graph.value(enc, CPTKG.serviceDate)
    lines = sorted(set(g.subjects(CPTKG.encounter, enc)))
    reported, not_reported = [], []
    for line in lines:
        code = g.value(line, CPTKG.code)
        notation = lab.notation(code)
        rules = [lab.rule(r) for r in sorted(g.objects(line, CPTKG.derivedBy))]
        acts = sorted(_local(a) for a in g.objects(line, CPTKG.act))
        sups = sorted(g.subjects(CPTKG.suppresses, line))
        entry = {
            "code": notation,
            "label": lab.label(code),
            "acts": acts,
            "rules": rules,
            "codeSources": lab.sources(code),
        }
        if sups:
            repl = lab.replaced_by(code)
            if repl:
                entry["replacedBy"] = repl
            entry["reasons"] = []
            for s in sups:
                entry["reasons"].append({
                    "reason": str(g.value(s, CPTKG.reason)),
                    "rules": [lab.rule(r) for r in sorted(g.objects(s, CPTKG.derivedBy))],
                })
            entry["reasons"].sort(key=lambda r: r["reason"])
            not_reported.append(entry)
            continue
        units = g.value(line, CPTKG.units)
        entry["units"] = int(units) if units is not None else 1
        mods = []
        for ma in sorted(g.subjects(CPTKG.assignsTo, line)):
            for m in g.objects(ma, CPTKG.modifier):
                mods.append({"modifier": lab.notation(m), "reason": str(g.value(ma, CPTKG.reason)),
                             "rules": [lab.rule(r) for r in sorted(g.objects(ma, CPTKG.derivedBy))]})
        mods.sort(key=lambda m: m["modifier"])
        entry["modifiers"] = [m["modifier"] for m in mods]
        entry["modifierReasons"] = mods
        entry["addOn"] = lab.is_addon(code)
        reported.append(entry)
    reported.sort(key=lambda e: (e["addOn"], e["code"]))
    not_reported.sort(key=lambda e: e["code"])
    return {
        "id": record.id,
        "file": str(record.file),
        "dateOfService": str(dos) if dos is not None else None,
        "codes": reported,
        "notReported": not_reported,
    }


def code_with_modifiers(entry):
    return entry["code"] + "".join("-" + m for m in entry["modifiers"])


def encounter_text(summary, explain=False):
    out = [f"Encounter {summary['id']} ({summary['dateOfService']})"]
    if not summary["codes"]:
        out.append("  Report: no code")
    for c in summary["codes"]:
        units = f" x{c['units']}" if c["units"] != 1 else ""
        out.append(f"  Report {code_with_modifiers(c)}{units}  {c['label'] or ''}")
        for r in c["rules"]:
            srcs = "; ".join(s["title"] or s["id"] for s in r["sources"])
            out.append(f"      rule {r['id']}: {r['title']}" + (f" [source: {srcs}]" if srcs and explain else ""))
        if explain:
            srcs = "; ".join(s["title"] or s["id"] for s in c["codeSources"])
            if srcs:
                out.append(f"      code facts from: {srcs}")
            if c["acts"]:
                out.append(f"      for: {', '.join(c['acts'])}")
        for m in c["modifierReasons"]:
            out.append(f"      modifier {m['reason']}")
    dated, other = [], []
    for c in summary["notReported"]:
        rules = {r["rules"][0]["id"] if r["rules"] else "?" for r in c["reasons"]}
        (dated if rules == {DATE_RULE} and not explain else other).append(c)
    if other:
        out.append("  Considered, not reported:")
        for c in other:
            reasons = "; ".join(r["reason"].split(": ", 1)[-1] if i else r["reason"] for i, r in enumerate(c["reasons"]))
            rules = ", ".join(sorted({r["rules"][0]["id"] for r in c["reasons"] if r["rules"]}))
            out.append(f"    {reasons}  (rule {rules})")
    if dated:
        out.append("  Not valid on this date: " + ", ".join(
            c["code"] + (f" (replaced by {c['replacedBy']})" if c.get("replacedBy") else "") for c in dated))
    return "\n".join(out)


def error_text(err):
    return f"ERROR {err}"


def to_json(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False)


def findings_csv(findings):
    buf = io.StringIO()
    cols = ["claim", "line", "code", "severity", "message", "shape", "sources", "focus", "file"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for f in findings:
        row = dict(f)
        row["sources"] = "; ".join(s["id"] for s in f.get("sources", []))
        w.writerow(row)
    return buf.getvalue()


def finding_text(f):
    where = f"claim {f['claim']}" + (f" line {f['line']}" if f.get("line") is not None else "")
    code = f" {f['code']}" if f.get("code") else ""
    return f"{f['severity'].upper():9} {where}{code}: {f['message']}  [{f['shape']}]"
