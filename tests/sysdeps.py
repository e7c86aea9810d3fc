"""Programs from Debian's packages that some tests need (Chromium, Virtuoso): installed on demand when
the tests run as root with apt-get (as `.ci/run` does), otherwise the test is skipped with the reason."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def debian_packages(binary, packages):
    """Return when `binary` is on PATH, installing `packages` with apt-get if it is not and we are root;
    otherwise skip the calling test, printing why."""
    if shutil.which(binary):
        return
    why = None
    if not shutil.which("apt-get"):
        why = "no apt-get on this machine"
    elif os.geteuid() != 0:
        why = "not root, so cannot apt-get install"
    else:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        policy = Path("/usr/sbin/policy-rc.d")
        own_policy = not policy.exists()
        try:
            if own_policy:  # no package may start its service while installed
                policy.write_text("#!/bin/sh\nexit 101\n")
                policy.chmod(0o755)
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True,
                           timeout=1200, check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            why = f"`apt-get install {' '.join(packages)}` failed: {exc}"
        finally:
            if own_policy:
                policy.unlink(missing_ok=True)
    if why is None and shutil.which(binary):
        return
    reason = f"{binary} is not available: {why or 'still missing after installing ' + ' '.join(packages)}"
    print(f"\nSKIPPED: {reason}", file=sys.stderr)
    pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Virtuoso:
    """A private Virtuoso Open Source instance on loopback ports, in a folder of its own
    (shared/design/external-sparql-store.md tells how the Debian package is configured)."""

    def __init__(self, folder, load_dir):
        self.folder = Path(folder)
        self.load_dir = Path(load_dir)
        self.isql_port = free_port()
        self.http_port = free_port()
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.http_port}/sparql"

    def configure(self):
        ini = Path("/etc/virtuoso-opensource-7/virtuoso.ini").read_text()
        f = self.folder
        out, section = [], None
        settings = {
            "Database": {"DatabaseFile": f / "virtuoso.db", "ErrorLogFile": f / "virtuoso.log",
                         "LockFile": f / "virtuoso.lck", "TransactionFile": f / "virtuoso.trx",
                         "xa_persistent_file": f / "virtuoso.pxa"},
            "TempDatabase": {"DatabaseFile": f / "virtuoso-temp.db", "TransactionFile": f / "virtuoso-temp.trx"},
            "Parameters": {"ServerPort": f"127.0.0.1:{self.isql_port}",
                           "DirsAllowed": f"., /usr/share/virtuoso-opensource-7/vad, {self.load_dir}",
                           "NumberOfBuffers": "20000", "MaxDirtyBuffers": "15000"},
            "HTTPServer": {"ServerPort": f"127.0.0.1:{self.http_port}", "ServerRoot": f,
                           "DefaultMailServer": "127.0.0.1:25"},
            "URIQA": {"DefaultHost": f"127.0.0.1:{self.http_port}"},
            "Replication": {"ServerEnable": "0"},
            "Zero Config": {"ServerName": None},  # no zeroconf announcement on the network
            "SPARQL": {"ResultSetMaxRows": "100000"},
        }
        for line in ini.splitlines():
            m = re.match(r"\s*\[(.+)\]\s*$", line)
            if m:
                section = m.group(1)
            else:
                m = re.match(r"\s*([A-Za-z_]\w*)\s*=", line)
                if m and section in settings and m.group(1) in settings[section]:
                    value = settings[section][m.group(1)]
                    if value is None:
                        continue
                    line = f"{m.group(1)} = {value}"
            out.append(line)
        (f / "virtuoso.ini").write_text("\n".join(out) + "\n")

    def start(self, timeout=90):
        self.configure()
        self.proc = subprocess.Popen(["virtuoso-t", "+configfile", str(self.folder / "virtuoso.ini"), "+foreground"],
                                     cwd=self.folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        import urllib.request

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"virtuoso-t exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.endpoint + "?query=ASK%7B%7D", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Virtuoso did not answer in {timeout} s: {self.log_tail()}")

    def isql(self, sql, timeout=600):
        r = subprocess.run(["isql-vt", f"127.0.0.1:{self.isql_port}", "dba", "dba", f"exec={sql}"],
                           capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if r.returncode != 0 or "*** Error" in r.stdout + r.stderr:
            raise RuntimeError(f"isql failed: {r.stdout[-1500:]} {r.stderr[-1500:]}")
        return r.stdout

    def bulk_load(self):
        self.isql(f"ld_dir('{self.load_dir}', '*.nq', 'urn:cptkg:default'); rdf_loader_run(); checkpoint;")
        out = self.isql("SELECT ll_file, ll_state, ll_error FROM DB.DBA.load_list;")
        if "NULL" not in out.split("ll_error", 1)[-1] and re.search(r"\berror\b", out, re.I):
            raise RuntimeError(f"bulk load reported an error: {out[-1500:]}")
        return out

    def log_tail(self):
        log = self.folder / "virtuoso.log"
        return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
