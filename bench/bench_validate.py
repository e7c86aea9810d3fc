"""Validation benchmark: N claims from a seed (reasoner/synth.py: correct claims and every kind of
injected error), written to a JSON Lines file, then validated through the streaming pipeline that
`cptkg validate FILE --out findings.jsonl` runs (reading, checking, validating on every core,
writing): the fast engine on all N, the reference engine (pySHACL) on a seeded sample, in the same
run. Prints claims per second end to end, the peak memory of the whole process tree (proportional set size)
(main process and workers, sampled from /proc), the ratio, and whether the two engines give the
same results on the sample. Run on demand:

    python bench/bench_validate.py --n 1000000           # fast on 1,000,000, reference on 1,000
    python bench/bench_validate.py --scaling 500,1000,2000   # the fast engine alone per batch size,
                                                             # with and without the query rewrites
    python bench/bench_validate.py --n 20000 --ptp-edits 90000   # with a full-size edit table

Results are compared claim by claim (status, every finding), allowing only what SPARQL leaves
unspecified (the order of a GROUP_CONCAT list, the row a LIMIT without ORDER BY keeps).
"""
import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def records_for(claims, kb, file="bench.json"):
    from reasoner.inputs import record_from_object

    out = []
    for i, c in enumerate(claims):
        rec = record_from_object(c, "claim", kb.content.context, file=file, index=i)
        if rec.error is None:
            out.append(rec)
    return out


