"""Load on `cptkg serve`, on loopback only: throughput, latency percentiles and errors.

    python bench/bench_serve.py                      # 10,000 encounters loaded; 10,000 queries from 8 clients
    python bench/bench_serve.py --encounters 1000 --requests 2000 --clients 4

Phases (each bounded in count and in time, --max-seconds):
  front/point   SELECT ?p ?o WHERE { <one encounter or act> ?p ?o } through the front (/sparql)
  front/named   GET /queries/primaries-for-add-on?addon=...&date=... (a report, bound as `cptkg query` binds it)
  engine/point  the same point queries sent straight to `oxigraph serve-read-only` on the same store,
  engine/named  and the same bound report: what the front costs on top of the engine
Every client keeps one HTTP/1.1 connection open, as SPARQLWrapper or a notebook session does.
The server and the engine are started here and stopped at the end.
"""
from __future__ import annotations

import argparse
import copy
import http.client
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADDONS = ["77001", "77002", "77003", "76937", "77012", "77021", "76942"]
DATES = ["2015-06-01", "2019-06-01", "2021-06-01", "2024-06-01", "2026-01-01"]


def make_encounters(n, path):
    """n encounters: copies of the bundled examples under new ids."""
    doc = json.loads((ROOT / "examples" / "encounters.json").read_text())
    base = doc["encounters"]
    out = []
    for i in range(n):
        enc = base[i % len(base)]
        old, new = enc["id"], f"{enc['id']}-{i}"
        out.append(json.loads(json.dumps(copy.deepcopy(enc)).replace(f'"{old}', f'"{new}')))
    path.write_text(json.dumps({"@context": str(ROOT / "ontology" / "context.jsonld"), "encounters": out}))
    return [e["id"] for e in out]


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def run_phase(name, host, port, make_request, requests, clients, max_seconds):
    """`make_request(rng)` -> (method, path, body, headers). Returns a result row."""
    latencies, errors, statuses = [], [], {}
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def client(i):
        rng = random.Random(i)
        conn = http.client.HTTPConnection(host, port, timeout=60)
        mine, bad = [], []
        for _ in range(per_client[i]):
            if time.monotonic() > deadline:
                break
            method, path, body, headers = make_request(rng)
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            mine.append(time.perf_counter() - t0)
            if status != 200:
                bad.append(status)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)
            for s in bad:
                statuses[s] = statuses.get(s, 0) + 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max_seconds + 60)
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {"phase": name, "requests": len(latencies), "errors": len(errors), "errorStatuses": statuses,
            "seconds": round(wall, 2), "qps": round(len(latencies) / wall, 1) if wall else 0,
            "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None,
            "mean_ms": round(statistics.fmean(ms), 2) if ms else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encounters", type=int, default=10000, help="encounters loaded beside the graph (default 10000)")
    ap.add_argument("--requests", type=int, default=10000, help="point queries per target (default 10000)")
    ap.add_argument("--named", type=int, default=1000, help="named-report requests per target (default 1000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--max-seconds", type=float, default=300, help="time bound of each phase (default 300)")
    ap.add_argument("--target", choices=("front", "engine", "both"), default="both")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    from reasoner.content import discover
    from reasoner.kb import load
    from reasoner.query import bind_params
    from reasoner.serve import Engine, build_store, spawn, stop_spawned
    from reasoner.vocab import DATA

    tmp = Path(tempfile.mkdtemp(prefix="cptkg-bench-"))
    data = tmp / "encounters.json"
    ids = make_encounters(args.encounters, data)
    acts = [f"{DATA}encounters/{i}" for i in ids]
    report = discover(ROOT).report("primaries-for-add-on")

    def point_query(rng):
        return f"SELECT ?p ?o WHERE {{ <{rng.choice(acts)}> ?p ?o }}"

    def named_params(rng):
        return {"addon": rng.choice(ADDONS), "date": rng.choice(DATES)}

    results = []
    accept = {"Accept": "application/sparql-results+json"}
    if args.target in ("front", "both"):
        t0 = time.monotonic()
        proc, url = spawn(["--quiet", "--max-concurrent", str(max(8, args.clients * 2)), str(data)], timeout=1800)
        print(f"front: {url} started in {time.monotonic() - t0:.1f} s with {args.encounters} encounters", flush=True)
        u = urlsplit(url)
        try:
            results.append(run_phase("front/point", u.hostname, u.port,
                                     lambda rng: ("GET", "/sparql?" + urlencode({"query": point_query(rng)}), None, accept),
                                     args.requests, args.clients, args.max_seconds))
            print(results[-1], flush=True)
            results.append(run_phase("front/named", u.hostname, u.port,
                                     lambda rng: ("GET", "/queries/primaries-for-add-on?" + urlencode(named_params(rng)),
                                                  None, accept),
                                     args.named, args.clients, args.max_seconds))
            print(results[-1], flush=True)
        finally:
            stop_spawned(proc)
    if args.target in ("engine", "both"):
        kb = load(discover(ROOT))
        t0 = time.monotonic()
        build_store(kb, [data], tmp / "store")
        engine = Engine(tmp / "store", timeout=10, memory_mb=4096)
        engine.start()
        print(f"engine: 127.0.0.1:{engine.port} started in {time.monotonic() - t0:.1f} s", flush=True)
        try:
            results.append(run_phase("engine/point", "127.0.0.1", engine.port,
                                     lambda rng: ("GET", "/query?" + urlencode({"query": point_query(rng)}), None, accept),
                                     args.requests, args.clients, args.max_seconds))
            print(results[-1], flush=True)
            results.append(run_phase("engine/named", "127.0.0.1", engine.port,
                                     lambda rng: ("GET", "/query?" + urlencode({"query": bind_params(report, named_params(rng))}),
                                                  None, accept),
                                     args.named, args.clients, args.max_seconds))
            print(results[-1], flush=True)
        finally:
            engine.stop()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.clients} clients, {args.encounters} encounters loaded")
    print(f"{'phase':14} {'requests':>8} {'errors':>6} {'q/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in results:
        print(f"{r['phase']:14} {r['requests']:8d} {r['errors']:6d} {r['qps']:8.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['max_ms']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
