"""Streaming batches: claims or encounters from files of any size, validated or derived in
chunks on every core, written as they finish, resumable after an interruption.

Every input record yields exactly one output record: a result (with its findings or codes) or an
error naming the file, the line and the field. Nothing is dropped silently.

Readers stream: CSV rows are grouped by claim id (the lines of a claim must be consecutive),
JSON Lines hold one record a line, FHIR R4 Claim resources come as NDJSON, a Bundle or a single
resource. The knowledge base and the engine are built once, in the main process, and the workers
forked from it share them (where fork is not available, each worker builds its own). Workers get
raw records (plain dicts), so the JSON-LD conversion runs in parallel too.
"""
from __future__ import annotations

import csv
import gc
import io
import json
import os
import sys
import time
from pathlib import Path

from .errors import InputError

CHUNK = 250
_LINE = None  # cptkg:line, set on first use (keeps rdflib out of the readers' import path)


# ---------------------------------------------------------------------------------------------
# readers: yield (file, line, obj) or (file, line, InputError)

class RawJson(str):
    """A JSON Lines record as read: parsed in the worker, so the reading process only reads."""


def _jsonl(path):
    from .inputs import not_utf8, open_text

    with open_text(path) as fh:
        for n, text in enumerate(fh, 1):
            if not text.strip():
                continue
            bad = not_utf8(text, file=path, line=n)
            yield path, n, bad if bad is not None else RawJson(text)


def _json(path, key):
    from .inputs import _records_from_json

    for n, obj in _records_from_json(Path(path)):
        yield path, n, obj


