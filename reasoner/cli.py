"""The `cptkg` command line.

Exit codes (pySHACL's): 0 success / conforms, 1 violations found, 2 bad input or content (the
message names file, record and field, or the rule), 3 internal error.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_VIOLATIONS, CptkgError


def _content(args):
    from .content import discover

    return discover(args.content, overlays=tuple(args.overlay or ()))


def _kb(args):
    from .kb import load

    content = _content(args)
    return load(content, tuple(args.overlay or ()))


def _out(args):
    if getattr(args, "output", None):
        return open(args.output, "w", encoding="utf-8")
    return sys.stdout


def _records(paths, kind, content):
    from .inputs import read_records

    for p in paths:
        yield from read_records(p, kind, content.context)


def cmd_derive(args):
    from rdflib import Graph

    from .render import encounter_text, summarize_encounter, to_json
    from .rules import Deriver
    from .validate import EncounterChecker
    from .vocab import bind_all

    kb = _kb(args)
    deriver = Deriver(kb)
    checker = EncounterChecker(kb)
    records = list(_records(args.files, "encounter", kb.content))
    if args.encounter:
        records = [r for r in records if r.id in set(args.encounter)]
        if not records:
            raise CptkgError(f"no encounter with id {', '.join(args.encounter)} in {', '.join(args.files)}")
    problems = checker.check([r for r in records if r.error is None])
    results, errors = [], []
    ttl = bind_all(Graph())
    for rec in records:
        if rec.error is None and rec.id in problems:
            bad = [p for p in problems[rec.id] if p["severity"] == "violation"]
            if bad:
                from .errors import InputError

                p = bad[0]
                field = str(p["path"]).rsplit("#", 1)[-1] if p["path"] is not None else None
                focus = str(p["focus"]).rsplit("/", 1)[-1]
                more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
                rec.error = InputError(f"{p['message']} [{p['shape']}, on {focus}]{more}",
                                       file=rec.file, record=rec.id, field=field, line=rec.line)
                rec.all_problems = bad
        if rec.error is not None:
            errors.append(rec)
            results.append({"id": rec.id, "file": str(rec.file), "error": rec.error.as_record()})
            continue
        derived = deriver.derive(rec.graph)
        summary = summarize_encounter(kb, rec, derived)
        results.append(summary)
        if args.format == "ttl":
            ttl += rec.graph
            ttl += derived
    out = _out(args)
    if args.format == "json":
        out.write(to_json({"schemaVersion": "1", "encounters": results}) + "\n")
    elif args.format == "ttl":
        out.write(ttl.serialize(format="turtle"))
    else:
        blocks = []
        for r in results:
            if "error" in r:
                blocks.append(f"Encounter {r['id']}: ERROR {_error_line(r['error'])}")
            else:
                blocks.append(encounter_text(r, explain=args.explain))
        out.write("\n\n".join(blocks) + "\n")
    for rec in errors:
        print(f"cptkg: {rec.error}", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else EXIT_OK


def _error_line(e):
    where = ", ".join(x for x in (
        f"{e['file']}" + (f":{e['line']}" if e.get("line") else "") if e.get("file") else None,
        f"field '{e['field']}'" if e.get("field") else None) if x)
    return f"{e['error']} ({where})" if where else e["error"]


def cmd_validate(args):
    from .render import finding_text, findings_csv, to_json
    from .validate import ClaimValidator

    kb = _kb(args)
    validator = ClaimValidator(kb)
    records = list(_records(args.files, "claim", kb.content))
    good = [r for r in records if r.error is None]
    bad = [r for r in records if r.error is not None]
    findings, report = validator.validate(good) if good else ([], None)
    out = _out(args)
    errors = [{"claim": r.id, "file": str(r.file), **r.error.as_record()} for r in bad]
    summary = {
        "claims": len(records), "validated": len(good), "errors": len(errors),
        "findings": len(findings),
        "bySeverity": {s: sum(1 for f in findings if f["severity"] == s) for s in ("violation", "warning", "info")},
        "byShape": _count(findings, "shape"), "byCode": _count(findings, "code"),
    }
    if args.format == "json":
        out.write(to_json({"schemaVersion": "1", "summary": summary, "findings": findings, "errors": errors}) + "\n")
    elif args.format == "csv":
        out.write(findings_csv(findings))
    elif args.format == "ttl":
        out.write(report.serialize(format="turtle") if report is not None else "")
    else:
        for f in findings:
            out.write(finding_text(f) + "\n")
        for e in errors:
            out.write(f"ERROR     claim {e['claim']}: {_error_line(e)}\n")
        out.write(f"{summary['claims']} claims, {summary['findings']} findings "
                  f"({summary['bySeverity']['violation']} violations, {summary['bySeverity']['warning']} warnings, "
                  f"{summary['bySeverity']['info']} info), {summary['errors']} input errors\n")
    for e in errors:
        print(f"cptkg: {_error_line(e)} [claim {e['claim']}]", file=sys.stderr)
    if errors:
        return EXIT_BAD_INPUT
    failing = {"violation": ("violation",), "warning": ("violation", "warning"), "none": ()}[args.fail_on]
    return EXIT_VIOLATIONS if any(summary["bySeverity"][s] for s in failing) else EXIT_OK


def _count(findings, key):
    out = {}
    for f in findings:
        k = f.get(key) or ""
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def cmd_query(args):
    from .query import format_result, list_reports, run_query

    content = _content(args)
    if args.list or not args.query:
        sys.stdout.write(list_reports(content))
        return EXIT_OK
    kb = _kb(args)
    params = {}
    for p in args.param or []:
        if "=" not in p:
            raise CptkgError(f"--param takes NAME=VALUE, not '{p}'")
        k, v = p.split("=", 1)
        params[k] = v
    result = run_query(kb, args.query, data=args.data or [], params=params)
    _out(args).write(format_result(result, args.format))
    return EXIT_OK


def cmd_check(args):
    from .check import run_check

    content = _content(args)
    ok, lines = run_check(content, owl=not args.no_owl)
    for line in lines:
        print(line)
    return EXIT_OK if ok else EXIT_BAD_INPUT


def cmd_list(args):
    content = _content(args)
    print(f"content root: {content.root}")
    print(f"modules ({len(content.modules)}):")
    for m in content.modules:
        print(f"  {m.id}")
    for name, mods in sorted(content.overlays.items()):
        print(f"overlay {name}: {', '.join(m.id for m in mods)}")
    print(f"rules ({len(content.rules)}):")
    for q in sorted(content.rules, key=lambda q: (q.stage, q.id)):
        print(f"  [{q.role}/{q.stage}] {q.id}: {q.title}" + ("" if q.active else " (inactive)"))
    print(f"reports ({len(content.reports)}):")
    for q in content.reports:
        print(f"  {q.id}: {q.title}")
    for group, paths in content.shapes.items():
        print(f"shapes/{group} ({len(paths)}): {', '.join(p.stem for p in paths)}")
    return EXIT_OK


def build_parser():
    p = argparse.ArgumentParser(prog="cptkg", description="Knowledge-graph coding reasoner for imaging-guided CPT codes.")
    p.add_argument("--version", action="version", version=f"cptkg {__version__}")
    p.add_argument("--content", help="content root (default: $CPTKG_HOME or this checkout)")
    p.add_argument("--overlay", action="append", metavar="NAME", help="load the payer/policy overlay ontology/overlays/NAME")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("derive", help="described encounters -> codes, with the rule behind each")
    d.add_argument("files", nargs="+")
    d.add_argument("--format", choices=("text", "json", "ttl"), default="text")
    d.add_argument("--explain", action="store_true", help="show rule sources and code facts in the text")
    d.add_argument("--encounter", action="append", help="only this encounter id (repeatable)")
    d.add_argument("--output", "-o")
    d.set_defaults(func=cmd_derive)

    e = sub.add_parser("explain", help="derive with the full chain of rules and sources")
    e.add_argument("files", nargs="+")
    e.add_argument("--encounter", action="append")
    e.add_argument("--output", "-o")
    e.set_defaults(func=cmd_derive, format="text", explain=True)

    v = sub.add_parser("validate", help="coded claims -> every rule they break")
    v.add_argument("files", nargs="+")
    v.add_argument("--format", choices=("text", "json", "csv", "ttl"), default="text")
    v.add_argument("--fail-on", choices=("violation", "warning", "none"), default="violation",
                   help="which findings make the exit code 1 (default: violation)")
    v.add_argument("--output", "-o")
    v.set_defaults(func=cmd_validate)

    q = sub.add_parser("query", help="run SPARQL (a file or a shipped report) over the graph plus data files")
    q.add_argument("query", nargs="?", help="a .rq file or the name of a query in queries/reports")
    q.add_argument("--data", action="append", help="encounter or claim file to load beside the knowledge graph")
    q.add_argument("--param", action="append", help="NAME=VALUE for a report parameter")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--list", action="store_true", help="list the shipped report queries")
    q.add_argument("--output", "-o")
    q.set_defaults(func=cmd_query)

    c = sub.add_parser("check", help="parse all content, run the knowledge-base shapes, and an OWL consistency check")
    c.add_argument("--no-owl", action="store_true", help="skip the HermiT consistency check")
    c.set_defaults(func=cmd_check)

    ls = sub.add_parser("list", help="list the content the engine discovers")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CptkgError as err:
        print(f"cptkg: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except Exception:  # an internal error: say so, with the trace, and exit 3
        traceback.print_exc()
        print("cptkg: internal error (exit 3); please report it with the input that caused it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
