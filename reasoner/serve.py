"""`cptkg serve`: a read-only SPARQL 1.1 endpoint over the knowledge graph, the named reports, a
web page, and /derive. `cptkg export` writes the same dataset as N-Quads for any other store.

Oxigraph's own server (`oxigraph serve-read-only`, from the `oxigraph` package) answers SPARQL on a
loopback port; it is the engine. A small front (the standard library's ThreadingHTTPServer) listens
on the public port and adds what an endpoint for analysts needs and Oxigraph's server does not do:

* read-only by refusal: SPARQL Update (INSERT, DELETE, LOAD, CLEAR ...) and SERVICE (federated
  query: Oxigraph would call the named endpoint) are refused with 403 and a message naming the
  keyword, before the engine sees the query;
* a result cap (rows of a SELECT, triples of a CONSTRUCT / DESCRIBE); a capped answer carries the
  headers `X-Cptkg-Truncated: true` and `X-Cptkg-Result-Cap: N`;
* a per-query time limit: Oxigraph cancels the query (`--timeout-s`), and a query that outlives the
  limit anyway (measured: ORDER BY over a large join ignores the cancellation and grows without bound)
  is stopped by restarting the engine on the same read-only store, which takes a few tens of
  milliseconds; the engine is also restarted when its resident memory passes a limit (polled
  twice a second; an address-space limit does not work: Oxigraph's server starts a thread per
  request and its virtual size passes 4 GiB at 8 concurrent clients while it uses 40 MB);
* content negotiation done once, here: the engine answers SELECT as TSV and CONSTRUCT / DESCRIBE as
  N-Triples, both one row per line, so the cap is exact; pyoxigraph (the same project's parsers
  and serializers) writes the format asked for: SPARQL JSON, XML, CSV, TSV; Turtle, N-Triples,
  JSON-LD, RDF/XML;
* CORS, an optional bearer token, `GET /queries` and `GET /queries/NAME?param=value` (the reports of
  queries/reports bound exactly as `cptkg query` binds them), `GET /code/NNNNN`, `POST /derive` and
  the web page at `/` (static files in reasoner/web/, nothing fetched from elsewhere).

Every ontology module is a named graph (`https://w3id.org/cptkg/graph/<module>`), as are the rule
triples and each data file given (`https://w3id.org/cptkg/graph/data/<file name>`); the default
graph of a query is their union, so the report queries run unchanged.

The front reads the engine's whole answer (up to the cap) before it writes, so a client never gets a
200 that ends in an error. The engine's own port is on loopback and has no token: the token and the
limits guard the front's port, not what other users of this machine can reach.
"""
from __future__ import annotations

import hmac
import html
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .errors import CptkgError
from .kb import GRAPH
from .vocab import PREFIXES

DATA_GRAPH = GRAPH + "data/"
WEB = Path(__file__).resolve().parent / "web"
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
CANCELLED = b"The SPARQL operation has been cancelled"

# --------------------------------------------------------------------------------------------
# The dataset: modules, rule triples and data files as named graphs


def data_graphs(kb, files):
    """[(graph IRI, rdflib Graph)] for each claim or encounter file, read as `cptkg query --data` reads it."""
    from rdflib import Graph, URIRef

    from .query import file_graph

    out, taken = [], set()
    for f in files:
        g = file_graph(kb, f)  # claims come with their validation findings
        name = base = quote(Path(f).name, safe="")
        n = 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        out.append((URIRef(DATA_GRAPH + name), g))
    return out


def write_nquads(kb, files, out):
    """Write the knowledge graph (a named graph per module, and the rule triples) plus the data
    files (a named graph each) as N-Quads to a binary file. Returns (quads, graphs)."""
    from rdflib import Dataset

    ds = Dataset()
    graphs = 0
    for ctx in kb.dataset.graphs():
        if len(ctx) == 0:
            continue
        target = ds.graph(ctx.identifier)
        for t in ctx:
            target.add(t)
        graphs += 1
    for name, g in data_graphs(kb, files):
        target = ds.graph(name)
        for t in g:
            target.add(t)
        graphs += 1
    data = ds.serialize(format="nquads", encoding="utf-8").rstrip(b"\n") + b"\n"
    out.write(data)
    return data.count(b"\n"), graphs


# --------------------------------------------------------------------------------------------
# Reading a query: its form, and whether it asks for something a read-only endpoint refuses

_CODEPOINT = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
# Strings, IRIs and comments, blanked before looking for keywords (IRIREF per the SPARQL grammar:
# no space, so `?a < ?b` is never read as an IRI).
_OPAQUE = re.compile("|".join((
    r'"""(?:[^"\\]|\\.|"(?!""))*"""',
    r"'''(?:[^'\\]|\\.|'(?!''))*'''",
    r'"(?:[^"\\\n\r]|\\.)*"',
    r"'(?:[^'\\\n\r]|\\.)*'",
    r'<[^<>"{}|^`\\\x00-\x20]*>',
    r"#[^\n\r]*",
)), re.S)
_KW = r"(?<![\w:?$@\-])({})(?![\w:\-])"
_FORM = re.compile(_KW.format("SELECT|CONSTRUCT|DESCRIBE|ASK"), re.I)
_UPDATE = re.compile(_KW.format("INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD|WITH"), re.I)
_SERVICE = re.compile(_KW.format("SERVICE"), re.I)


class Refused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _unescape(text):
    def rep(m):
        try:
            return chr(int(m.group(1) or m.group(2), 16))
        except (ValueError, OverflowError):
            return m.group(0)
    return _CODEPOINT.sub(rep, text)