# FHIR R4 Claim -> our claim JSON. Only what the coding rules read is mapped.
FHIR_CPT_SYSTEMS = ("http://www.ama-assn.org/go/cpt", "urn:oid:2.16.840.1.113883.6.12",
                    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "urn:oid:2.16.840.1.113883.6.285",
                    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets")
FHIR_TYPES = {"professional": "professional", "institutional": "facility"}


def fhir_claim(resource, file=None, line=None):
    """Map a FHIR R4 Claim resource to a claim dict; raise InputError naming the element."""
    rid = resource.get("id")
    if resource.get("resourceType") != "Claim":
        raise InputError(f"resourceType {resource.get('resourceType')!r} is not Claim", file=file, line=line, record=rid)
    if not rid:
        raise InputError("Claim has no id", file=file, line=line, field="Claim.id")
    claim = {"id": rid, "lines": []}
    ctype = next((c.get("code") for c in resource.get("type", {}).get("coding", []) if c.get("code")), None)
    if ctype in FHIR_TYPES:
        claim["claimType"] = FHIR_TYPES[ctype]
    period = resource.get("billablePeriod", {}).get("start")
    for i, item in enumerate(resource.get("item", [])):
        where = f"Claim.item[{i}]"
        codes = item.get("productOrService", {}).get("coding", [])
        code = next((c.get("code") for c in codes if c.get("system") in FHIR_CPT_SYSTEMS), None) or \
            next((c.get("code") for c in codes if c.get("code")), None)
        if not code:
            raise InputError("item has no productOrService code", file=file, line=line, record=rid,
                             field=f"{where}.productOrService")
        line_obj = {"line": item.get("sequence", i + 1), "code": code}
        qty = item.get("quantity", {}).get("value")
        if qty is not None:
            if not float(qty).is_integer():
                raise InputError(f"quantity {qty} is not whole", file=file, line=line, record=rid, field=f"{where}.quantity")
            line_obj["units"] = int(qty)
        mods = [c.get("code") for m in item.get("modifier", []) for c in m.get("coding", []) if c.get("code")]
        if mods:
            line_obj["modifiers"] = mods
        dos = item.get("servicedDate") or item.get("servicedPeriod", {}).get("start") or period
        if dos:
            line_obj["dateOfService"] = dos[:10]
        pos = next((c.get("code") for c in item.get("locationCodeableConcept", {}).get("coding", []) if c.get("code")), None)
        if pos:
            line_obj["placeOfService"] = pos
        claim["lines"].append(line_obj)
    if not claim["lines"]:
        raise InputError("Claim has no item", file=file, line=line, record=rid, field="Claim.item")
    return claim


def _fhir(path):

    def convert(resource, n):
        try:
            return fhir_claim(resource, file=path, line=n)
        except InputError as err:
            return err

    if Path(path).suffix == ".ndjson":
        for _, n, text in _jsonl(path):
            if isinstance(text, InputError):
                yield path, n, text
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield path, n, InputError(f"not valid JSON: {exc.msg}", file=path, line=n)
                continue
            yield path, n, convert(obj, n) if isinstance(obj, dict) else InputError(
                "a FHIR resource must be a JSON object", file=path, line=n)
        return
    from . import jsonstream
    from .inputs import open_text, utf8_error

    # a Bundle's entries one at a time (jsonstream), each Claim with the line it starts on
    listed = False
    try:
        with open_text(path) as fh:
            for what, line, value in jsonstream.records(fh, ("entry",)):
                if isinstance(value, jsonstream.NotUtf8):
                    yield path, line, utf8_error(value.byte, path, line)
                elif what == "item":
                    listed = True
                    res = value.get("resource") if isinstance(value, dict) else None
                    if not isinstance(res, dict):
                        yield path, line, InputError("a Bundle entry must hold a resource object", file=path, line=line)
                    elif res.get("resourceType") == "Claim":
                        yield path, line, convert(res, line)
                elif not listed and value.get("resourceType") != "Bundle":
                    bad = jsonstream.NotUtf8.among(value.values())
                    yield path, 1, utf8_error(bad.byte, path, 1) if bad is not None else convert(value, None)
    except jsonstream.JsonError as exc:
        yield path, exc.line, InputError(f"not valid JSON: {exc.msg}", file=path, line=exc.line)


def _is_fhir(path):
    p = Path(path)
    if p.suffix == ".ndjson":
        return True
    if p.suffix != ".json":
        return False
    with open(p, encoding="utf-8", errors="replace") as fh:
        head = fh.read(2000)
    return '"resourceType"' in head


def read_raw(paths, kind):
    """Yield (file, line, obj | InputError) for every record of every file, streaming."""
    for path in paths:
        p = Path(path)
        if not p.exists():
            yield p, None, InputError("no such file", file=p)
            continue
        suffix = p.suffix.lower()
        if kind == "claim" and suffix == ".csv":
            from .inputs import csv_claims

            yield from csv_claims(p)
        elif kind == "claim" and _is_fhir(p):
            yield from _fhir(p)
        elif suffix == ".jsonl":
            yield from _jsonl(p)
        elif suffix in (".json", ".jsonld"):
            try:
                yield from _json(p, kind)
            except InputError as err:
                yield p, err.line, err
        elif suffix in (".ttl", ".nt"):
            yield p, None, ("rdf", str(p))  # small RDF files: read whole, in the worker
        else:
            yield p, None, InputError(f"unknown file type '{suffix}'", file=p)


# ---------------------------------------------------------------------------------------------
# workers

_WORKER = {}


def _init_worker(root, overlays, kind, engine, encoding=None):
    from .content import discover
    from .kb import load

    # a run before this one in the same process (the library, the tests) left its state: let it go
    _WORKER.clear()
    gc.unfreeze()
    content = discover(root, overlays=overlays)
    kb = load(content, overlays)
    _WORKER.update(kb=kb, kind=kind, content=content, encoding=encoding)
    if kind == "claim":
        _WORKER["validator"] = make_validator(kb, engine)
    else:
        _WORKER["deriver"] = make_deriver(kb, engine)
        _WORKER["checker"] = make_checker(kb, engine)
    # The knowledge graph, the shapes and the compiled queries live as long as the worker: out of
    # the collector's sight, so that its full collections stop walking them again and again (they
    # took a tenth of a worker's time: measured 1,560 -> 1,340 us an encounter, 316 -> 285 us a
    # claim). Collecting less often as well gained little and cost 90 MB a worker.
    gc.collect()
    gc.freeze()


def _leave_interrupts():
    """Workers ignore Ctrl-C and leave it to the main process, which stops the run: it waits
    for the chunks in work, writes none of them, and keeps what is written and recorded."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker_guarded(*init):
    """A pool initializer that does not raise: a worker whose initializer raises is replaced by
    a new one, again and again, and the run never ends. The error is kept and raised by the
    worker's first chunk, which brings it back to the main process."""
    _leave_interrupts()
    try:
        _init_worker(*init)
    except Exception as exc:  # noqa: BLE001 -- re-raised by _worker_state
        _WORKER["error"] = exc


def _isolate(run, records, failed):
    """run(records) -> a list; when it raises on a chunk (a defect of the engine, not a content
    error), the halves are run again, down to the records it raises on: each of those gets a
    RecordFailed error (its result is failed(record)) and the rest of the chunk is processed."""
    from .errors import CptkgError, RecordFailed

    try:
        return run(records)
    except CptkgError:
        raise
    except Exception as exc:  # noqa: BLE001 -- kept as the record's error
        if len(records) > 1:
            mid = len(records) // 2
            return _isolate(run, records[:mid], failed) + _isolate(run, records[mid:], failed)
        rec = records[0]
        rec.error = RecordFailed(f"internal error on this record ({type(exc).__name__}: {exc}); the other "
                                 f"records are processed; please report it with this record",
                                 file=rec.file, record=rec.id, line=rec.line)
        return failed(rec)


def _worker_state():
    if "error" in _WORKER:
        raise _WORKER["error"]
    return _WORKER


def make_deriver(kb, engine):
    """fast: the rules on pyoxigraph, a batch at a time; reference: rdflib, one encounter at a time."""
    if engine == "fast":
        from .fastderive import FastDeriver

        return FastDeriver(kb)
    from .rules import Deriver

    return Deriver(kb)


def make_checker(kb, engine):
    """Input checks of described encounters: fast, the shapes compiled to SPARQL on pyoxigraph
    (reasoner/fastcheck.py, the reference where it refuses); reference: pySHACL."""
    if engine == "fast":
        from .fastcheck import FastEncounterChecker

        return FastEncounterChecker(kb)
    from .validate import EncounterChecker

    return EncounterChecker(kb)


def make_validator(kb, engine):
    if engine == "fast":
        try:
            from .fast import FastValidator
        except ImportError as exc:
            raise InputError(f"the fast engine is not available ({exc}); use --engine reference")
        return FastValidator(kb)
    from .validate import ClaimValidator

    return ClaimValidator(kb)


def _to_records(items, kind):
    from .inputs import Record, read_records, record_from_object

    kb = _WORKER["kb"]
    out = []
    for index, (file, line, obj) in items:
        if type(obj) is RawJson:
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                obj = InputError(f"not valid JSON: {exc.msg}", file=file, line=line)
        if isinstance(obj, InputError):
            out.append(Record(id=obj.record or (f"line {line}" if line else f"#{index}"), file=Path(file), line=line, error=obj))
        elif isinstance(obj, tuple) and obj[0] == "rdf":
            out.extend(read_records(obj[1], kind, kb.content.context))
        else:
            rec = record_from_object(obj, kind, kb.content.context, file=file, index=index)
            rec.line = line
            if rec.error is not None and rec.error.line is None:
                rec.error.line = line
            out.append(rec)
    return out


def _validate_chunk(args):
    global _LINE
    from .vocab import CPTKG

    _LINE = CPTKG.line
    chunk_no, items = args
    _worker_state()
    records = _to_records(items, "claim")
    good = [r for r in records if r.error is None]
    validator = _WORKER["validator"]
    findings = _isolate(lambda rs: validator.validate(rs)[0], good, lambda rec: []) if good else []
    by_claim = {}
    for f in findings:
        by_claim.setdefault((f["file"], f["claim"]), []).append(f)
    results = []
    for r in records:
        if r.error is not None:
            results.append({"claim": r.id, "file": str(r.file), "line": r.line, "status": "error",
                            "error": r.error.as_record(), "findings": []})
            continue
        fs = by_claim.get((str(r.file), r.id), [])
        sev = {f["severity"] for f in fs}
        status = "violation" if "violation" in sev else "warning" if "warning" in sev else "conforms"
        if r.source is not None and isinstance(r.source.get("lines"), list):
            n_lines = len(r.source["lines"])
        else:
            n_lines = sum(1 for _ in r.graph.objects(r.node, _LINE))
        results.append({"claim": r.id, "file": str(r.file), "line": r.line, "status": status, "lines": n_lines,
                        "findings": fs})
    return _finish(chunk_no, results, summarize(results))


def _finish(chunk_no, results, summary=None):
    """What a worker sends back: the chunk's results (encoded for the sink, when it writes a file,
    so the main process only writes bytes) and its counts."""
    part = {"records": len(results), "errors": sum(1 for r in results if r.get("status") == "error" or "error" in r),
            "failed": failed_records(results), "summary": summary}
    encoding = _WORKER.get("encoding")
    if encoding:
        return chunk_no, ENCODERS[encoding](results), part
    return chunk_no, results, part


def failed_records(results):
    """How many results are error records of a record the engine failed on (RecordFailed)."""
    return sum(1 for r in results if (r.get("error") or {}).get("internal"))


def json_keys(context_path):
    """Vocabulary IRI -> the JSON key a user writes (serviceDate -> dateOfService), from the context."""
    from .inputs import load_context
    from .vocab import CPTKG

    keys = {}
    for term, spec in load_context(context_path).items():
        iri = spec.get("@id") if isinstance(spec, dict) else spec
        if isinstance(iri, str) and iri.startswith("cptkg:"):
            keys.setdefault(str(CPTKG[iri[6:]]), term)
    return keys


def derive_records(kb, checker, deriver, records):
    """Input checks, then derivation, for a list of encounter records. Returns one
    (record, summary, derived graph) per record; a record that fails the input shapes gets an
    InputError (first violation, with how many more) and (record, None, None).
    Shared by the command line, the batch workers and the server."""
    from .render import summarize_encounter

    problems = checker.check([r for r in records if r.error is None])
    keys = json_keys(kb.content.context)
    for rec in records:
        bad = [p for p in problems.get(rec.id, []) if p["severity"] == "violation"] if rec.error is None else []
        if bad:
            fields = [keys.get(str(p["path"]), str(p["path"]).rsplit("#", 1)[-1]) if p["path"] is not None else None
                      for p in bad]
            p = bad[0]
            focus = str(p["focus"]).rsplit("/", 1)[-1]
            others = sorted({f for f in fields[1:] if f and f != fields[0]})
            more = f" (+{len(bad) - 1} more" + (f": {', '.join(others)}" if others else "") + ")" if len(bad) > 1 else ""
            rec.error = InputError(f"{p['message']} [{p['shape']}, on {focus}]{more}",
                                   file=rec.file, record=rec.id, field=fields[0], line=rec.line)
    ready = [r for r in records if r.error is None]
    if hasattr(deriver, "derive_many"):  # the fast engine derives a whole batch at once
        derivations = deriver.derive_many(ready)
    else:
        derivations = {r.node: deriver.derive(r.graph) for r in ready}
    out = []
    for rec in records:
        if rec.error is not None:
            out.append((rec, None, None))
        else:
            derived = derivations[rec.node]
            out.append((rec, summarize_encounter(kb, rec, derived), derived))
    return out


def _derive_chunk(args):
    chunk_no, items = args
    _worker_state()
    records = _to_records(items, "encounter")
    results = []
    kb, checker, deriver = _WORKER["kb"], _WORKER["checker"], _WORKER["deriver"]
    done = _isolate(lambda rs: derive_records(kb, checker, deriver, rs), records, lambda rec: [(rec, None, None)])
    for rec, summary, _ in done:
        if summary is None:
            results.append({"id": rec.id, "file": str(rec.file), "line": rec.line, "error": rec.error.as_record()})
        else:
            summary["line"] = rec.line
            results.append(summary)
    return _finish(chunk_no, results)


# ---------------------------------------------------------------------------------------------
# the run: chunks on every core, written in order as they finish, with a resumable checkpoint

def chunks(raw, size):
    chunk, n, index = [], 0, 0
    for item in raw:
        chunk.append((index, item))
        index += 1
        if len(chunk) >= size:
            yield n, chunk
            chunk, n = [], n + 1
    if chunk:
        yield n, chunk


class Checkpoint:
    """`<out>.progress`: the chunks already written, the output size after each and each chunk's
    counts, so that an interrupted run resumes where it stopped (the output is truncated to the
    last whole chunk) and the totals still cover every chunk."""

    def __init__(self, out: Path, resume: bool, signature: str):
        self.path = out.with_name(out.name + ".progress")
        self.done = {}
        self.parts = {}
        self.offset = 0
        if resume and self.path.exists():
            lines = self.path.read_text().splitlines()
            if lines and lines[0] == signature:
                for line in lines[1:]:
                    try:
                        n, off, part = line.split(" ", 2)
                        self.parts[int(n)] = json.loads(part)
                    except ValueError:
                        break  # a line cut short by the interruption: that chunk is redone
                    self.done[int(n)] = int(off)
                self.offset = max(self.done.values(), default=0)
        if not resume or not self.done:
            self.path.write_text(signature + "\n")
            self.done, self.parts, self.offset = {}, {}, 0

    def record(self, chunk_no, offset, part):
        with _Naming(self.path), open(self.path, "a") as fh:
            fh.write(f"{chunk_no} {offset} {json.dumps(part, separators=(',', ':'))}\n")
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self):
        self.path.unlink(missing_ok=True)


