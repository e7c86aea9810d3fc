"""Validation benchmark: N claims from a seed (reasoner/synth.py: correct claims and every kind of
injected error), the fast engine on all of them and the reference engine (pySHACL) on a sample, in
the same run. Prints claims per second for each engine, the ratio, peak memory, and whether the
two engines agree on the sample. Run on demand:

    python bench/bench_validate.py --n 100000            # fast on 100,000, reference on 1,000
    python bench/bench_validate.py --scaling 500,1000,2000   # batch-size scaling, with and without
                                                             # the NOT EXISTS -> MINUS rewrites

Timings are split: "input" is turning claim JSON into records (rdflib JSON-LD, the same for both
engines), "engine" is validate() on those records.
"""
import argparse
import itertools
import json
import logging
import random
import re
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def records_for(claims, kb, file="bench.json"):
    from reasoner.inputs import record_from_object

    out = []
    for i, c in enumerate(claims):
        rec = record_from_object(c, "claim", kb.content.context, file=file, index=i)
        if rec.error is None:
            out.append(rec)
    return out


def canonical(finding, concat, limit):
    f = dict(finding)
    if f["shape"] in concat:
        f["message"] = sorted(re.split(r"[\s,]+", f["message"]))
    if f["shape"] in limit:
        f["message"] = None
    return json.dumps(f, sort_keys=True)


def unspecified(kb):
    from reasoner.validate import shapes_graph
    from reasoner.vocab import SH

    sg = shapes_graph(kb.content, "coding")
    concat, limit = set(), set()
    for shape, c in sg.subject_objects(SH.sparql):
        text = str(sg.value(c, SH.select)).upper()
        name = str(shape).rsplit("/", 1)[-1]
        if "GROUP_CONCAT" in text:
            concat.add(name)
        if re.search(r"\bLIMIT\b", text) and "ORDER BY" not in text:
            limit.add(name)
    return concat, limit


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="claims for the fast engine")
    ap.add_argument("--sample", type=int, default=1000, help="claims (of the N) for the reference engine")
    ap.add_argument("--batch", type=int, default=5000, help="claims per fast-engine batch")
    ap.add_argument("--ref-chunk", type=int, default=250, help="claims per reference-engine batch")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scaling", help="comma-separated batch sizes: time the fast engine per batch size, "
                                      "with and without the query rewrites, and stop")
    ap.add_argument("--plain-max", type=int, default=4000, help="with --scaling: largest batch to time without "
                                                              "the rewrites (it grows with the square)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # rdflib logs each ill-typed literal of the malformed claims

    from reasoner.content import discover
    from reasoner.fast import FastValidator
    from reasoner.kb import load
    from reasoner.synth import iter_claims
    from reasoner.validate import ClaimValidator

    kb = load(discover(ROOT))
    if args.scaling:
        scaling(kb, [int(x) for x in args.scaling.split(",")], args.seed, args.plain_max)
        return

    sample_idx = set(random.Random(args.seed).sample(range(args.n), min(args.sample, args.n)))
    stream = iter_claims(kb, args.n, seed=args.seed)  # streamed: a batch at a time in memory
    sample = []
    sample_ids = set()

    fast = FastValidator(kb)
    t_input = t_engine = 0.0
    fast_sample = []
    n_findings = 0
    for start in range(0, args.n, args.batch):
        batch = list(itertools.islice(stream, args.batch))
        for i, c in enumerate(batch, start):
            if i in sample_idx:
                sample.append(c)
                sample_ids.add(c["id"])
        t = time.time()
        records = records_for(batch, kb)
        t_input += time.time() - t
        t = time.time()
        findings, _ = fast.validate(records)
        t_engine += time.time() - t
        n_findings += len(findings)
        fast_sample.extend(f for f in findings if f["claim"] in sample_ids)
        done = start + len(records)
        print(f"\r  fast: {done}/{args.n} claims, {done / t_engine:,.0f} claims/s (engine)", end="", flush=True)
    print()
    fast_peak = peak_mb()

    reference = ClaimValidator(kb)
    t_ref_input = t_ref = 0.0
    ref_findings = []
    for start in range(0, len(sample), args.ref_chunk):
        t = time.time()
        records = records_for(sample[start:start + args.ref_chunk], kb)
        t_ref_input += time.time() - t
        t = time.time()
        ref_findings.extend(reference.validate(records)[0])
        t_ref += time.time() - t
        done = start + len(records)
        print(f"\r  reference: {done}/{len(sample)} claims, {done / t_ref:,.1f} claims/s", end="", flush=True)
    print()

    st = fast.stats
    concat, limit = unspecified(kb)
    same = Counter(canonical(f, concat, limit) for f in fast_sample) == Counter(
        canonical(f, concat, limit) for f in ref_findings)
    fast_rate = args.n / t_engine
    ref_rate = len(sample) / t_ref
    input_rate = args.n / t_input
    print(f"""
claims                 fast {args.n:,} (batches of {args.batch}), reference {len(sample):,} (batches of {args.ref_chunk})
findings               fast {n_findings:,}; on the sample fast {len(fast_sample):,}, reference {len(ref_findings):,}
identical on sample    {same}
input (JSON -> RDF)    {input_rate:,.0f} claims/s (rdflib JSON-LD, the same for both engines)
fast engine            {fast_rate:,.0f} claims/s   ({t_engine:.1f} s), of which
  compiled SPARQL      {st["fast_claims"] / st["fast_seconds"]:,.0f} claims/s on {st["fast_claims"]:,} claims ({st["fast_seconds"]:.1f} s)
  handed to pySHACL    {st["reference_claims"]:,} claims ({st["reference_seconds"]:.1f} s): a literal the two SPARQL
                       engines read differently (an ill-typed date), see FastValidator.split
reference engine       {ref_rate:,.2f} claims/s   ({t_ref:.1f} s)
ratio fast/reference   {fast_rate / ref_rate:,.0f}x (engine), {
        st["fast_claims"] / st["fast_seconds"] / ref_rate:,.0f}x (compiled SPARQL alone); end to end with input: {
        (args.n / (t_engine + t_input)) / (len(sample) / (t_ref + t_ref_input)):,.0f}x
peak memory (RSS)      {fast_peak:,.0f} MB after the fast run, {peak_mb():,.0f} MB at the end""")


if __name__ == "__main__":
    main()