def query_form(text):
    """SELECT, CONSTRUCT, DESCRIBE or ASK (None when not found); raises Refused for an update or SERVICE.

    The text is read twice, as written and with its codepoint escapes (\\u0053ERVICE) undone, as
    the SPARQL grammar allows an engine to do: a keyword seen either way is refused. The engine's
    own parser stays the judge of syntax: this only finds keywords outside strings, IRIs and comments.
    """
    form = None
    for variant in (text, _unescape(text)):
        bare = _OPAQUE.sub(" ", variant)
        m = _UPDATE.search(bare)
        if m:
            raise Refused(403, f"this endpoint is read-only: SPARQL Update ({m.group(1).upper()}) is refused; "
                               "send a query (SELECT, ASK, CONSTRUCT or DESCRIBE)")
        if _SERVICE.search(bare):
            raise Refused(403, "SERVICE is refused: this endpoint does not query other endpoints "
                               "(federated queries are off); query the data loaded here")
        if form is None:
            m = _FORM.search(bare)
            form = m.group(1).upper() if m else None
    return form


# --------------------------------------------------------------------------------------------
# Content negotiation

RESULTS = {"json": "application/sparql-results+json", "xml": "application/sparql-results+xml",
           "csv": "text/csv; charset=utf-8", "tsv": "text/tab-separated-values; charset=utf-8"}
GRAPHS = {"turtle": "text/turtle; charset=utf-8", "nt": "application/n-triples",
          "jsonld": "application/ld+json", "rdfxml": "application/rdf+xml"}
_MIME = {
    "results": {"application/sparql-results+json": "json", "application/json": "json",
                "application/sparql-results+xml": "xml", "application/xml": "xml", "text/xml": "xml",
                "text/csv": "csv", "text/tab-separated-values": "tsv", "text/tsv": "tsv"},
    "graph": {"text/turtle": "turtle", "application/x-turtle": "turtle", "application/turtle": "turtle",
              "application/n-triples": "nt", "text/plain": "nt", "application/ld+json": "jsonld",
              "application/json": "jsonld", "application/rdf+xml": "rdfxml", "application/xml": "rdfxml",
              "text/xml": "rdfxml"},
}
_DEFAULT = {"results": "json", "graph": "turtle"}
_FORMAT_PARAM = {
    "results": {"json": "json", "srj": "json", "xml": "xml", "srx": "xml", "csv": "csv", "tsv": "tsv"},
    "graph": {"turtle": "turtle", "ttl": "turtle", "nt": "nt", "ntriples": "nt", "n-triples": "nt",
              "jsonld": "jsonld", "json-ld": "jsonld", "json": "jsonld", "rdfxml": "rdfxml", "xml": "rdfxml",
              "rdf": "rdfxml"},
}


def negotiate(kind, accept="", fmt=None):
    """The output format key for a result kind ("results" or "graph"), or None when none is acceptable.

    `fmt` (the `format` or `output` parameter, a short name or a media type) wins over Accept."""
    table = _MIME[kind]
    if fmt:
        fmt = fmt.strip().lower()
        if "/" not in fmt:
            return _FORMAT_PARAM[kind].get(fmt)
        accept = fmt
    if not accept or not accept.strip():
        return _DEFAULT[kind]
    ranges = []
    for i, part in enumerate(accept.split(",")):
        bits = [b.strip() for b in part.split(";")]
        mime = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.lower().startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if mime and q > 0:
            ranges.append((-q, i, mime))
    for _, _, mime in sorted(ranges):
        if mime in table:
            return table[mime]
        if mime == "*/*":
            return _DEFAULT[kind]
        if mime.endswith("/*"):
            major = mime[:-1]
            for m, key in table.items():
                if m.startswith(major):
                    return key
    return None


# --------------------------------------------------------------------------------------------
# The engine: oxigraph serve-read-only, supervised


def find_oxigraph():
    here = Path(sys.executable).parent / "oxigraph"
    if here.exists():
        return str(here)
    found = shutil.which("oxigraph")
    if found:
        return found
    raise CptkgError("the `oxigraph` program is missing: `pip install oxigraph` (it is a dependency of cptkg)")


def build_store(kb, files, location, oxigraph=None):
    """Write the dataset as N-Quads and load it with `oxigraph load` into a new store folder."""
    location = Path(location)
    location.mkdir(parents=True, exist_ok=True)
    if any(location.iterdir()):
        raise CptkgError("the store folder is not empty; give a new or empty folder", file=location)
    dump = location.parent / (location.name + ".nq")
    with open(dump, "wb") as out:
        quads, graphs = write_nquads(kb, files, out)
    try:
        r = subprocess.run([oxigraph or find_oxigraph(), "load", "--location", str(location), "--file", str(dump)],
                           capture_output=True, text=True, timeout=600)
    finally:
        dump.unlink()
    if r.returncode != 0:
        raise CptkgError(f"oxigraph load failed: {(r.stderr or r.stdout).strip()[-800:]}", file=location)
    return quads, graphs