class Progress:
    def __init__(self, noun, enabled):
        self.noun, self.enabled, self.n, self.t0, self.last = noun, enabled, 0, time.time(), 0.0

    def add(self, k):
        self.n += k
        now = time.time()
        if self.enabled and now - self.last > 0.2:
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.n:,} {self.noun} ({rate:,.0f}/s)")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write(f"\r{self.n:,} {self.noun} in {time.time() - self.t0:.1f}s\n")


def signature(kind, paths, overlays, engine, chunk):
    return json.dumps({"kind": kind, "files": [str(p) for p in paths], "overlays": list(overlays),
                       "engine": engine, "chunk": chunk})


def run(kind, paths, *, root, overlays=(), engine="reference", jobs=None, chunk=CHUNK, sink=None,
        checkpoint=None, progress=False):
    """Process every record of paths; call sink for each result, in input order. Returns the
    counts {"records", "errors", "failed", "summary"} over the whole run, resumed chunks included
    ("failed": the records the engine itself failed on, counted among the errors too)."""
    jobs = jobs or os.cpu_count() or 1
    raw = read_raw(paths, kind)
    work = _validate_chunk if kind == "claim" else _derive_chunk
    todo = ((n, c) for n, c in chunks(raw, chunk) if not checkpoint or n not in checkpoint.done)
    bar = Progress("claims" if kind == "claim" else "encounters", progress)
    encoding = getattr(sink, "encoding", None)
    totals = {"records": 0, "errors": 0, "failed": 0, "summary": None}

    def add(part):
        totals["records"] += part["records"]
        totals["errors"] += part["errors"]
        totals["failed"] += part.get("failed", 0)
        if part.get("summary") is not None:
            totals["summary"] = merge_summaries(totals["summary"], part["summary"])

    for part in (checkpoint.parts.values() if checkpoint else ()):
        add(part)

    def emit(chunk_no, payload, part):
        if encoding:
            sink.write(payload)
        else:
            for r in payload:
                sink(r)
        add(part)
        if checkpoint:
            checkpoint.record(chunk_no, sink.flush(), part)
        bar.add(part["records"])

    init = (root, tuple(overlays), kind, engine, encoding)
    if jobs == 1:
        _init_worker(*init)
        for item in todo:
            emit(*work(item))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if hasattr(os, "fork"):
            # The knowledge graph and the compiled engine are built once, here, and the workers
            # forked from this process share them (copy on write): with a full CMS edit table that
            # is one build instead of one a worker, and 0.5 to 0.9 GB less a worker (measured; the
            # workers write into oxigraph's stores, whose pages they then copy). A content error is
            # raised here, before any worker exists.
            _init_worker(*init)
            pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork"), initializer=_leave_interrupts)
        else:
            pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context(), initializer=_init_worker_guarded,
                                       initargs=init)
        # Not multiprocessing.Pool: when one of its workers is killed (the kernel's out-of-memory
        # killer, a crash in native code), the chunk it held never comes back and the run waits
        # for ever. The executor notices the lost process and the run ends with WorkerLost.
        try:
            for chunk_no, payload, part in _in_order(pool, work, todo, ahead=2 * jobs):
                emit(chunk_no, payload, part)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    if checkpoint:
        checkpoint.finish()
    return totals


