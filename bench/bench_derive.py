"""Derivation benchmark: N described encounters from a seed, written to a JSON Lines file, then
derived through the streaming pipeline that `cptkg derive FILE --out codes.jsonl` runs (reading,
input checks, derivation with provenance, summaries, on every core): the fast engine on all N,
the reference engine on a seeded sample, in the same run. Prints encounters per second end to
end, the peak memory of the process tree (proportional set size), the ratio, and whether both engines give the
same record for every encounter of the sample. Run on demand: python bench/bench_derive.py --n 100000
(--ptp-edits N: with a synthetic full-size edit table imported first, as bench_validate.py).

The encounters are the derive test cases (tests/cases/derive, without overlays) replicated with
fresh ids, drawn from the seed, so every rule is exercised in proportion to the cases.
"""
import argparse
import json
import logging
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def synth_encounters(n, seed):
    """Yield n encounter dicts built from the derive cases (no overlays), with new ids."""
    rng = random.Random(seed)
    templates = []
    for p in sorted((ROOT / "tests" / "cases" / "derive").glob("*.json")):
        case = json.loads(p.read_text())
        if not case.get("overlays"):
            templates.append(case["encounter"])
    for i in range(n):
        t = json.loads(json.dumps(rng.choice(templates)))
        old = t["id"]
        new = f"bench-{i}"
        text = json.dumps(t).replace(f'"{old}-', f'"{new}-').replace(f'"{old}"', f'"{new}"')
        yield json.loads(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sample", type=int, default=200, help="encounters (of the N) for the reference engine")
    ap.add_argument("--chunk", type=int, default=None, help="encounters per chunk (default: the CLI's)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: every core)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", help="where to write the encounters and results (default: a temporary folder)")
    ap.add_argument("--ptp-edits", type=int, default=0,
                    help="first import a synthetic PTP table of about this many edits, all naming codes of "
                         "the graph (what --scope kb keeps of a real table), into a copy of the content")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from pipeline import run_pipeline
    from reasoner.cli import build_parser

    chunk = args.chunk or build_parser().parse_args(["derive", "x.json"]).chunk
    work = Path(args.dir or tempfile.mkdtemp(prefix="cptkg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root, kb_note = ROOT, ""
    if args.ptp_edits:
        from ncci_import import content_with_ptp
        from reasoner.content import discover
        from reasoner.kb import load

        root, edits = content_with_ptp(work, load(discover(ROOT)), args.ptp_edits)
        kb_note = f"\nknowledge graph        with {edits:,} imported PTP edits (synthetic, scope kb)"
        print(f"imported a synthetic kb-scoped PTP table of {edits:,} edits", flush=True)
    data, sample = work / "encounters.jsonl", work / "sample.jsonl"
    pick = set(random.Random(args.seed).sample(range(args.n), min(args.sample, args.n)))
    with open(data, "w") as fh, open(sample, "w") as sh:
        for i, e in enumerate(synth_encounters(args.n, args.seed)):
            text = json.dumps(e) + "\n"
            fh.write(text)
            if i in pick:
                sh.write(text)

    fast_s, fast_mb, fast_tot = run_pipeline("encounter", data, work / "fast.jsonl", root=root, engine="fast",
                                             jobs=args.jobs, chunk=chunk)
    print(f"fast: {args.n:,} encounters in {fast_s:.1f}s", flush=True)
    ref_s, ref_mb, _ = run_pipeline("encounter", sample, work / "reference.jsonl", root=root, engine="reference",
                                    jobs=args.jobs, chunk=25)
    print(f"reference: {len(pick):,} encounters in {ref_s:.1f}s", flush=True)

    def canonical(text):
        r = json.loads(text)
        for key in ("file", "line"):
            r.pop(key, None)
        return r.get("id"), json.dumps(r, sort_keys=True)

    with open(work / "reference.jsonl") as fh:
        ref = dict(canonical(t) for t in fh)
    same = 0
    with open(work / "fast.jsonl") as fh:
        for t in fh:
            rid, c = canonical(t)
            same += ref.get(rid) == c
    fast_rate, ref_rate = args.n / fast_s, len(ref) / ref_s
    print(f"""
encounters             fast {args.n:,}, reference {len(ref):,} (a seeded sample of the same encounters){kb_note}
pipeline               JSON Lines in, derivations with provenance out, {args.jobs} worker processes, chunks of {chunk}
results                {fast_tot["records"]:,} records, {fast_tot["errors"]:,} input errors
identical on sample    {same:,} of {len(ref):,} encounters {"(all)" if same == len(ref) else "(DIFFER)"}
fast engine            {fast_rate:,.0f} encounters/s end to end ({fast_s:.1f} s); peak memory {fast_mb[0]:,.0f} MB (process tree, proportional: a page shared by processes counted once; resident sum {fast_mb[1]:,.0f} MB)
reference engine       {ref_rate:,.1f} encounters/s end to end ({ref_s:.1f} s); peak memory {ref_mb[0]:,.0f} MB
ratio fast/reference   {fast_rate / ref_rate:,.0f}x
1,000,000 encounters   {1_000_000 / fast_rate / 60:,.1f} min at this rate (target: 3 min)""")


if __name__ == "__main__":
    main()
