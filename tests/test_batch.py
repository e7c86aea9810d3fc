"""Batches: streaming readers (CSV, JSON Lines, FHIR), every record answered, order kept across
processes, resume after an interruption, derive to a results file and explain from it."""
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import ROOT, content_copy
from reasoner import batch

CSV_HEAD = "claim_id,line,code,units,modifiers,date_of_service,place_of_service,claim_type\n"


def run_claims(paths, jobs=1, chunk=2, **kw):
    sink = batch.ListSink()
    batch.run("claim", [str(p) for p in paths], root=ROOT, jobs=jobs, chunk=chunk, sink=sink, **kw)
    return sink.results


def test_fhir_bundle_same_findings_as_csv(tmp_path):
    fhir = run_claims([ROOT / "examples" / "claims-fhir.json"])
    assert [r["claim"] for r in fhir] == ["FHIR-3001", "FHIR-3002"]
    shapes = {f["shape"] for f in fhir[0]["findings"]}
    assert {"GuidanceIncludedInPrimary", "BundledPair"} <= shapes
    assert fhir[1]["status"] == "conforms", fhir[1]
    csv = tmp_path / "same.csv"
    csv.write_text(CSV_HEAD + "FHIR-3001,1,62323,1,,2024-05-14,11,professional\nFHIR-3001,2,77003,1,,2024-05-14,11,professional\n")
    again = run_claims([csv])
    key = lambda rs: sorted((f["line"], f["shape"], f["severity"]) for r in rs for f in r["findings"])
    assert key(again) == key(fhir[:1])