def _in_order(pool, work, items, ahead):
    """work(item) for each item on the pool, results in input order, at most `ahead` chunks
    submitted and not yet taken (the input is read as the work goes, not all at once)."""
    from collections import deque
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    pending = deque()
    for item in items:
        try:
            future = pool.submit(work, item)
        except BrokenProcessPool as exc:  # a process was lost before this chunk went out
            future = Future()
            future.set_exception(exc)
            pending.append((item, future))
            break
        pending.append((item, future))
        if len(pending) >= ahead:
            yield _result(*pending.popleft())
    while pending:
        yield _result(*pending.popleft())


def _result(item, future):
    from concurrent.futures.process import BrokenProcessPool

    from .errors import WorkerLost

    try:
        return future.result()
    except BrokenProcessPool:
        chunk_no, records = item
        file, line = records[0][1][0], records[0][1][1]
        # The executor fails every chunk in work when one process is lost, so this is the first
        # chunk not written, not necessarily the one the lost process held.
        raise WorkerLost(
            f"a worker process ended without its result (killed, out of memory, or crashed); the run "
            f"stopped at the chunk of {len(records)} records starting here, and the chunks before it are "
            f"written and recorded: run again with --resume to go on from there (fewer --jobs or a "
            f"smaller --chunk if memory ran out)", file=str(file), line=line) from None