def _free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _resident_mb(pid):
    """Resident memory of a process in MiB (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return None


# The engine is told to stop when the thread that started it (the supervisor, which lives as long
# as the front) is gone, so a front killed outright (SIGKILL, out of memory) does not leave it
# running: util-linux setpriv sets the parent-death signal and executes the engine in its place.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_DIES_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []


class Engine:
    """An `oxigraph serve-read-only` process on a loopback port, restarted when it must be: it died,
    a query outlived its time limit (`recycle`), or its resident memory passed `memory_mb`.

    Starts and restarts happen on one long-lived supervisor thread; request threads ask for a
    restart and wait for the next generation."""

    def __init__(self, location, timeout, memory_mb=4096, oxigraph=None, log=None):
        self.location = Path(location)
        self.timeout_s = max(1, math.ceil(timeout))
        self.memory_mb = memory_mb
        self.binary = oxigraph or find_oxigraph()
        self.log = log
        self.proc = None
        self.port = None
        self.gen = 0
        self.restarts = 0
        self.memory_restarts = 0
        self._cond = threading.Condition()
        self._want = None  # generation asked to be replaced
        self._stop = False
        self._error = None
        self._pool = []
        self._thread = None

    # supervisor
    def start(self, wait=60):
        self._thread = threading.Thread(target=self._supervise, name="oxigraph-supervisor", daemon=True)
        self._thread.start()
        with self._cond:
            self._cond.wait_for(lambda: self.gen > 0 or self._error is not None, timeout=wait)
            if self._error is not None:
                raise CptkgError(f"the SPARQL engine did not start: {self._error}")
            if self.gen == 0:
                raise CptkgError("the SPARQL engine did not start in time")

    def _launch(self):
        last = None
        for _ in range(3):
            port = _free_port()
            cmd = [*_DIES_WITH_PARENT, self.binary, "serve-read-only", "--location", str(self.location),
                   "--bind", f"127.0.0.1:{port}", "--union-default-graph", "--timeout-s", str(self.timeout_s)]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log or subprocess.DEVNULL,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return proc, port
                except OSError:
                    time.sleep(0.02)
            last = f"exit code {proc.poll()}" if proc.poll() is not None else "no answer in 30 s"
            _kill(proc)
        raise RuntimeError(last)

    def _supervise(self):
        while True:
            with self._cond:
                if self._stop:
                    return
                need = self.proc is None or self.proc.poll() is not None or self._want == self.gen
                proc = self.proc
            if not need and self.memory_mb:
                rss = _resident_mb(proc.pid)
                if rss is not None and rss > self.memory_mb:
                    need = True
                    self.memory_restarts += 1
            if need:
                old = self.proc
                try:  # the new engine first (readers may share the store), then the old one goes
                    proc, port = self._launch()
                except Exception as exc:  # noqa: BLE001 - reported to whoever waits
                    with self._cond:
                        self._error = str(exc)
                        self._cond.notify_all()
                    if old is None:
                        return
                    _kill(old)
                    time.sleep(1)
                    continue
                with self._cond:
                    if self._stop:
                        _kill(proc)
                        return
                    if old is not None:
                        self.restarts += 1
                    self.proc, self.port = proc, port
                    self.gen += 1
                    self._want = None
                    pool, self._pool = self._pool, []
                    self._cond.notify_all()
                if old is not None:
                    _kill(old)
                for _, conn in pool:
                    conn.close()
                continue
            with self._cond:
                self._cond.wait(timeout=0.5)

    def recycle(self, gen, wait=30):
        """Replace the engine of generation `gen` (a query outlived its limit, or the engine died)."""
        with self._cond:
            if self.gen != gen or self._stop:
                return
            self._want = gen
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.gen != gen or self._stop, timeout=wait)

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._cond:
            proc, pool, self._pool = self.proc, self._pool, []
        if proc is not None:
            _kill(proc)
        for _, conn in pool:
            conn.close()

    # connections
    def connection(self, fresh=False):
        with self._cond:
            if self.proc is not None and self.proc.poll() is not None:
                self._cond.notify_all()
                self._cond.wait_for(lambda: self.proc.poll() is None or self._stop, timeout=30)
            if self._pool and not fresh:
                return self._pool.pop()
            return self.gen, http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def release(self, gen, conn):
        with self._cond:
            if gen == self.gen and len(self._pool) < 64:
                self._pool.append((gen, conn))
                return
        conn.close()


def _kill(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# Running a query through the engine


@dataclass
class Answer:
    status: int
    ctype: str
    body: bytes
    headers: dict


class TimeLimit(Exception):
    pass


class Gateway:
    """Runs one SPARQL query on the engine with the endpoint's rules: refusal, cap, time limit, format."""

    def __init__(self, engine, timeout=10.0, max_results=10000, max_concurrent=8):
        self.engine = engine
        self.timeout = float(timeout)
        self.grace = max(1.0, 0.25 * self.timeout)
        self.max_results = int(max_results)
        self.slots = threading.BoundedSemaphore(max(1, int(max_concurrent)))
        self.stats = {"queries": 0, "timeouts": 0, "memory": 0, "truncated": 0}
        self._prefixes = {k: str(v) for k, v in PREFIXES.items() if k not in ("sh", "prov")}

    def run(self, text, accept="", fmt=None, dataset=()):
        try:
            form = query_form(text)
        except Refused as r:
            return _text(r.status, r.message)
        kind = "graph" if form in ("CONSTRUCT", "DESCRIBE") else "results"
        key = negotiate(kind, accept, fmt)
        if key is None:
            table = RESULTS if kind == "results" else GRAPHS
            return _text(406, f"no acceptable format for a {form or 'query'} answer: this endpoint writes "
                              + ", ".join(v.split(";")[0] for v in table.values()))
        if form == "ASK":
            want = RESULTS[key].split(";")[0]
        elif kind == "graph":
            want = "application/n-triples"
        elif form is None:
            want = "text/tab-separated-values, application/n-triples;q=0.9"
        else:
            want = "text/tab-separated-values"
        if not self.slots.acquire(timeout=self.timeout):
            return _text(503, "the endpoint is busy: every query slot stayed taken for the time limit; try again")
        try:
            self.stats["queries"] += 1
            return self._run(text, form, key, want, dataset, accept, fmt)
        finally:
            self.slots.release()

    def _run(self, text, form, key, want, dataset, accept, fmt):
        path = "/query" + (("?" + urlencode(list(dataset))) if dataset else "")
        body = text.encode("utf-8")
        memory_restarts = self.engine.memory_restarts
        for attempt in (1, 2):
            gen, conn = self.engine.connection(fresh=attempt > 1)
            deadline = time.monotonic() + self.timeout + self.grace
            try:
                status, ctype, data, truncated, reuse = self._exchange(conn, path, body, want, deadline)
            except TimeLimit:
                conn.close()
                self.stats["timeouts"] += 1
                self.engine.recycle(gen)
                return _text(503, f"the query ran past the time limit of {self.timeout:g} s and was stopped; "
                                  "narrow it (a LIMIT, a more selective pattern) and try again")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if self.engine.memory_restarts > memory_restarts:
                    self.stats["memory"] += 1
                    return _text(503, f"the query took more than the memory limit ({self.engine.memory_mb} MB) "
                                      "and was stopped; narrow it and try again")
                if attempt == 1:  # a kept-alive connection the engine closed, or an engine that died
                    proc = self.engine.proc
                    if proc is not None and proc.poll() is not None:
                        self.engine.recycle(gen)
                    continue
                return _text(502, f"the SPARQL engine did not answer: {exc}")
            # keep the connection only after a complete, ordinary answer
            if reuse and status == 200 and not truncated and CANCELLED not in data[-200:]:
                self.engine.release(gen, conn)
            else:
                conn.close()
            break
        if status != 200:
            msg = data.decode("utf-8", "replace").strip()
            if status == 406:
                return _text(406, msg)
            return _text(400 if status < 500 else 500, f"the SPARQL engine refused the query: {msg}")
        if CANCELLED in data[-200:]:
            self.stats["timeouts"] += 1
            return _text(503, f"the query ran past the time limit of {self.timeout:g} s and was cancelled; "
                              "narrow it (a LIMIT, a more selective pattern) and try again")
        try:
            return self._convert(form, key, ctype, data, truncated, accept, fmt)
        except (SyntaxError, ValueError) as exc:
            return _text(500, f"the SPARQL engine's answer could not be read: {exc}")

    def _exchange(self, conn, path, body, want, deadline):
        def left():
            t = deadline - time.monotonic()
            if t <= 0:
                raise TimeLimit()
            return t

        if conn.sock is None:
            conn.timeout = left()
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(left())
        conn.request("POST", path, body=body, headers={"Content-Type": "application/sparql-query; charset=utf-8",
                                                        "Accept": want})
        try:
            resp = conn.getresponse()
        except socket.timeout:
            raise TimeLimit() from None
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if resp.status != 200 or ctype not in ("text/tab-separated-values", "application/n-triples"):
            data = self._read_all(resp, conn, left, 1 << 20)
            return resp.status, ctype, data, False, not resp.will_close
        header = ctype == "text/tab-separated-values"
        cap = self.max_results
        lines = []
        truncated = False
        try:
            while True:
                conn.sock.settimeout(left())
                line = resp.readline()
                if not line:
                    break
                if line.strip() or header:
                    lines.append(line)
                    rows = len(lines) - (1 if header else 0)
                    if cap and rows > cap:
                        lines.pop()
                        truncated = True
                        break
        except socket.timeout:
            raise TimeLimit() from None
        if truncated:
            return 200, ctype, b"".join(lines), True, False
        return 200, ctype, b"".join(lines), False, not resp.will_close

    @staticmethod
    def _read_all(resp, conn, left, limit):
        chunks, size = [], 0
        try:
            while True:
                conn.sock.settimeout(left())
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
        except socket.timeout:
            raise TimeLimit() from None
        return b"".join(chunks)

    def _convert(self, form, key, ctype, data, truncated, accept, fmt):
        import pyoxigraph as ox

        headers = {}
        if truncated:
            self.stats["truncated"] += 1
            headers = {"X-Cptkg-Truncated": "true", "X-Cptkg-Result-Cap": str(self.max_results)}
        if ctype == "text/tab-separated-values":
            if form is None:  # learnt from the engine
                key = negotiate("results", accept, fmt) or "json"
            parsed = ox.parse_query_results(data, ox.QueryResultsFormat.TSV)
            out = parsed.serialize(format=getattr(ox.QueryResultsFormat, _RESULT_FORMATS[key]))
            return Answer(200, RESULTS[key], out, headers)
        if ctype == "application/n-triples":
            if form is None:
                key = negotiate("graph", accept, fmt) or "turtle"
            triples = [q.triple for q in ox.parse(data, ox.RdfFormat.N_TRIPLES)]
            kwargs = {"prefixes": self._prefixes} if key == "turtle" else {}
            out = ox.serialize(triples, format=getattr(ox.RdfFormat, _RDF_FORMATS[key]), **kwargs)
            return Answer(200, GRAPHS[key], out, headers)
        # ASK: the engine wrote the format asked for
        return Answer(200, RESULTS.get(key, ctype), data, headers)


