"""Derivation benchmark: N described encounters from a seed, the fast engine on all of them and
the reference engine on a sample, in the same run. Prints encounters per second, peak memory
and the ratio. Run on demand: python bench/bench_derive.py --n 100000

The encounters are the derive test cases (tests/cases/derive) replicated with fresh ids and
dates drawn from the seed, so every rule is exercised in proportion to the cases.
"""
import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sample", type=int, default=200, help="encounters for the reference engine")
    ap.add_argument("--batch", type=int, default=1000,
                    help="encounters per fast-engine batch (after the rule rewrites the time per encounter is about flat "
                         "from 500 to 5,000; at 50 the per-batch costs of each rule weigh)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from reasoner.content import discover
    from reasoner.fastderive import FastDeriver
    from reasoner.inputs import record_from_object
    from reasoner.kb import load
    from reasoner.render import summarize_encounter
    from reasoner.rules import Deriver

    kb = load(discover(ROOT))
    ctx = kb.content.context
    encounters = list(synth_encounters(args.n, args.seed))

    fast = FastDeriver(kb)
    t0 = time.time()
    done = 0
    for start in range(0, len(encounters), args.batch):
        recs = [record_from_object(e, "encounter", ctx, file="bench.json", index=i)
                for i, e in enumerate(encounters[start:start + args.batch])]
        out = fast.derive_many(recs)
        for rec in recs:
            summarize_encounter(kb, rec, out[rec.node])
        done += len(recs)
    fast_s = time.time() - t0
    fast_rate = done / fast_s

    ref = Deriver(kb)
    sample = encounters[: args.sample]
    t0 = time.time()
    for i, e in enumerate(sample):
        rec = record_from_object(e, "encounter", ctx, file="bench.json", index=i)
        summarize_encounter(kb, rec, ref.derive(rec.graph))
    ref_rate = len(sample) / (time.time() - t0)
    print(f"fast engine:      {done:,} encounters in {fast_s:.1f}s = {fast_rate:,.0f}/s per process "
          f"(batch {args.batch}, including reading and summarizing)")
    print(f"reference engine: {len(sample):,} encounters = {ref_rate:,.1f}/s")
    print(f"ratio fast/reference: {fast_rate / ref_rate:,.0f}x;  peak memory {peak_mb():,.0f} MB")
    print(f"projected for 1,000,000 encounters on 2 processes: {1_000_000 / (2 * fast_rate) / 60:.1f} min")


if __name__ == "__main__":
    main()