def test_fhir_ndjson_and_bad_resource(tmp_path):
    nd = tmp_path / "claims.ndjson"
    good = {"resourceType": "Claim", "id": "N1", "type": {"coding": [{"code": "professional"}]},
            "billablePeriod": {"start": "2024-01-02"},
            "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "77003"}]},
                      "locationCodeableConcept": {"coding": [{"code": "11"}]}}]}
    bad = {"resourceType": "Claim", "id": "N2", "item": [{"sequence": 1, "productOrService": {}}]}
    nd.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{not json\n")
    res = run_claims([nd])
    assert [r["status"] for r in res] == ["violation", "error", "error"]
    assert res[1]["error"]["field"] == "Claim.item[0].productOrService" and res[1]["error"]["line"] == 2
    assert res[2]["error"]["line"] == 3


def test_csv_every_claim_answered_and_lines_must_be_consecutive(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text(CSV_HEAD + "A,1,62273,1,,2024-01-02,11,professional\n"
                 "B,1,77003,1,,2024-01-02,11,professional\n"
                 "A,2,77003,1,,2024-01-02,11,professional\n"
                 "C,1,20610,x,,2024-01-02,11,professional\n"
                 "D,1,20610,1,,2024-01-02,11,professional\n")
    res = run_claims([p])
    assert [(r["claim"], r["status"]) for r in res] == [
        ("A", "conforms"), ("B", "violation"), ("A", "error"), ("C", "error"), ("D", "conforms")]
    assert "not consecutive" in res[2]["error"]["error"] and res[2]["error"]["line"] == 4
    assert res[3]["error"]["field"] == "units" and res[3]["error"]["line"] == 5


def _big_csv(path, n):
    rows = [l for l in (ROOT / "examples" / "claims.csv").read_text().splitlines()[1:]]
    with open(path, "w") as fh:
        fh.write(CSV_HEAD)
        for i in range(n):
            for r in rows:
                cid, rest = r.split(",", 1)
                fh.write(f"{cid}-{i},{rest}\n")


def test_two_processes_keep_order_and_agree(tmp_path):
    p = tmp_path / "b.csv"
    _big_csv(p, 3)
    one = run_claims([p], jobs=1, chunk=5)
    two = run_claims([p], jobs=2, chunk=5)
    assert [r["claim"] for r in one] == [r["claim"] for r in two]
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def _broken_content(tmp_path):
    root = content_copy(tmp_path / "content")
    module = next((root / "ontology" / "codes").glob("*.ttl"))
    with open(module, "a") as fh:
        fh.write("\nthis is not turtle .\n")
    return root, module


def test_workers_are_forked_from_one_build_of_the_engine(tmp_path, monkeypatch):
    """With fork, the main process builds the knowledge graph and the engine once and the workers
    share them; before, each worker built its own (a gigabyte a worker with a full edit table)."""
    builds = tmp_path / "builds"
    real = batch._init_worker

    def counting(*args, **kw):
        with open(builds, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real(*args, **kw)

    monkeypatch.setattr(batch, "_init_worker", counting)
    p = tmp_path / "b.csv"
    _big_csv(p, 2)
    results = run_claims([p], jobs=2, chunk=3)
    assert len(results) == 2 * 8 and all(r["status"] != "error" for r in results)
    assert builds.read_text().split() == [str(os.getpid())]


def test_content_error_with_workers_ends_the_run(tmp_path):
    """A content file that does not parse ends a run on several processes with the content error
    and its exit code; it used to kill each new worker as it started, so the run never ended."""
    root, module = _broken_content(tmp_path)
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "--content", str(root), "validate",
                        "examples/claims.csv", "--out", str(tmp_path / "f.jsonl"), "--jobs", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"{module}: cannot parse Turtle" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_worker_that_cannot_start_reports_its_error_on_its_first_chunk(tmp_path):
    """Where workers are spawned (no fork), each builds the engine in a pool initializer, which
    must not raise; the error comes back with the worker's first chunk."""
    from reasoner.errors import ContentError

    root, module = _broken_content(tmp_path)
    interrupts = signal.getsignal(signal.SIGINT)  # a worker ignores Ctrl-C; this process must not
    try:
        batch._init_worker_guarded(str(root), (), "claim", "fast", "jsonl")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert isinstance(batch._WORKER.get("error"), ContentError)
        with pytest.raises(ContentError, match="cannot parse Turtle"):
            batch._validate_chunk((0, [(0, ("x.jsonl", 1, batch.RawJson("{}")))]))
        with pytest.raises(ContentError, match="cannot parse Turtle"):
            batch._derive_chunk((0, [(0, ("x.jsonl", 1, batch.RawJson("{}")))]))
    finally:
        batch._WORKER.clear()
        signal.signal(signal.SIGINT, interrupts)


class Crash(Exception):
    pass


def test_resume_after_interruption(tmp_path):
    p = tmp_path / "b.csv"
    _big_csv(p, 2)  # 16 claims
    sig = batch.signature("claim", [str(p)], (), "reference", 3)
    full = tmp_path / "full.jsonl"
    cp = batch.Checkpoint(full, False, sig)
    sink = batch.JsonlSink(full)
    whole = batch.run("claim", [str(p)], root=ROOT, jobs=1, chunk=3, sink=sink, checkpoint=cp)
    sink.close()
    assert whole["records"] == 16 and whole["summary"]["claims"] == 16

    out = tmp_path / "part.jsonl"
    cp = batch.Checkpoint(out, False, sig)
    sink = batch.JsonlSink(out)
    seen = {"n": 0}
    real_call = sink.__call__

    class Crashing(batch.JsonlSink):
        pass

    def crashing(record):
        seen["n"] += 1
        if seen["n"] == 8:  # in the middle of the third chunk
            raise Crash()
        real_call(record)

    sink.__call__ = crashing
    wrapper = lambda record: sink.__call__(record)
    wrapper.flush = sink.flush
    with pytest.raises(Crash):
        batch.run("claim", [str(p)], root=ROOT, jobs=1, chunk=3, sink=wrapper, checkpoint=cp)
    sink.close()
    assert (out.with_name(out.name + ".progress")).exists()
    cp = batch.Checkpoint(out, True, sig)
    assert sorted(cp.done) == [0, 1]
    sink = batch.JsonlSink(out, cp.offset)
    resumed = batch.run("claim", [str(p)], root=ROOT, jobs=1, chunk=3, sink=sink, checkpoint=cp)
    sink.close()
    assert out.read_text() == full.read_text()
    # the totals cover the chunks done before the interruption too
    assert resumed == whole
    assert not out.with_name(out.name + ".progress").exists()


_VALIDATE_CHUNK = batch._validate_chunk


def _dies_on_third_chunk(args):
    if args[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
    return _VALIDATE_CHUNK(args)


def test_a_worker_killed_mid_run_ends_the_run_and_resume_finishes_it(tmp_path, monkeypatch):
    """A worker killed while it holds a chunk ends the run with WorkerLost (exit 3), naming the
    file and line of the first chunk not written; before, the run waited for ever. The chunks
    before it are written and recorded, and --resume finishes the file."""
    from reasoner.errors import EXIT_INTERNAL, WorkerLost

    p = tmp_path / "b.csv"
    _big_csv(p, 2)  # 16 claims, 6 chunks of 3
    sig = batch.signature("claim", [str(p)], (), "reference", 3)
    full = tmp_path / "full.jsonl"
    sink = batch.JsonlSink(full)
    batch.run("claim", [str(p)], root=ROOT, jobs=1, chunk=3, sink=sink, checkpoint=batch.Checkpoint(full, False, sig))
    sink.close()
    starts = [json.loads(x)["line"] for x in full.read_text().splitlines()[::3]]  # each chunk's first line

    out = tmp_path / "part.jsonl"
    sink = batch.JsonlSink(out)
    monkeypatch.setattr(batch, "_validate_chunk", _dies_on_third_chunk)
    ended = {}

    def interrupted():
        try:
            batch.run("claim", [str(p)], root=ROOT, jobs=2, chunk=3, sink=sink,
                      checkpoint=batch.Checkpoint(out, False, sig))
        except BaseException as exc:  # noqa: BLE001 -- examined below
            ended["error"] = exc

    runner = threading.Thread(target=interrupted, daemon=True)
    runner.start()
    runner.join(300)
    assert not runner.is_alive(), "the run waits for ever for the chunk of the killed worker"
    sink.close()
    monkeypatch.undo()
    lost = ended.get("error")
    assert isinstance(lost, WorkerLost), lost
    assert lost.exit_code == EXIT_INTERNAL and "--resume" in lost.message
    cp = batch.Checkpoint(out, True, sig)
    stopped = min(set(range(6)) - set(cp.done))
    assert sorted(cp.done) == list(range(stopped)) and stopped <= 2
    assert (lost.file, lost.line) == (str(p), starts[stopped])
    sink = batch.JsonlSink(out, cp.offset)
    batch.run("claim", [str(p)], root=ROOT, jobs=2, chunk=3, sink=sink, checkpoint=cp)
    sink.close()
    assert out.read_text() == full.read_text()


def test_ctrl_c_stops_a_run_with_exit_130_and_resume_finishes_it(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) ends a run on two processes
    with exit 130 and one line saying how to go on, no trace from the workers; the chunks
    written are kept and --resume finishes the file as one run would have."""
    import time

    # a process that ignores SIGINT passes that on to its children (Python then installs no handler)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    p = tmp_path / "b.csv"
    _big_csv(p, 8)  # 64 claims
    cmd = [sys.executable, "-m", "reasoner.cli", "validate", str(p), "--engine", "reference", "--jobs", "2",
           "--chunk", "2", "--out"]
    whole = tmp_path / "whole.jsonl"
    subprocess.run(cmd + [str(whole)], cwd=ROOT, capture_output=True, timeout=600)
    out = tmp_path / "part.jsonl"
    progress = out.with_name(out.name + ".progress")
    run = subprocess.Popen(cmd + [str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if progress.exists() and len(progress.read_text().splitlines()) >= 3:  # the header and two chunks
            os.killpg(run.pid, signal.SIGINT)
            break
        time.sleep(0.05)
    err = run.communicate(timeout=300)[1]
    assert run.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    written = len(out.read_text().splitlines())
    assert 4 <= written < 64
    r = subprocess.run(cmd + [str(out), "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    assert out.read_text() == whole.read_text()


@pytest.mark.parametrize("command,data", [("validate", "examples/claims.csv"), ("derive", "examples/encounters.json")])
def test_an_output_that_cannot_be_written_is_named_with_exit_2(tmp_path, command, data):
    """A full disk (Linux's /dev/full) or a missing folder: one line naming the file, exit 2,
    whatever the number of processes; it was reported as an internal error with a trace."""
    targets = [tmp_path / "missing" / "out.jsonl"] + ([Path("/dev/full")] if Path("/dev/full").exists() else [])
    for target in targets:
        for jobs in ("1", "2"):
            r = subprocess.run([sys.executable, "-m", "reasoner.cli", command, data, "--out", str(target),
                                "--jobs", jobs], cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert r.returncode == 2, r.stderr
            assert r.stderr.startswith(f"cptkg: {target}") and "Traceback" not in r.stderr, r.stderr


class _Poisoned:
    """An engine that fails on any batch holding the record with id `poison` (as a defect would)."""

    def __init__(self, engine, poison, method):
        self.engine, self.poison, self.method = engine, poison, method

    def __getattr__(self, name):
        real = getattr(self.engine, name)
        if name != self.method:
            return real

        def call(records, *a, **kw):
            if any(r.id == self.poison for r in records):
                raise ValueError("an engine defect")
            return real(records, *a, **kw)
        return call


def test_a_record_the_engine_fails_on_gets_an_error_and_its_chunk_goes_on(tmp_path, monkeypatch):
    """One claim (or encounter) that makes the engine raise gets an error record naming it; the
    other records of its chunk get the results they get without it; the run goes on."""
    p = tmp_path / "b.csv"
    _big_csv(p, 2)  # 16 claims
    clean = run_claims([p], jobs=1, chunk=8, engine="fast")
    poison = clean[5]["claim"]
    make = batch.make_validator
    monkeypatch.setattr(batch, "make_validator", lambda kb, engine: _Poisoned(make(kb, engine), poison, "validate"))
    got = run_claims([p], jobs=1, chunk=8, engine="fast")
    assert [r["claim"] for r in got] == [r["claim"] for r in clean]
    bad = got[5]
    assert bad["status"] == "error" and bad["error"]["record"] == poison and bad["line"] == clean[5]["line"]
    assert bad["error"]["error"].startswith("internal error on this record (ValueError: an engine defect)")
    assert bad["error"]["internal"] is True
    assert got[:5] + got[6:] == clean[:5] + clean[6:]
    # the command goes on to the end and exits 3, with or without --out
    from reasoner.cli import main as cli
    out = tmp_path / "v.jsonl"
    assert cli(["validate", str(p), "--engine", "fast", "--jobs", "1", "--out", str(out)]) == 3
    assert len(out.read_text().splitlines()) == 16
    assert cli(["validate", str(p), "--engine", "fast", "--format", "json", "--output", str(tmp_path / "v.json")]) == 3

    encounters = json.loads((ROOT / "examples" / "encounters.json").read_text())["encounters"]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in encounters))
    make_d = batch.make_deriver
    sink = batch.ListSink()
    batch.run("encounter", [str(path)], root=ROOT, jobs=1, chunk=10, sink=sink, engine="fast")
    clean = sink.results
    assert len(clean) == len(encounters) >= 3 and not any("error" in r for r in clean)
    monkeypatch.setattr(batch, "make_deriver", lambda kb, engine: _Poisoned(make_d(kb, engine), encounters[2]["id"], "derive_many"))
    sink = batch.ListSink()
    batch.run("encounter", [str(path)], root=ROOT, jobs=1, chunk=10, sink=sink, engine="fast")
    got = sink.results
    assert got[2]["id"] == encounters[2]["id"] and "internal error on this record" in got[2]["error"]["error"]
    assert got[:2] + got[3:] == clean[:2] + clean[3:]
    out = tmp_path / "d.jsonl"
    assert cli(["derive", str(path), "--engine", "fast", "--jobs", "1", "--out", str(out)]) == 3
    assert len(out.read_text().splitlines()) == len(encounters)


def test_cli_batch_validate_and_derive(tmp_path):
    out = tmp_path / "findings.csv"
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "validate", "examples/claims.csv", "examples/claims-fhir.json",
                        "--out", str(out), "--jobs", "2", "--chunk", "3"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    summary = json.loads((tmp_path / "findings.summary.json").read_text())
    assert summary["claims"] == 10 and summary["errors"] == 0 and summary["lines"] == 21
    rows = out.read_text().splitlines()
    assert rows[0].startswith("claim,line,code,severity")
    claims_in_csv = {row.split(",")[0] for row in rows[1:]}
    assert len(claims_in_csv) == 10  # every claim appears, with its findings or its status
    res = tmp_path / "codes.jsonl"
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "derive", "examples/encounters.json", "--out", str(res),
                        "--jobs", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(res.read_text().splitlines()) == 6
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "explain", str(res), "--encounter", "enc-lp-2019"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "Report 77003-26" in r.stdout and "enc-tfesi" not in r.stdout


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_file_name_not_an_iri_and_unpaired_surrogate(tmp_path, engine):
    """A file name with a space names its records under a percent-encoded IRI (both engines once
    stopped with an internal error); a JSON string holding an unpaired surrogate escape is an input
    error naming its field, and the claim after it is still validated."""
    p = tmp_path / "my claims ü.jsonl"
    claim = {"id": "S1", "dateOfService": "2024-03-15", "placeOfService": "19", "claimType": "professional",
             "lines": [{"code": "72265", "units": 1}]}
    bad = dict(claim, id="S0", placeOfService="1\ud8009")
    p.write_text(json.dumps(bad) + "\n" + json.dumps(claim) + "\n")
    res = run_claims([p], engine=engine)
    assert [r["status"] for r in res] == ["error", "violation"], res
    assert res[0]["error"]["field"] == "placeOfService" and "surrogate" in res[0]["error"]["error"]
    assert res[1]["findings"][0]["focus"].startswith("https://w3id.org/cptkg/data/my%20claims%20%C3%BC/")


def test_bytes_that_are_not_utf8_are_errors_of_their_record(tmp_path):
    """A Latin-1 byte (a payer's Windows export) is an input error naming the file, line and field of
    the record it is in; the file's other records are validated (it once stopped the whole run)."""
    from reasoner.inputs import read_records
    from harness import engine

    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes((CSV_HEAD + "A,1,62273,1,,2024-01-02,11,professional\n"
                          "B,1,77003,1,,2024-01-02,11,professional\n"
                          "B,2,20610,1,,2024-01-02,11,caf\xe9\n"
                          "C\xe9,1,20610,1,,2024-01-02,11,professional\n"
                          "D,1,20610,1,,2024-01-02,11,professional\n").encode("latin-1"))
    res = run_claims([csv_path])
    assert [(r["claim"], r["status"]) for r in res] == [
        ("A", "conforms"), ("B", "error"), ("C\ufffd", "error"), ("D", "conforms")]
    assert (res[1]["error"]["line"], res[1]["error"]["field"]) == (4, "claim_type")
    assert "byte 0xE9" in res[1]["error"]["error"] and res[2]["error"]["field"] == "claim_id"
    records = list(read_records(csv_path, "claim", engine()[0].content.context))  # the non-streaming reader
    assert [r.error is None for r in records] == [True, False, False, True]
    nd = tmp_path / "claims.ndjson"
    good = {"resourceType": "Claim", "id": "N1", "type": {"coding": [{"code": "professional"}]},
            "billablePeriod": {"start": "2024-01-02"},
            "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "77003"}]}}]}
    nd.write_bytes(json.dumps(dict(good, id="N\xe9"), ensure_ascii=False).encode("utf-8").replace(b"\xc3\xa9", b"\xe9")
                   + b"\n" + json.dumps(good).encode() + b"\n")
    jl = tmp_path / "claims.jsonl"
    jl.write_bytes(b'{"id": "J\xe9", "lines": [{"code": "77003"}]}\n{"id": "J2", "lines": [{"code": "77003"}]}\n')
    for path in (nd, jl):
        res = run_claims([path])
        assert [r["status"] for r in res] == ["error", "violation"], (path.name, res)
        assert res[0]["error"]["line"] == 1 and "not UTF-8" in res[0]["error"]["error"]


def test_json_document_records_carry_the_line_they_start_on(tmp_path):
    """A JSON document's claims (read item by item) carry the line each starts on, in results and
    in the input errors of their fields, as JSON Lines records do."""
    doc = tmp_path / "claims.json"
    good = {"id": "J1", "dateOfService": "2024-01-02", "placeOfService": "11", "claimType": "professional",
            "lines": [{"line": 1, "code": "77003", "units": 1}]}
    bad = dict(good, id="J2", lines=[{"line": 1, "code": "77003", "units": "two"}])
    text = '{\n  "claims": [\n' + json.dumps(good, indent=2) + ",\n" + json.dumps(bad, indent=2) + "\n  ]\n}\n"
    doc.write_text(text)
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith("{") and i > 0]
    res = run_claims([doc])
    assert [r["claim"] for r in res] == ["J1", "J2"] and [r["status"] for r in res] == ["violation", "error"]
    assert len(starts) == 2 and [r["line"] for r in res] == starts
    assert res[1]["error"]["field"] and res[1]["error"]["line"] == starts[1]
    jl = tmp_path / "claims.jsonl"
    jl.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    res = run_claims([jl])
    assert [r["line"] for r in res] == [1, 2] and res[1]["error"]["line"] == 2