class _Naming:
    """An OSError while writing a file carries its name (a full disk says only 'No space left on
    device'), so the command line can say which file and exit 2 rather than call it internal."""

    def __init__(self, path):
        self.path = str(path)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, OSError) and exc.filename is None and not isinstance(exc, BrokenPipeError):
            raise OSError(exc.errno, exc.strerror or str(exc), self.path) from exc
        return False


class JsonlSink:
    """One JSON record per line; flush() returns the byte offset after the last whole record."""

    def __init__(self, path: Path, offset=0):
        self.naming = _Naming(path)
        with self.naming:
            self.fh = open(path, "r+b" if offset else "wb")
            if offset:
                self.fh.truncate(offset)
                self.fh.seek(offset)

    encoding = "jsonl"

    def __call__(self, record):
        with self.naming:
            self.fh.write(encode_jsonl([record]))

    def write(self, payload: bytes):
        with self.naming:
            self.fh.write(payload)

    def flush(self):
        with self.naming:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            return self.fh.tell()

    def close(self):
        with self.naming:
            self.fh.close()


FINDING_COLUMNS = ["claim", "line", "code", "severity", "message", "shape", "sources", "status", "claim_lines", "file"]


class CsvFindingsSink(JsonlSink):
    """A row per finding; a claim with none gets one row with its status, so every claim appears."""

    encoding = "csv"

    def __init__(self, path: Path, offset=0):
        super().__init__(path, offset)
        if not offset:
            self.write(_csv_bytes([FINDING_COLUMNS]))

    def __call__(self, record):
        with self.naming:
            self.fh.write(encode_csv([record]))


