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
from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_VIOLATIONS, CptkgError


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
    if getattr(args, "out", None):
        return _derive_batch(args)
    if len(args.files) == 1 and args.files[0].endswith(".jsonl") and _is_derive_results(args.files[0]):
        return _explain_from_results(args)
    from rdflib import Graph

    from .render import encounter_text, to_json
    from .vocab import bind_all
    from .batch import derive_records, make_checker, make_deriver

    kb = _kb(args)
    deriver = make_deriver(kb, getattr(args, "engine", "reference"))
    checker = make_checker(kb, getattr(args, "engine", "reference"))
    records = list(_records(args.files, "encounter", kb.content))
    if args.encounter:
        records = [r for r in records if r.id in set(args.encounter)]
        if not records:
            raise CptkgError(f"no encounter with id {', '.join(args.encounter)} in {', '.join(args.files)}")
    results, errors = [], []
    ttl = bind_all(Graph())
    for rec, summary, derived in derive_records(kb, checker, deriver, records):
        if summary is None:
            errors.append(rec)
            results.append({"id": rec.id, "file": str(rec.file), "error": rec.error.as_record()})
            continue
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


def _is_derive_results(path):
    """A JSONL file written by `derive --out` (records with codes and notReported)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "{}")
    except (OSError, ValueError):
        return False
    return "notReported" in first or ("error" in first and "id" in first and "claim" not in first)


def _explain_from_results(args):
    """Explain encounters from a stored derivation (no re-derivation, one record in memory at a time)."""
    import json

    from .render import encounter_text

    wanted = set(args.encounter or ())
    out, found = _out(args), 0
    with open(args.files[0], encoding="utf-8") as fh:
        for text in fh:
            r = json.loads(text)
            if wanted and r.get("id") not in wanted:
                continue
            found += 1
            if "error" in r:
                out.write(f"Encounter {r['id']}: ERROR {_error_line(r['error'])}\n\n")
            else:
                out.write(encounter_text(r, explain=args.explain) + "\n\n")
    if wanted and not found:
        raise CptkgError(f"no encounter with id {', '.join(sorted(wanted))} in {args.files[0]}")
    return EXIT_OK


def _derive_batch(args):
    from . import batch

    content = _content(args)
    overlays = tuple(args.overlay or ())
    out = Path(args.out)
    sig = batch.signature("encounter", args.files, overlays, args.engine, args.chunk)
    checkpoint = batch.Checkpoint(out, args.resume, sig)
    sink = batch.JsonlSink(out, checkpoint.offset)
    try:
        counts = batch.run("encounter", args.files, root=content.root, overlays=overlays, jobs=args.jobs, engine=args.engine,
                           chunk=args.chunk, sink=sink, checkpoint=checkpoint, progress=sys.stderr.isatty())
    finally:
        sink.close()
    errors = counts["errors"]
    print(f"{counts['records']} encounters, {errors} input errors -> {out} "
          f"(explain one with: cptkg explain {out} --encounter ID)", file=sys.stderr)
    return _failed_exit(counts["failed"]) or (EXIT_BAD_INPUT if errors else EXIT_OK)


def _failed_exit(failed):
    """Exit 3 when the engine failed on some records (their error records say so)."""
    if not failed:
        return None
    print(f"cptkg: internal error on {failed} record(s) (exit 3): their error records begin "
          f"'internal error on this record'; please report them", file=sys.stderr)
    return EXIT_INTERNAL


DEFAULT_VALIDATE_CHUNK = 2000


def _error_line(e):
    where = ", ".join(x for x in (
        f"{e['file']}" + (f":{e['line']}" if e.get("line") else "") if e.get("file") else None,
        f"field '{e['field']}'" if e.get("field") else None) if x)
    return f"{e['error']} ({where})" if where else e["error"]


def cmd_validate(args):
    from . import batch
    from .render import finding_text, findings_csv, to_json

    if args.format == "ttl":
        return _validate_report_ttl(args)
    content = _content(args)
    overlays = tuple(args.overlay or ())
    jobs = args.jobs or (1 if not args.out else None)
    if args.out:
        out = Path(args.out)
        sig = batch.signature("claim", args.files, overlays, args.engine, args.chunk)
        checkpoint = batch.Checkpoint(out, args.resume, sig)
        sink_cls = batch.CsvFindingsSink if out.suffix == ".csv" else batch.JsonlSink
        sink = sink_cls(out, checkpoint.offset)
        try:
            counts = batch.run("claim", args.files, root=content.root, overlays=overlays, engine=args.engine,
                               jobs=jobs, chunk=args.chunk, sink=sink, checkpoint=checkpoint,
                               progress=sys.stderr.isatty())
        finally:
            sink.close()
        summary = counts["summary"] or batch.summarize([])
        summary_path = Path(args.summary) if args.summary else out.with_name(out.stem + ".summary.json")
        summary_path.write_text(to_json(summary) + "\n")
        print(f"{summary['claims']} claims, {summary['findings']} findings "
              f"({', '.join(f'{v} {k}' for k, v in summary['bySeverity'].items()) or 'none'}), "
              f"{summary['errors']} input errors -> {out}, {summary_path}", file=sys.stderr)
        return _failed_exit(counts["failed"]) or _validate_exit(summary, args)
    sink = batch.ListSink()
    batch.run("claim", args.files, root=content.root, overlays=overlays, engine=args.engine, jobs=jobs,
              chunk=args.chunk, sink=sink, progress=False)
    results = sink.results
    summary = batch.summarize(results)
    findings = [f for r in results for f in r["findings"]]
    errors = [{"claim": r["claim"], **r["error"]} for r in results if r["status"] == "error"]
    out = _out(args)
    if args.format == "json":
        out.write(to_json({"schemaVersion": "1", "summary": summary, "findings": findings, "errors": errors}) + "\n")
    elif args.format == "csv":
        out.write(findings_csv(findings))
    else:
        for f in findings:
            out.write(finding_text(f) + "\n")
        for e in errors:
            out.write(f"ERROR     claim {e['claim']}: {_error_line(e)}\n")
        sev = summary["bySeverity"]
        out.write(f"{summary['claims']} claims, {summary['findings']} findings "
                  f"({sev.get('violation', 0)} violations, {sev.get('warning', 0)} warnings, "
                  f"{sev.get('info', 0)} info), {summary['errors']} input errors\n")
    for e in errors:
        print(f"cptkg: {_error_line(e)} [claim {e['claim']}]", file=sys.stderr)
    return _failed_exit(batch.failed_records(results)) or _validate_exit(summary, args)


def _validate_exit(summary, args):
    if summary["errors"]:
        return EXIT_BAD_INPUT
    failing = {"violation": ("violation",), "warning": ("violation", "warning"), "none": ()}[args.fail_on]
    return EXIT_VIOLATIONS if any(summary["bySeverity"].get(s) for s in failing) else EXIT_OK


def _validate_report_ttl(args):
    """The standard sh:ValidationReport (of either engine), for small inputs."""
    from .batch import make_validator

    kb = _kb(args)
    records = list(_records(args.files, "claim", kb.content))
    good = [r for r in records if r.error is None]
    findings, report = make_validator(kb, args.engine).validate(good) if good else ([], None)
    _out(args).write(report.serialize(format="turtle") if report is not None else "")
    for r in records:
        if r.error is not None:
            print(f"cptkg: {r.error}", file=sys.stderr)
    if any(r.error is not None for r in records):
        return EXIT_BAD_INPUT
    return EXIT_VIOLATIONS if any(f["severity"] == "violation" for f in findings) else EXIT_OK


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
    params = {}
    for p in args.param or []:
        if "=" not in p:
            raise CptkgError(f"--param takes NAME=VALUE, not '{p}'")
        k, v = p.split("=", 1)
        params[k] = v
    if getattr(args, "endpoint", None):
        from .query import bind_params, resolve
        from .serve import remote_query

        if args.data:
            raise CptkgError("--data loads files beside the local graph; with --endpoint the data must be on the "
                             "endpoint (`cptkg export --data FILE` writes N-Quads to load there)")
        result = remote_query(args.endpoint, bind_params(resolve(content, args.query), params))
        _out(args).write(format_result(result, args.format))
        return EXIT_OK
    kb = _kb(args)
    result = run_query(kb, args.query, data=args.data or [], params=params)
    _out(args).write(format_result(result, args.format))
    return EXIT_OK


def cmd_serve(args):
    from .serve import run_server

    if args.port < 0 or args.port > 65535:
        raise CptkgError(f"--port must be 0-65535, not {args.port}")
    return run_server(_kb(args), args)


def cmd_export(args):
    from .serve import write_nquads

    kb = _kb(args)
    if args.output and args.output != "-":
        try:
            out = open(args.output, "wb")
        except OSError as exc:
            raise CptkgError(f"cannot write: {exc.strerror}", file=args.output) from None
        with out:
            quads, graphs = write_nquads(kb, args.data or [], out)
        print(f"cptkg: wrote {quads} quads in {graphs} named graphs to {args.output}", file=sys.stderr)
    else:
        write_nquads(kb, args.data or [], sys.stdout.buffer)
        sys.stdout.flush()
    return EXIT_OK


def cmd_check(args):
    from .check import run_check

    content = _content(args)
    ok, lines = run_check(content, owl=not args.no_owl)
    for line in lines:
        print(line)
    return EXIT_OK if ok else EXIT_BAD_INPUT


def cmd_import_ncci(args):
    from .importers.ncci import run_import

    content = _content(args)
    print(f"importing {len(args.paths)} file(s) for {args.quarter}, scope {args.scope}")
    result = run_import(content, args.paths, args.quarter, scope=args.scope, setting=args.setting, log=print)
    for w in result.modules:
        rows = sum(s.written for s in w.files)
        print(f"wrote {w.path.relative_to(content.root)}: {rows} edits from {len(w.files)} file(s)")
        for warning in w.warnings:
            print(f"  warning: {warning}")
    for note in result.notes:
        print(f"note: {note}")
    if result.codes_module is not None:
        print(f"wrote {result.codes_module.relative_to(content.root)}: {result.code_stanzas} code stanzas "
              f"for codes the hand-written graph does not describe")
    if result.modules:
        print("registered in ontology/cptkg.ttl and ontology/catalog-v001.xml; run `cptkg check`")
    peak = _peak_mb()
    print(f"done in {result.seconds:.1f} s" + (f", peak memory {peak:.0f} MB" if peak else ""))
    for err in result.errors:
        print(f"cptkg: {err}", file=sys.stderr)
    shown = sum(1 for e in result.errors if e.line)
    if result.malformed > shown:
        print(f"cptkg: {result.malformed - shown} more malformed rows not shown (counted in the module comment)",
              file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def _peak_mb():
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / (1024 * 1024)


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


def _common_options_everywhere(subparsers):
    """--overlay and --content are accepted after any subcommand too (`cptkg derive F --overlay X`)."""
    import argparse

    for sp in subparsers.choices.values():
        sp.add_argument("--content", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--overlay", action="append", metavar="NAME", default=argparse.SUPPRESS,
                        help="load the payer/policy overlay ontology/overlays/NAME (repeatable)")
        for action in sp._actions:
            if isinstance(action, argparse._SubParsersAction):
                _common_options_everywhere(action)


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
    d.add_argument("--out", help="stream one JSON record per encounter to this .jsonl file (any size, every core)")
    d.add_argument("--jobs", "-j", type=int, help="with --out: worker processes (default: every core)")
    d.add_argument("--chunk", type=int, default=1000,
                   help="with --out: encounters per work unit (default 1000; the fast engine's time per encounter "
                        "is about flat from 500 to 5,000 and pays a planning cost per batch)")
    d.add_argument("--resume", action="store_true", help="with --out: skip the chunks an interrupted run finished")
    d.add_argument("--engine", choices=("reference", "fast"), default="fast",
                   help="fast: the rules on pyoxigraph, batched (default); reference: rdflib, one encounter at a time")
    d.set_defaults(func=cmd_derive)

    e = sub.add_parser("explain", help="derive with the full chain of rules and sources (or read a `derive --out` file)")
    e.add_argument("files", nargs="+")
    e.add_argument("--encounter", action="append")
    e.add_argument("--output", "-o")
    e.add_argument("--engine", choices=("reference", "fast"), default="fast")
    e.set_defaults(func=cmd_derive, format="text", explain=True)

    v = sub.add_parser("validate", help="coded claims -> every rule they break")
    v.add_argument("files", nargs="+")
    v.add_argument("--format", choices=("text", "json", "csv", "ttl"), default="text")
    v.add_argument("--fail-on", choices=("violation", "warning", "none"), default="violation",
                   help="which findings make the exit code 1 (default: violation)")
    v.add_argument("--engine", choices=("reference", "fast"), default="fast",
                   help="fast: the shapes compiled to SPARQL over pyoxigraph (default); reference: pySHACL over rdflib")
    v.add_argument("--out", help="stream results to this .jsonl (one record per claim) or .csv (a row per finding) file")
    v.add_argument("--summary", help="with --out: where to write the summary JSON (default: <out>.summary.json)")
    v.add_argument("--jobs", "-j", type=int, help="worker processes (default: every core with --out, else 1)")
    v.add_argument("--chunk", type=int, default=DEFAULT_VALIDATE_CHUNK,
                   help=f"claims per work unit (default {DEFAULT_VALIDATE_CHUNK}; the fast engine does best on large batches)")
    v.add_argument("--resume", action="store_true", help="with --out: skip the chunks an interrupted run finished")
    v.add_argument("--output", "-o")
    v.set_defaults(func=cmd_validate)

    q = sub.add_parser("query", help="run SPARQL (a file or a shipped report) over the graph plus data files")
    q.add_argument("query", nargs="?", help="a .rq file or the name of a query in queries/reports")
    q.add_argument("--data", action="append", help="encounter or claim file to load beside the knowledge graph")
    q.add_argument("--param", action="append", help="NAME=VALUE for a report parameter")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--list", action="store_true", help="list the shipped report queries")
    q.add_argument("--endpoint", metavar="URL",
                   help="run the query, unchanged, on this SPARQL 1.1 endpoint instead of the local graph "
                        "(a bearer token may be given in $CPTKG_TOKEN)")
    q.add_argument("--output", "-o")
    q.set_defaults(func=cmd_query)

    sv = sub.add_parser("serve", help="a read-only SPARQL 1.1 endpoint, the named queries and a web page",
                        description="Serve the knowledge graph (a named graph per module) plus the claim and "
                                    "encounter files given (a named graph each) on Oxigraph's server, behind a "
                                    "front that refuses updates and SERVICE, caps results, limits query time, "
                                    "and serves /queries, /code/NNNNN, POST /derive and a web page at /.")
    sv.add_argument("files", nargs="*", help="claim or encounter files to load, each in its own named graph")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    sv.add_argument("--timeout", type=float, default=10.0, help="per-query time limit in seconds (default 10)")
    sv.add_argument("--max-results", type=int, default=10000,
                    help="result cap: rows of a SELECT, triples of a CONSTRUCT (default 10000; 0: none)")
    sv.add_argument("--token", help="require `Authorization: Bearer TOKEN` (or $CPTKG_TOKEN)")
    sv.add_argument("--max-concurrent", type=int, default=8, help="queries run at once (default 8)")
    sv.add_argument("--memory-limit", type=int, default=4096, metavar="MB",
                    help="restart the SPARQL engine when its resident memory passes this (default 4096; 0: never)")
    sv.add_argument("--cors-origin", default="*", help="Access-Control-Allow-Origin (default *)")
    sv.add_argument("--store", help="build the Oxigraph store in this new folder and keep it (default: a temp folder)")
    sv.add_argument("--quiet", action="store_true", help="no access log")
    sv.add_argument("--engine", choices=("reference", "fast"), default="fast",
                    help="the engine behind POST /derive, as for `cptkg derive` (default fast)")
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser("export", help="the knowledge graph and data files as N-Quads, for any SPARQL store")
    ex.add_argument("--data", action="append", help="claim or encounter file to add, in its own named graph")
    ex.add_argument("--output", "-o", help="file to write (default: standard output)")
    ex.set_defaults(func=cmd_export)

    c = sub.add_parser("check", help="parse all content, run the knowledge-base shapes, and an OWL consistency check")
    c.add_argument("--no-owl", action="store_true", help="skip the HermiT consistency check")
    c.set_defaults(func=cmd_check)

    im = sub.add_parser("import", help="load external edit files into generated knowledge modules")
    isub = im.add_subparsers(dest="source", required=True)
    n = isub.add_parser("ncci", help="CMS NCCI PTP, MUE and AOC files (TXT, CSV, xlsx, or the CMS zips)",
                        description="Write ontology/edits/generated/<family>-<setting>-<quarter>.ttl from CMS NCCI "
                                    "files and register it in ontology/cptkg.ttl; re-running replaces the module.")
    n.add_argument("paths", nargs="+", metavar="PATH")
    n.add_argument("--quarter", required=True, help="the quarter the files are for, e.g. 2026Q4")
    n.add_argument("--scope", choices=("kb", "all"), default="kb",
                   help="kb (default): only rows naming a code the graph describes; all: every row (large)")
    n.add_argument("--setting", choices=("practitioner", "facility"),
                   help="the table's setting when neither its name nor its header tells")
    n.set_defaults(func=cmd_import_ncci)

    ls = sub.add_parser("list", help="list the content the engine discovers")
    ls.set_defaults(func=cmd_list)
    _common_options_everywhere(sub)
    return p


def main(argv=None):
    import logging

    # rdflib logs a traceback for an ill-typed literal (a date like 2024-13-01); the input shapes
    # report it to the user with the record and field instead.
    logging.getLogger("rdflib.term").setLevel(logging.CRITICAL)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CptkgError as err:
        print(f"cptkg: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except OSError as err:
        if err.filename is None:  # not a file of the user's: internal
            traceback.print_exc()
            print("cptkg: internal error (exit 3); please report it with the input that caused it", file=sys.stderr)
            return EXIT_INTERNAL
        print(f"cptkg: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cptkg: interrupted (exit 130); with --out, the chunks written so far are kept: "
              "run again with --resume to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # an internal error: say so, with the trace, and exit 3
        traceback.print_exc()
        print("cptkg: internal error (exit 3); please report it with the input that caused it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
