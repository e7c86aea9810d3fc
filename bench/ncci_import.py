"""Bench: `cptkg import ncci` on a synthetic full-size PTP TXT (about two million rows).

    python bench/ncci_import.py [ROWS] [--scope kb|all] [--keep]

Writes a PTP TXT in the published layout (the 6-line preamble, CRLF, Latin-1; codes, dates and
indicators only, no CPT text) into a temporary folder, imports it into a temporary copy of the
content root in a child process, and prints the rows, the time and the child's peak memory
(ru_maxrss). tests/test_import.py runs the same thing at full size.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "ncci"))
from make_fixtures import PTP_PREAMBLE as PREAMBLE  # noqa: E402  (the published layout, written once)

RATIONALES = ("CPT Manual or CMS manual coding instruction", "Mutually exclusive procedures",
              "Misuse of Column Two code with Column One code", "Standards of medical/surgical practice",
              "HCPCS/CPT procedure code definition")
PER_COLUMN1 = 100  # column-2 codes per column-1 code


def write_synthetic_ptp(path, rows):
    """A ccipra-style TXT with `rows` data rows, sorted by column 1 then column 2. Every tenth
    column-1 code also has 77002 in column 2 (a code of the graph), so scope kb keeps some rows."""
    path = Path(path)
    written = 0
    with open(path, "w", encoding="latin-1", newline="") as f:
        f.write("\r\n".join(PREAMBLE) + "\r\n")
        i = 0
        while written < rows:
            c1 = f"{10000 + i:05d}"
            col2 = {f"{30000 + (i * 7 + j * 131) % 60000:05d}" for j in range(PER_COLUMN1)}
            if i % 10 == 0:
                col2.add("77002")
            chunk = []
            for j, c2 in enumerate(sorted(col2)):
                if written >= rows:
                    break
                k = i + j
                pre = "*" if k % 17 == 0 else ""
                eff = "19960101" if pre else f"{2000 + k % 26}{1 + 3 * (k % 4):02d}01"
                mi = "019"[k % 3] if k % 11 else "9"
                dele = eff if mi == "9" else ("*" if k % 5 else f"{2000 + k % 26 + 1}1231")
                chunk.append(f"{c1}\t{c2}\t{pre}\t{eff}\t{dele}\t{mi}\t{RATIONALES[k % 5]}\r\n")
                written += 1
            f.write("".join(chunk))
            i += 1
    return path


def write_kb_scoped_ptp(path, codes, rows, seed=5, per_side=None):
    """A PTP TXT in the published layout whose rows all name a code of `codes` (the graph's own):
    what `--scope kb` keeps of a real table, where a guidance or injection code is paired with
    hundreds of others. About `rows` rows: each code with the same number of other codes in
    column 2 and in column 1, and a dozen pairs among the graph's codes; dated and with every
    modifier indicator, as the real table. Codes only, no CPT text."""
    import random

    rnd = random.Random(seed)
    codes = sorted(codes)
    per_side = per_side or max(1, rows // (2 * len(codes)))
    pool = sorted({f"{rnd.randint(10000, 99999)}" for _ in range(max(4 * per_side, 1000))} - set(codes))
    pairs = set()
    for k in codes:
        pairs.update((k, c2) for c2 in rnd.sample(pool, min(per_side, len(pool))))
        pairs.update((c1, k) for c1 in rnd.sample(pool, min(per_side, len(pool))))
        pairs.update((k, c2) for c2 in rnd.sample(codes, min(12, len(codes))) if c2 != k)
    with open(path, "w", encoding="latin-1", newline="") as f:
        f.write("\r\n".join(PREAMBLE) + "\r\n")
        for i, (c1, c2) in enumerate(sorted(pairs)):
            eff = f"{2008 + i % 17}{1 + 3 * (i % 4):02d}01"
            mi = "01"[i % 2] if i % 7 else "9"
            dele = eff if mi == "9" else ("*" if i % 6 else f"{2008 + i % 17 + 1}1231")
            f.write(f"{c1}\t{c2}\t\t{eff}\t{dele}\t{mi}\t{RATIONALES[i % 5]}\r\n")
    return len(pairs)


def content_with_ptp(target, kb, rows):
    """A copy of the content root with a kb-scoped synthetic PTP table of about `rows` edits
    imported (`cptkg import ncci`); returns (root, edits written)."""
    target = Path(target)
    root = copy_content(target / "content")
    codes = {str(r[0]) for r in kb.graph.query(
        "SELECT DISTINCT ?n WHERE { ?c a/rdfs:subClassOf* <https://w3id.org/cptkg/vocab#Code> ; "
        "<http://www.w3.org/2004/02/skos/core#notation> ?n }")}
    src = target / "ccipra-v323r0-f1.TXT"
    n = write_kb_scoped_ptp(src, codes, rows)
    rc, seconds, peak, out, err = run_import_child(root, [src], scope="kb")
    if rc != 0:
        raise RuntimeError(f"import failed ({rc}): {err or out}")
    return root, n


def copy_content(target):
    target = Path(target)
    for name in ("ontology", "queries", "shapes"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("generated"))
    return target


# The child's own peak: VmHWM from /proc (per address space). ru_maxrss is not used where /proc
# exists, because Linux carries the parent's high-water mark across exec into it (a child of a
# large pytest process would report the parent's peak).
CHILD = """
import resource, sys, time
from reasoner.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
try:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except OSError:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"BENCH rc={rc} seconds={time.perf_counter() - t:.2f} maxrss_kb={hwm}")
"""


def run_import_child(content_root, paths, quarter="2026Q4", scope="kb"):
    """Run the import in a fresh interpreter; return (returncode, seconds, peak MB, stdout, stderr)."""
    cmd = [sys.executable, "-c", CHILD, "--content", str(content_root), "import", "ncci", *map(str, paths),
           "--quarter", quarter, "--scope", scope]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    line = next((l for l in r.stdout.splitlines() if l.startswith("BENCH ")), "")
    fields = dict(kv.split("=") for kv in line.split()[1:]) if line else {}
    return (int(fields.get("rc", -1)), float(fields.get("seconds", "nan")),
            int(fields.get("maxrss_kb", 0)) / 1024, r.stdout, r.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="?", type=int, default=2_000_000)
    ap.add_argument("--scope", choices=("kb", "all"), default="kb")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cptkg-bench-ncci-"))
    try:
        t = time.perf_counter()
        src = write_synthetic_ptp(tmp / "ccipra-v323r0-f1.TXT", args.rows)
        print(f"generated {args.rows:,} rows ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        root = copy_content(tmp / "content")
        rc, seconds, peak, out, err = run_import_child(root, [src], scope=args.scope)
        print(out.rstrip())
        if err.strip():
            print(err.rstrip(), file=sys.stderr)
        print(f"import --scope {args.scope}: {args.rows:,} rows in {seconds:.1f} s "
              f"({args.rows / seconds:,.0f} rows/s), peak memory {peak:.0f} MB, exit {rc}")
        return rc
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