def _csv_bytes(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


def encode_jsonl(results):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results).encode("utf-8")


def encode_csv(results):
    rows = []
    for record in results:
        if record.get("status") == "error":
            e = record["error"]
            rows.append([record["claim"], "", "", "error", e["error"] + (f" (field {e['field']})" if e.get("field") else ""),
                         "", "", "error", "", record["file"] + (f":{e['line']}" if e.get("line") else "")])
            continue
        if not record["findings"]:
            rows.append([record["claim"], "", "", "", "", "", "", record["status"], record["lines"], record["file"]])
        for f in record["findings"]:
            rows.append([f["claim"], f["line"], f["code"], f["severity"], f["message"], f["shape"],
                         "; ".join(s["id"] for s in f.get("sources", [])), record["status"], record["lines"], f["file"]])
    return _csv_bytes(rows)


ENCODERS = {"jsonl": encode_jsonl, "csv": encode_csv}


class ListSink:
    """Keeps results in memory (small inputs, text and JSON output)."""

    def __init__(self):
        self.results = []

    def __call__(self, record):
        self.results.append(record)

    def flush(self):
        return len(self.results)

    def close(self):
        pass


_TOTALS = ("claims", "lines", "errors", "findings")
_TALLIES = ("byStatus", "bySeverity", "byShape", "byCode")


def _empty_summary():
    return {**{k: 0 for k in _TOTALS}, **{k: {} for k in _TALLIES}}


def _sorted_summary(summary):
    """Each tally from the most to the least frequent (then by name)."""
    for key in _TALLIES:
        summary[key] = dict(sorted(summary[key].items(), key=lambda kv: (-kv[1], kv[0])))
    return summary


def summarize(results):
    """Summary of validation results: claims, lines, findings by status, severity, rule and code."""
    summary = _empty_summary()
    for r in results:
        summary["claims"] += 1
        summary["lines"] += r.get("lines", 0)
        summary["byStatus"][r["status"]] = summary["byStatus"].get(r["status"], 0) + 1
        if r["status"] == "error":
            summary["errors"] += 1
        for f in r["findings"]:
            summary["findings"] += 1
            for key, field in (("bySeverity", "severity"), ("byShape", "shape"), ("byCode", "code")):
                k = f.get(field) or ""
                summary[key][k] = summary[key].get(k, 0) + 1
    return _sorted_summary(summary)


def merge_summaries(a, b):
    """The summary of two parts (from summarize), sorted as summarize sorts."""
    out = _empty_summary()
    for part in (a, b):
        if not part:
            continue
        for key in _TOTALS:
            out[key] += part[key]
        for key in _TALLIES:
            for k, v in part[key].items():
                out[key][k] = out[key].get(k, 0) + v
    return _sorted_summary(out)