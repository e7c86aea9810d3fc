"""Shared machinery for the data-driven tests: one case is one file under tests/cases/<area>/.

A derive case holds an encounter and its expectations; a validate case holds claims and the
findings expected. Expectations are partial by default (must / must not appear) and exact on
request. A case may be a known failure: "xfail": "<reason with a source>", run strictly.
"""
from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

from reasoner.content import discover
from reasoner.inputs import record_from_object
from reasoner.kb import load
from reasoner.render import summarize_encounter
from reasoner.rules import Deriver
from reasoner.validate import ClaimValidator, EncounterChecker

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


def content_copy(target):
    """A copy of the content (ontology, queries, shapes; no generated modules) to change in a test."""
    target = Path(target)
    for name in ("ontology", "queries", "shapes"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("generated"))
    return target


def case_files(area):
    return sorted((CASES / area).glob("*.json"))


@lru_cache(maxsize=None)
def engine(overlays=()):
    content = discover(ROOT, overlays=overlays)
    kb = load(content, overlays)
    return kb, Deriver(kb), ClaimValidator(kb), EncounterChecker(kb)


def load_case(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def derive_case(path):
    case = load_case(path)
    kb, deriver, _, checker = engine(tuple(case.get("overlays", ())))
    rec = record_from_object(case["encounter"], "encounter", kb.content.context, file=path)
    assert rec.error is None, f"{path}: encounter does not load: {rec.error}"
    problems = checker.check([rec])
    bad = [p for p in problems.get(rec.id, []) if p["severity"] == "violation"]
    assert not bad, f"{path}: encounter fails the input shapes: {[p['message'] for p in bad]}"
    derived = deriver.derive(rec.graph)
    return case, summarize_encounter(kb, rec, derived), derived


def code_matches(expected, entry):
    code, *mods = expected.split("-")
    return entry["code"] == code and all(m in entry["modifiers"] for m in mods)


def check_derive(case, summary):
    exp = case["expect"]
    reported = summary["codes"]
    shown = ", ".join(f"{c['code']}{''.join('-' + m for m in c['modifiers'])} x{c['units']}" for c in reported)
    for want in exp.get("codes", []):
        assert any(code_matches(want, c) for c in reported), f"expected {want}; reported: {shown}"
    for code in exp.get("absent", []):
        assert not any(c["code"] == code for c in reported), f"{code} must not be reported; reported: {shown}"
    if exp.get("exact"):
        wanted = {w.split("-")[0] for w in exp.get("codes", [])}
        extra = [c["code"] for c in reported if c["code"] not in wanted]
        assert not extra, f"unexpected codes {extra}; reported: {shown}"
        for want in exp.get("codes", []):
            code, *mods = want.split("-")
            entry = next(c for c in reported if c["code"] == code)
            assert sorted(entry["modifiers"]) == sorted(mods), f"{code}: modifiers {entry['modifiers']}, expected {mods}"
    for code, units in exp.get("units", {}).items():
        entry = next((c for c in reported if c["code"] == code), None)
        assert entry is not None and entry["units"] == units, f"{code}: expected {units} units; reported: {shown}"
    for code, text in exp.get("notReported", {}).items():
        entry = next((c for c in summary["notReported"] if c["code"] == code), None)
        assert entry is not None, f"{code} should be listed as considered and not reported"
        reasons = " | ".join(r["reason"] for r in entry["reasons"])
        assert text.lower() in reasons.lower(), f"{code}: reason should mention '{text}': {reasons}"


@lru_cache(maxsize=None)
def validate_case(path):
    case = load_case(path)
    kb, _, validator, _ = engine(tuple(case.get("overlays", ())))
    claims = case["claims"] if "claims" in case else [case["claim"]]
    records = []
    for i, claim in enumerate(claims):
        rec = record_from_object(claim, "claim", kb.content.context, file=path, index=i)
        assert rec.error is None, f"{path}: claim does not load: {rec.error}"
        records.append(rec)
    findings, _ = validator.validate(records)
    return case, findings


def encounter_case(path):
    """An encounter-input case: the file must be rejected with the named shape and field."""
    from reasoner.inputs import read_records

    case = load_case(path)
    kb, _, _, checker = engine()
    records = list(read_records(path, "encounter", kb.content.context))
    good = [r for r in records if r.error is None]
    problems = checker.check(good)
    return case, records, problems


def check_validate(case, findings):
    exp = case["expect"]
    shown = "\n  ".join(f"{f['severity']} {f['claim']} line {f['line']} {f['code']} [{f['shape']}] {f['message']}" for f in findings)
    matched = set()
    for want in exp.get("findings", []):
        hits = [i for i, f in enumerate(findings)
                if f["shape"] == want["shape"]
                and (want.get("line") is None or f["line"] == want["line"])
                and (want.get("claim") is None or f["claim"] == want["claim"])
                and (want.get("severity") is None or f["severity"] == want["severity"])
                and want.get("message", "").lower() in f["message"].lower()]
        assert hits, f"expected finding {want}; got:\n  {shown}"
        matched.update(hits)
    for shape in exp.get("absentShapes", []):
        assert not any(f["shape"] == shape for f in findings), f"shape {shape} must not fire; got:\n  {shown}"
    if exp.get("exact") or exp.get("conforms"):
        extra = [findings[i] for i in range(len(findings)) if i not in matched and findings[i]["severity"] != "info"]
        assert not extra, f"unexpected findings:\n  " + "\n  ".join(f"{f['shape']}: {f['message']}" for f in extra)