_RESULT_FORMATS = {"json": "JSON", "xml": "XML", "csv": "CSV", "tsv": "TSV"}  # pyoxigraph.QueryResultsFormat
_RDF_FORMATS = {"turtle": "TURTLE", "nt": "N_TRIPLES", "jsonld": "JSON_LD", "rdfxml": "RDF_XML"}  # pyoxigraph.RdfFormat


def _text(status, message):
    return Answer(status, "text/plain; charset=utf-8", (message.rstrip() + "\n").encode("utf-8"), {})


def _json(status, obj):
    return Answer(status, "application/json", (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"), {})


# --------------------------------------------------------------------------------------------
# Derivation for POST /derive


class DeriveService:
    """The engine behind POST /derive: the one `cptkg derive` uses by default (fast: the same rules
    on pyoxigraph, engine="reference" for rdflib), one request at a time (a request's
    encounters are derived as one batch in the engine's store)."""

    def __init__(self, kb, max_encounters=100, engine="fast"):
        self.kb = kb
        self.engine = engine
        self.max_encounters = max_encounters
        self.lock = threading.Lock()
        self._deriver = None
        self._checker = None

    def __call__(self, doc):
        from .batch import derive_records
        from .inputs import record_from_object

        if isinstance(doc, dict) and "encounters" in doc:
            items = doc["encounters"]
        elif isinstance(doc, list):
            items = doc
        else:
            items = [doc]
        if not isinstance(items, list) or not items:
            raise CptkgError("send an encounter object, a list of them, or {\"encounters\": [...]}")
        if len(items) > self.max_encounters:
            raise CptkgError(f"at most {self.max_encounters} encounters a request (got {len(items)})")
        with self.lock:
            if self._deriver is None:
                from .batch import make_checker, make_deriver

                self._deriver, self._checker = make_deriver(self.kb, self.engine), make_checker(self.kb, self.engine)
            records = [record_from_object(obj, "encounter", self.kb.content.context, file="posted", index=i)
                       for i, obj in enumerate(items)]
            ids = [r.id for r in records]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise CptkgError(f"encounter ids must be unique in a request: {', '.join(map(str, dup))}")
            out = []
            for rec, summary, _ in derive_records(self.kb, self._checker, self._deriver, records):
                out.append(summary if summary is not None else
                           {"id": rec.id, "file": str(rec.file), "error": rec.error.as_record()})
        return {"schemaVersion": "1", "encounters": out}


# --------------------------------------------------------------------------------------------
# Pages for one code

CODE_SUMMARY = """PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
SELECT ?label ?family ?from ?through ?replacedBy ?addOnFrom ?confidence ?note ?kind WHERE {
  VALUES ?c { <CODE> }
  ?c skos:notation ?n .
  OPTIONAL { ?c skos:prefLabel ?label }
  OPTIONAL { ?c cptkg:family/skos:prefLabel ?family }
  OPTIONAL { ?c cptkg:effectiveFrom ?from }
  OPTIONAL { ?c cptkg:effectiveThrough ?through }
  OPTIONAL { ?c cptkg:replacedBy/skos:notation ?replacedBy }
  OPTIONAL { ?c cptkg:addOnFrom ?addOnFrom }
  OPTIONAL { ?c cptkg:confidence ?cf . BIND (REPLACE(STR(?cf), "^.*[#/]", "") AS ?confidence) }
  OPTIONAL { ?c cptkg:note ?note }
  OPTIONAL { ?c a ?t . FILTER (?t IN (cptkg:AddOnCode, cptkg:GuidanceCode, cptkg:DiagnosticImagingCode, cptkg:StandAloneCode))
             BIND (REPLACE(STR(?t), "^.*#", "") AS ?kind) }
}"""
CODE_SOURCES = """PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
PREFIX dcterms: <http://purl.org/dc/terms/>
SELECT DISTINCT ?id ?title ?url ?confidence WHERE {
  VALUES ?c { <CODE> }
  { ?c dcterms:source ?s } UNION { ?c cptkg:criteria/dcterms:source ?s }
  OPTIONAL { ?s dcterms:title ?title }
  OPTIONAL { ?s cptkg:url ?url }
  OPTIONAL { ?s cptkg:confidence ?cf . BIND (REPLACE(STR(?cf), "^.*[#/]", "") AS ?confidence) }
  BIND (REPLACE(STR(?s), "^.*/", "") AS ?id)
} ORDER BY ?id"""


def _bindings(answer):
    doc = json.loads(answer.body)
    return doc["head"]["vars"], [{k: v["value"] for k, v in b.items()} for b in doc["results"]["bindings"]]


def code_page(gateway, content, code, token_param=""):
    from .query import bind_params
    from .vocab import CPT

    iri = f"{CPT}{code}"
    summary = gateway.run(CODE_SUMMARY.replace("CODE", iri), fmt="json")
    if summary.status != 200:
        return summary
    _, rows = _bindings(summary)
    if not rows:
        return Answer(404, "text/html; charset=utf-8", _page(f"No code {code}", f"<p>The knowledge graph has no code "
                      f"<b>{html.escape(code)}</b>. <a href='/{token_param}'>Back to the endpoint</a></p>"), {})
    def values(name):
        seen = []
        for r in rows:
            v = r.get(name)
            if v and v not in seen:
                seen.append(v)
        return seen

    e = html.escape
    link = lambda c: f"<a href='/code/{quote(c)}{token_param}'>{e(c)}</a>"  # noqa: E731
    parts = [f"<p class='label'>{e('; '.join(values('label')) or '(no label)')}</p>", "<table class='facts'>"]
    for name, title in (("kind", "kind"), ("family", "family"), ("from", "valid from"), ("through", "last valid day"),
                        ("replacedBy", "replaced by"), ("addOnFrom", "add-on code from"), ("confidence", "confidence"),
                        ("note", "note")):
        vals = values(name)
        if vals:
            shown = ", ".join(link(v) if name == "replacedBy" else e(v) for v in vals)
            parts.append(f"<tr><th>{title}</th><td>{shown}</td></tr>")
    parts.append("</table>")

    rel = gateway.run(bind_params(content.report("code-relations"), {"code": code}), fmt="json")
    if rel.status == 200:
        _, rels = _bindings(rel)
        groups = {}
        for r in rels:
            groups.setdefault(r.get("relation", ""), []).append(r)
        parts.append("<h2>What it includes, pairs with and is excluded by</h2>")
        if not groups:
            parts.append("<p>No edit or inclusion names this code.</p>")
        order = ("includes", "add-on", "primary", "bundling: excluded", "bundling", "unit", "replaced", "replaces")
        rank = lambda name: next((i for i, p in enumerate(order) if name.startswith(p)), len(order))  # noqa: E731
        for relation, items in sorted(groups.items(), key=lambda kv: (rank(kv[0]), kv[0])):
            parts.append(f"<h3>{e(relation)}</h3><table class='rel'><tr><th>code or concept</th><th>label</th>"
                         "<th>detail</th><th>from</th><th>through</th><th>edit</th><th>sources</th></tr>")
            for r in items:
                other = r.get("other", "")
                shown = link(other) if r.get("otherIsCode") == "yes" else e(other)
                parts.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
                    shown, e(r.get("otherLabel", "")), e(r.get("detail", "")), e(r.get("from", "")),
                    e(r.get("through", "")), e(r.get("edit", "")), e(r.get("sources", "")))) + "</tr>")
            parts.append("</table>")
    src = gateway.run(CODE_SOURCES.replace("CODE", iri), fmt="json")
    if src.status == 200:
        _, srcs = _bindings(src)
        parts.append("<h2>Sources</h2><ul class='sources'>")
        for s in srcs:
            title = e(s.get("title") or s["id"])
            url = s.get("url")
            shown = f"<a href='{e(url)}' rel='noreferrer'>{title}</a>" if url and url.startswith(("http://", "https://")) else title
            conf = f" <span class='conf'>({e(s['confidence'])} confidence)</span>" if s.get("confidence") else ""
            parts.append(f"<li>{shown}{conf} <code>src:{e(s['id'])}</code></li>")
        parts.append("</ul>")
    q = f"/queries/code-facts?code={quote(code)}" + (token_param.replace("?", "&") if token_param else "")
    parts.append(f"<p>Every statement about it: <a href='{e(q)}&amp;format=csv'>code-facts (CSV)</a>. "
                 f"<a href='/{token_param}'>Back to the endpoint</a></p>")
    return Answer(200, "text/html; charset=utf-8", _page(f"{code}", "\n".join(parts)), {})


