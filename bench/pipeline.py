"""Shared by the benchmarks: run the streaming pipeline (reasoner/batch.py, what `cptkg validate
--out` and `cptkg derive --out` run) on a file, timing it and sampling the resident memory of the
whole process tree (the main process and its workers) from /proc."""
import os
import threading
import time
from pathlib import Path


def tree_rss_mb(pid=None):
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    pid = pid or os.getpid()
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
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
        todo.extend(children.get(p, ()))
    return total / 1024


class MemorySampler:
    """Peak of tree_rss_mb, sampled every `every` seconds while the with-block runs."""

    def __init__(self, every=0.25):
        self.every, self.peak, self._stop = every, 0.0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb())
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_mb())


def run_pipeline(kind, path: Path, out: Path, *, root, engine, jobs, chunk):
    """(seconds, peak MB of the process tree, totals) for one streaming run."""
    from reasoner import batch

    sink = batch.JsonlSink(out)
    with MemorySampler() as mem:
        t0 = time.time()
        try:
            totals = batch.run(kind, [str(path)], root=root, engine=engine, jobs=jobs, chunk=chunk, sink=sink)
        finally:
            sink.close()
        seconds = time.time() - t0
    return seconds, mem.peak, totals
