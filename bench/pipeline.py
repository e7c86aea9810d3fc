"""Shared by the benchmarks: run the streaming pipeline (reasoner/batch.py, what `cptkg validate
--out` and `cptkg derive --out` run) on a file, timing it and sampling the memory of the
whole process tree (the main process and its workers) from /proc."""
import os
import threading
import time
from pathlib import Path


def _tree(pid):
    """A process and all its descendants (Linux /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _field_kb(path, name):
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def tree_memory_mb(pid=None, proportional=True):
    """(proportional, resident) memory of a process and all its descendants, in MB.

    The workers are forked from the main process after it has built the knowledge graph and the
    engine, and share those pages until they write them. The resident sizes (VmRSS) count a shared
    page once in every process; the proportional set size (Pss in smaps_rollup) divides it among
    them, so its sum is the memory the tree uses. Where smaps_rollup is missing, resident.
    Reading smaps_rollup walks the page tables (milliseconds a process): proportional=False
    reads only the resident sizes and gives them for both."""
    pss = rss = 0
    for p in _tree(pid or os.getpid()):
        r = _field_kb(f"/proc/{p}/status", "VmRSS:") or 0
        q = _field_kb(f"/proc/{p}/smaps_rollup", "Pss:") if proportional else None
        rss += r
        pss += r if q is None else q
    return pss / 1024, rss / 1024


class MemorySampler:
    """Peaks of tree_memory_mb (proportional: `peak`; resident: `peak_rss`) while the with-block
    runs: resident sizes every `every` seconds, proportional ones every `every_pss` (sampling them
    every quarter second took 8% of the validation benchmark's throughput on two cores)."""

    def __init__(self, every=0.25, every_pss=2.0):
        self.every, self.every_pss = every, every_pss
        self.peak, self.peak_rss, self._stop = 0.0, 0.0, threading.Event()

    def _sample(self, proportional=True):
        pss, rss = tree_memory_mb(proportional=proportional)
        if proportional:
            self.peak = max(self.peak, pss)
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self):
        last = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            due = now - last >= self.every_pss
            if due:
                last = now
            self._sample(proportional=due)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def run_pipeline(kind, path: Path, out: Path, *, root, engine, jobs, chunk):
    """(seconds, peak MB of the process tree (proportional, resident), totals) for one streaming run."""
    from reasoner import batch

    sink = batch.JsonlSink(out)
    with MemorySampler() as mem:
        t0 = time.time()
        try:
            totals = batch.run(kind, [str(path)], root=root, engine=engine, jobs=jobs, chunk=chunk, sink=sink)
        finally:
            sink.close()
        seconds = time.time() - t0
    return seconds, (mem.peak, mem.peak_rss), totals