def _page(title, body):
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)} - cptkg</title>"
            f"<link rel='stylesheet' href='/static/style.css'></head><body><header><a href='/'>cptkg</a></header>"
            f"<main><h1>{html.escape(title)}</h1>{body}</main></body></html>\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# The front


class App:
    def __init__(self, kb, gateway, token=None, cors_origin="*", quiet=False, max_body=1 << 20, stats=None,
                 derive_engine="fast"):
        self.kb = kb
        self.content = kb.content
        self.gateway = gateway
        self.token = token
        self.cors_origin = cors_origin
        self.quiet = quiet
        self.max_body = max_body
        self.derive = DeriveService(kb, engine=derive_engine)
        self.stats = stats or {}

    def authorised(self, handler, params):
        if not self.token:
            return True
        got = None
        auth = handler.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            got = auth[7:].strip()
        elif params.get("access_token"):
            got = params["access_token"][0]
        return got is not None and hmac.compare_digest(got.encode(), self.token.encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cptkg"
    app: App = None  # set by make_server

    def setup(self):
        super().setup()
        try:  # answers go out as they are written (headers, then body), without waiting on delayed ACKs
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if not self.app.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # plumbing
    def _send(self, answer: Answer, head=False):
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.ctype)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Access-Control-Allow-Origin", self.app.cors_origin)
        self.send_header("Access-Control-Expose-Headers", "X-Cptkg-Truncated, X-Cptkg-Result-Cap, Content-Type")
        self.send_header("Vary", "Accept, Origin")
        self.send_header("X-Content-Type-Options", "nosniff")
        if answer.ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        if answer.status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="cptkg"')
        for k, v in answer.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(answer.body)

    def _body(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise Refused(411, "send a Content-Length (chunked request bodies are not read)")
        try:
            n = int(length or 0)
        except ValueError:
            raise Refused(400, "bad Content-Length") from None
        if n > self.app.max_body:
            raise Refused(413, f"request body over {self.app.max_body} bytes")
        return self.rfile.read(n) if n else b""

    def do_OPTIONS(self):  # noqa: N802 - CORS preflight
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", self.app.cors_origin)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self._dispatch("GET", head=True)

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._send(_text(405, "read-only endpoint: PUT is refused (the Graph Store Protocol is not offered)"))

    do_DELETE = do_PATCH = do_PUT

    def _dispatch(self, method, head=False):
        try:
            answer = self._route(method)
        except Refused as r:
            answer = _text(r.status, r.message)
            self.close_connection = True
        except CptkgError as err:
            answer = _text(400, str(err))
        except Exception as exc:  # noqa: BLE001 - an internal error is a 500 with its message
            import traceback

            traceback.print_exc()
            answer = _text(500, f"internal error: {exc}")
        try:
            self._send(answer, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method):
        url = urlsplit(self.path)
        path = url.path
        params = parse_qs(url.query, keep_blank_values=True)
        app = self.app
        if method == "GET" and path in ("/", "/index.html"):
            return Answer(200, STATIC["index.html"], (WEB / "index.html").read_bytes(), {})
        if method == "GET" and path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in STATIC:
                return _text(404, "no such file")
            return Answer(200, STATIC[name], (WEB / name).read_bytes(), {"Cache-Control": "no-cache"})
        if path == "/health":
            eng = app.gateway.engine
            return _json(200, {"status": "ok", **app.stats, "engineRestarts": eng.restarts,
                               "engineMemoryRestarts": eng.memory_restarts, **app.gateway.stats})
        if path == "/favicon.ico":
            return Answer(204, "text/plain", b"", {})
        if not app.authorised(self, params):
            return _text(401, "a bearer token is required: send `Authorization: Bearer <token>`")
        if path == "/update":
            return _text(403, "this endpoint is read-only: SPARQL Update is refused")
        if path == "/sparql":
            return self._sparql(method, params)
        if path == "/queries" and method == "GET":
            return _json(200, {"queries": [_describe(q) for q in app.content.reports]})
        if path.startswith("/queries/") and method == "GET":
            return self._named(path[len("/queries/"):], params)
        if path.startswith("/code/") and method == "GET":
            code = path[len("/code/"):].strip().upper()
            if not re.fullmatch(r"[0-9A-Z]{4,7}", code):
                return _text(400, "a code is 4 to 7 letters or digits, e.g. /code/77003")
            tok = f"?access_token={quote(params['access_token'][0])}" if params.get("access_token") else ""
            return code_page(app.gateway, app.content, code, tok)
        if path == "/derive/example" and method == "GET":
            return _json(200, _example_encounter(app.content.root))
        if path == "/derive":
            if method != "POST":
                return _text(405, "POST an encounter as JSON to /derive")
            raw = self._body()
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return _text(400, f"the body is not JSON: {exc}")
            return _json(200, app.derive(doc))
        return _text(404, "not found: try / (the page), /sparql, /queries, /code/77003 or POST /derive")

    def _sparql(self, method, params):
        if "update" in params:
            return _text(403, "this endpoint is read-only: SPARQL Update is refused")
        if method == "POST":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            body = self._body()
            if ctype == "application/sparql-update":
                return _text(403, "this endpoint is read-only: SPARQL Update is refused")
            if ctype == "application/x-www-form-urlencoded":
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                if "update" in form:
                    return _text(403, "this endpoint is read-only: SPARQL Update is refused")
                for k, v in form.items():
                    params.setdefault(k, []).extend(v)
            elif ctype == "application/sparql-query":
                if "query" in params:
                    return _text(400, "a query in the body and in the URL: send one")
                params["query"] = [body.decode("utf-8", "replace")]
            else:
                return _text(415, "POST a query as application/sparql-query or application/x-www-form-urlencoded")
        queries = params.get("query", [])
        if len(queries) != 1:
            if not queries and "text/html" in (self.headers.get("Accept") or ""):
                return Answer(303, "text/plain", b"", {"Location": "/"})
            return _text(400, "give exactly one `query` parameter (SPARQL 1.1 Protocol)")
        dataset = [(k, v) for k in ("default-graph-uri", "named-graph-uri") for v in params.get(k, [])]
        fmt = (params.get("format") or params.get("output") or [None])[0]
        return self.app.gateway.run(queries[0], self.headers.get("Accept", ""), fmt, dataset)

    def _named(self, name, params):
        from .query import bind_params

        try:
            q = self.app.content.report(name)
        except CptkgError as err:
            return _text(404, str(err))
        fmt = (params.pop("format", None) or params.pop("output", None) or [None])[0]
        params.pop("access_token", None)
        values = {}
        for k, v in params.items():
            if len(v) != 1:
                return _text(400, f"parameter '{k}' given {len(v)} times")
            values[k] = v[0]
        text = bind_params(q, values)
        return self.app.gateway.run(text, self.headers.get("Accept", ""), fmt)


def _describe(q):
    return {"id": q.id, "title": q.title, "description": q.header.get("description", ""),
            "sources": q.sources, "params": q.params, "url": f"/queries/{q.id}", "text": q.text}


def _example_encounter(root):
    path = Path(root) / "examples" / "encounters.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        enc = doc["encounters"] if isinstance(doc, dict) else doc
        for e in enc:
            if e.get("id") == "enc-tfesi-2024":
                return e
        return enc[0]
    except (OSError, ValueError, KeyError, IndexError):
        return {}


# --------------------------------------------------------------------------------------------
# Putting it together


class Server:
    """The store, the engine and the front; `start()` returns once the endpoint answers."""

    def __init__(self, kb, data=(), host="127.0.0.1", port=8080, store=None, timeout=10.0, max_results=10000,
                 token=None, max_concurrent=8, memory_mb=4096, cors_origin="*", quiet=False, log=None,
                 derive_engine="fast"):
        self.kb, self.data = kb, list(data)
        self.derive_engine = derive_engine
        self.host, self.port = host, port
        self.store, self._tmp = store, None
        self.timeout, self.max_results, self.token = timeout, max_results, token
        self.max_concurrent, self.memory_mb = max_concurrent, memory_mb
        self.cors_origin, self.quiet, self.log = cors_origin, quiet, log
        self.engine = self.httpd = self._thread = None
        self.stats = {}

    def start(self, background=True):
        oxigraph = find_oxigraph()
        if self.store:
            location = Path(self.store)
        else:
            self._tmp = tempfile.mkdtemp(prefix="cptkg-store-")
            location = Path(self._tmp) / "store"
        t0 = time.monotonic()
        quads, graphs = build_store(self.kb, self.data, location, oxigraph)
        self.stats = {"quads": quads, "graphs": graphs, "dataFiles": len(self.data),
                      "buildSeconds": round(time.monotonic() - t0, 2)}
        try:
            self.engine = Engine(location, self.timeout, self.memory_mb, oxigraph, self.log)
            self.engine.start()
            gateway = Gateway(self.engine, self.timeout, self.max_results, self.max_concurrent)
            app = App(self.kb, gateway, self.token, self.cors_origin, self.quiet, stats=self.stats,
                      derive_engine=self.derive_engine)
            handler = type("BoundHandler", (Handler,), {"app": app})
            try:
                self.httpd = ThreadingHTTPServer((self.host, self.port), handler)
            except OSError as exc:
                raise CptkgError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
            self.httpd.daemon_threads = True
        except BaseException:
            self.stop()
            raise
        self.port = self.httpd.server_address[1]
        if background:
            self._thread = threading.Thread(target=self.httpd.serve_forever, name="cptkg-front", daemon=True)
            self._thread.start()
        return self

    @property
    def url(self):
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/"

    def serve_forever(self):
        self.httpd.serve_forever()

    def stop(self):
        if self.httpd is not None:
            if self._thread is not None:
                self.httpd.shutdown()
                self._thread.join(timeout=10)
            self.httpd.server_close()
            self.httpd = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def run_server(kb, args):
    """`cptkg serve`: build, serve until SIGINT or SIGTERM, then stop the engine and remove the temp store."""
    token = args.token or os.environ.get("CPTKG_TOKEN") or None
    server = Server(kb, args.files, host=args.host, port=args.port, store=args.store, timeout=args.timeout,
                    max_results=args.max_results, token=token, max_concurrent=args.max_concurrent,
                    memory_mb=args.memory_limit, cors_origin=args.cors_origin, quiet=args.quiet,
                    derive_engine=getattr(args, "engine", "fast"))
    stopping = threading.Event()

    def on_term(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    server.start(background=False)
    signal.signal(signal.SIGTERM, on_term)
    s = server.stats
    print(f"cptkg: serving {s['quads']} quads in {s['graphs']} named graphs "
          f"({s['dataFiles']} data files) at {server.url}  SPARQL endpoint: {server.url}sparql"
          + ("  (bearer token required)" if token else ""), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def spawn(args=(), timeout=180, cwd=None, stderr=None):
    """Start `cptkg serve --port 0 ARGS` as a child process (tests, the bench); return (process, base URL)
    once it serves. Stop it with `stop_spawned`."""
    import queue

    cmd = [sys.executable, "-m", "reasoner.cli", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd)
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        m = re.search(r" at (http://\S+/) ", line)
        if m:
            return proc, m.group(1)
    stop_spawned(proc)
    raise RuntimeError(f"`{' '.join(cmd)}` did not start serving within {timeout} s (exit code {proc.returncode})")


def stop_spawned(proc, timeout=20):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc.stdout:
        proc.stdout.close()


def remote_query(endpoint, text, timeout=120, token=None):
    """Run a query on an external SPARQL 1.1 endpoint; an rdflib Result as `cptkg query` prints it."""
    import io
    import urllib.error
    import urllib.request

    from rdflib import Graph
    from rdflib.query import Result

    headers = {"Accept": "application/sparql-results+json, text/turtle;q=0.9, application/n-triples;q=0.8",
               "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "cptkg"}
    token = token or os.environ.get("CPTKG_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(endpoint, data=urlencode({"query": text}).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's endpoint
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            body = resp.read()
    except urllib.error.HTTPError as err:
        detail = err.read(2000).decode("utf-8", "replace").strip()
        raise CptkgError(f"the endpoint answered {err.code}: {detail}", file=endpoint) from None
    except (urllib.error.URLError, OSError) as err:
        raise CptkgError(f"cannot reach the endpoint: {getattr(err, 'reason', err)}", file=endpoint) from None
    if ctype in ("application/sparql-results+json", "application/json"):
        return Result.parse(io.BytesIO(body), format="json")
    if ctype in ("text/turtle", "application/n-triples", "application/x-turtle", "text/plain"):
        g = Graph().parse(data=body.decode("utf-8"), format="turtle" if "turtle" in ctype else "nt")
        r = Result("CONSTRUCT")
        r.graph = g
        return r
    raise CptkgError(f"the endpoint answered in a format cptkg does not read ({ctype or 'none'})", file=endpoint)


__all__ = ["Server", "Gateway", "Engine", "negotiate", "query_form", "Refused", "write_nquads", "data_graphs",
           "remote_query", "run_server", "build_store", "spawn",
           "stop_spawned"]