def scaling(kb, sizes, seed, plain_max):
    from reasoner.fast import Engine, FastValidator
    from reasoner.synth import generate_claims

    claims = generate_claims(kb, max(sizes) * 11 // 10, seed=seed)
    records, handed = FastValidator(kb).split(records_for(claims, kb))
    print(f"  (the {len(handed)} claims the fast engine hands to pySHACL are left out: this times the "
          f"compiled SPARQL alone)")
    for rewrite in (True, False):
        v = FastValidator(kb)
        if not rewrite:
            v.engine = Engine(v.sg, rewrite=False)
            v.engine.load_base(kb.graph)
        for n in sizes:
            if not rewrite and n > plain_max:
                continue
            t = time.time()
            v.validate(records[:n])
            dt = time.time() - t
            print(f"  rewrites {'on ' if rewrite else 'off'}  batch {n:6d}: {dt:7.2f} s  "
                  f"{dt / n * 1e6:8.0f} us/claim", flush=True)


def write_claims(kb, n, seed, path, sample_idx, sample_path):
    from reasoner.synth import iter_claims

    with open(path, "w") as fh, open(sample_path, "w") as sh:
        for i, c in enumerate(iter_claims(kb, n, seed=seed)):
            text = json.dumps(c) + "\n"
            fh.write(text)
            if i in sample_idx:
                sh.write(text)


def canonical_result(r, unspecified):
    from reasoner.validate import finding_key

    r = dict(r)
    r.pop("file", None)
    r.pop("line", None)
    if "error" in r:  # where in which file: the sample is a file of its own
        r["error"] = {k: v for k, v in r["error"].items() if k not in ("file", "line")}
    # the two files have different names, so their IRIs differ in the file part only
    r["findings"] = sorted(finding_key(dict(f, file=None, focus=f["focus"].rsplit("/", 1)[-1]), unspecified)
                           for f in r.get("findings", []))
    return json.dumps(r, sort_keys=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="claims for the fast engine")
    ap.add_argument("--sample", type=int, default=1000, help="claims (of the N) for the reference engine")
    ap.add_argument("--chunk", type=int, default=None, help="claims per chunk (default: the CLI's)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: every core)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", help="where to write the claims and results (default: a temporary folder)")
    ap.add_argument("--scaling", help="comma-separated batch sizes: time the fast engine per batch size, "
                                      "with and without the query rewrites, and stop")
    ap.add_argument("--ptp-edits", type=int, default=0,
                    help="first import a synthetic PTP table of about this many edits, all naming codes of "
                         "the graph (what --scope kb keeps of a real table), into a copy of the content")
    ap.add_argument("--plain-max", type=int, default=4000, help="with --scaling: largest batch to time without "
                                                              "the rewrites (it grows with the square)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from pipeline import run_pipeline
    from reasoner.cli import DEFAULT_VALIDATE_CHUNK
    from reasoner.content import discover
    from reasoner.kb import load

    root = ROOT
    kb = load(discover(root))
    work = Path(args.dir or tempfile.mkdtemp(prefix="cptkg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.ptp_edits:
        from ncci_import import content_with_ptp

        t = time.time()
        root, edits = content_with_ptp(work, kb, args.ptp_edits)
        kb = load(discover(root))
        print(f"imported a synthetic kb-scoped PTP table of {edits:,} edits; the graph holds {len(kb.graph):,} "
              f"triples ({time.time() - t:.0f} s with loading it)", flush=True)
    if args.scaling:
        scaling(kb, [int(x) for x in args.scaling.split(",")], args.seed, args.plain_max)
        return
    chunk = args.chunk or DEFAULT_VALIDATE_CHUNK
    claims, sample = work / "claims.jsonl", work / "sample.jsonl"
    sample_idx = set(random.Random(args.seed).sample(range(args.n), min(args.sample, args.n)))
    t = time.time()
    write_claims(kb, args.n, args.seed, claims, sample_idx, sample)
    print(f"wrote {args.n:,} claims to {claims} in {time.time() - t:.0f}s", flush=True)

    fast_s, fast_mb, fast_tot = run_pipeline("claim", claims, work / "fast.jsonl", root=root, engine="fast",
                                             jobs=args.jobs, chunk=chunk)
    print(f"fast: {args.n:,} claims in {fast_s:.1f}s", flush=True)
    ref_s, ref_mb, ref_tot = run_pipeline("claim", sample, work / "reference.jsonl", root=root,
                                          engine="reference", jobs=args.jobs, chunk=50)
    print(f"reference: {len(sample_idx):,} claims in {ref_s:.1f}s", flush=True)

    from reasoner.validate import shapes_graph, unspecified_shapes

    unspecified = unspecified_shapes(shapes_graph(kb.content, "coding"))
    ref = {}
    with open(work / "reference.jsonl") as fh:
        for text in fh:
            r = json.loads(text)
            ref[r["claim"]] = canonical_result(r, unspecified)
    same = 0
    with open(work / "fast.jsonl") as fh:
        for text in fh:
            r = json.loads(text)
            if r["claim"] in ref:
                same += ref[r["claim"]] == canonical_result(r, unspecified)
    fast_rate, ref_rate = args.n / fast_s, len(ref) / ref_s
    s = fast_tot["summary"]
    print(f"""
claims                 fast {args.n:,}, reference {len(ref):,} (a seeded sample of the same claims)
knowledge graph        {len(kb.graph):,} triples{f" (with {edits:,} imported PTP edits)" if args.ptp_edits else ""}
pipeline               JSON Lines in, findings JSON Lines out, {args.jobs} worker processes, chunks of {chunk}
results                {s["claims"]:,} claims: {s["findings"]:,} findings, {s["errors"]:,} input errors
identical on sample    {same:,} of {len(ref):,} claims {"(all)" if same == len(ref) else "(DIFFER)"}
fast engine            {fast_rate:,.0f} claims/s end to end ({fast_s:.1f} s); peak memory {fast_mb[0]:,.0f} MB (process tree, proportional: a page shared by processes counted once; resident sum {fast_mb[1]:,.0f} MB)
reference engine       {ref_rate:,.1f} claims/s end to end ({ref_s:.1f} s); peak memory {ref_mb[0]:,.0f} MB
ratio fast/reference   {fast_rate / ref_rate:,.0f}x
1,000,000 claims       {1_000_000 / fast_rate:,.0f} s at this rate (target: 120 s, under 1 GB)""")


if __name__ == "__main__":
    main()
