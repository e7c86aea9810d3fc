"""`cptkg serve` as analysts' tools meet it: the SPARQL 1.1 Protocol, refusals, limits, CORS, the
token, the named queries, the code page, /derive, standard clients, and the page in a real browser.

The server runs as a child process on a free loopback port (`cptkg serve --port 0`), as a user starts it.
"""
import csv
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import pytest
from rdflib import Graph, URIRef
from rdflib.query import Result

from harness import ROOT, engine
from sysdeps import debian_packages

DATA = ["examples/claims.csv", "examples/encounters.json"]
CAP = 5000
TIMEOUT = 2


def _spawn(*args):
    from reasoner.serve import spawn

    return spawn([*args, *DATA], cwd=ROOT)


@pytest.fixture(scope="module")
def server():
    from reasoner.serve import stop_spawned

    proc, url = _spawn("--quiet", "--timeout", str(TIMEOUT), "--max-results", str(CAP))
    yield url
    stop_spawned(proc)


@pytest.fixture(scope="module")
def token_server():
    from reasoner.serve import stop_spawned

    proc, url = _spawn("--quiet", "--token", "s3cret")
    yield url
    stop_spawned(proc)


def _children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").exists() or not shutil.which("setpriv"),
                    reason="the parent-death signal is set with Linux's setpriv")
def test_engine_stops_when_the_front_is_killed_outright():
    """A front killed with SIGKILL (no chance to stop its engine) does not leave Oxigraph running."""
    proc, url = _spawn("--quiet")
    try:
        engines = [c for c in _children(proc.pid) if "oxigraph" in Path(f"/proc/{c}/cmdline").read_text()]
        assert len(engines) == 1, engines
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{engines[0]}").exists() and time.monotonic() < deadline:
            try:  # reaped by init once it exits; a zombie counts as stopped
                if Path(f"/proc/{engines[0]}/stat").read_text().split(") ")[1][0] == "Z":
                    break
            except (FileNotFoundError, IndexError):
                break
            time.sleep(0.05)
        alive = Path(f"/proc/{engines[0]}").exists() and Path(f"/proc/{engines[0]}/stat").read_text().split(") ")[1][0] != "Z"
        assert not alive, "the engine outlived its front"
    finally:
        if proc.poll() is None:
            proc.kill()


def call(url, data=None, headers=None, method=None, timeout=60):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sparql_get(base, query, accept=None, **extra):
    q = urlencode({"query": query, **extra})
    return call(f"{base}sparql?{q}", headers={"Accept": accept} if accept else {})


def local_rows(name, params=None, data=DATA):
    from reasoner.query import rows, run_query

    kb = engine()[0]
    return rows(run_query(kb, name, data=[str(ROOT / d) for d in data], params=params or {}))


def result_rows(body, fmt="json"):
    from reasoner.query import rows

    return rows(Result.parse(io.BytesIO(body), format=fmt))


CODES = """PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
SELECT ?code ?label WHERE { ?c a cptkg:GuidanceCode ; skos:notation ?code ; skos:prefLabel ?label } ORDER BY ?code"""
FACTS_77003 = "CONSTRUCT { ?s ?p ?o } WHERE { BIND (<https://w3id.org/cptkg/code/77003> AS ?s) ?s ?p ?o }"


# --------------------------------------------------------------------------------------------
# The protocol


def test_get_post_form_and_post_body_agree(server):
    status, headers, got = sparql_get(server, CODES, "application/sparql-results+json")
    assert status == 200 and headers["Content-Type"] == "application/sparql-results+json"
    names, rows = result_rows(got)
    assert names == ["code", "label"] and ["77003"] in [r[:1] for r in rows]
    s2, _, form = call(server + "sparql", data=urlencode({"query": CODES}).encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/sparql-results+json"})
    s3, _, body = call(server + "sparql", data=CODES.encode(),
                       headers={"Content-Type": "application/sparql-query", "Accept": "application/sparql-results+json"})
    assert s2 == s3 == 200
    assert result_rows(form) == result_rows(body) == (names, rows)


@pytest.mark.parametrize("accept,fmt", [
    ("application/sparql-results+json", "json"), ("application/sparql-results+xml", "xml"),
    ("text/csv", "csv"), ("text/tab-separated-values", "tsv")])
def test_select_result_formats(server, accept, fmt):
    status, headers, body = sparql_get(server, CODES, accept)
    assert status == 200 and headers["Content-Type"].startswith(accept)
    _, want = result_rows(sparql_get(server, CODES, "application/sparql-results+json")[2])
    if fmt == "csv":  # CSV loses term types: compare the text
        table = list(csv.reader(io.StringIO(body.decode())))
        assert table[0] == ["code", "label"] and [r for r in table[1:]] == want
    else:
        assert result_rows(body, fmt)[1] == want
    if fmt == "xml":
        ET.fromstring(body)


def test_format_parameter_and_wildcards(server):
    assert sparql_get(server, CODES, None, format="csv")[1]["Content-Type"].startswith("text/csv")
    assert sparql_get(server, CODES, "*/*")[1]["Content-Type"] == "application/sparql-results+json"
    assert sparql_get(server, CODES, "text/html, application/sparql-results+xml;q=0.9")[1]["Content-Type"] \
        == "application/sparql-results+xml"
    status, _, body = sparql_get(server, CODES, "image/png")
    assert status == 406 and b"application/sparql-results+json" in body


@pytest.mark.parametrize("accept,rdf_format", [
    ("text/turtle", "turtle"), ("application/n-triples", "nt"), ("application/ld+json", "json-ld"),
    ("application/rdf+xml", "xml")])
def test_construct_formats(server, accept, rdf_format):
    status, headers, body = sparql_get(server, FACTS_77003, accept)
    assert status == 200 and headers["Content-Type"].startswith(accept)
    g = Graph().parse(data=body.decode(), format=rdf_format)
    kb = engine()[0]
    want = set(kb.graph.triples((URIRef("https://w3id.org/cptkg/code/77003"), None, None)))
    assert set(g) == want and len(g) > 10


def test_describe_and_ask(server):
    status, headers, body = sparql_get(server, "DESCRIBE <https://w3id.org/cptkg/code/77002>", "text/turtle")
    assert status == 200 and len(Graph().parse(data=body.decode(), format="turtle")) > 5
    for accept, expect in (("application/sparql-results+json", b'"boolean":true'), ("application/sparql-results+xml", b"<boolean>true")):
        status, headers, body = sparql_get(server, "ASK { ?s ?p ?o }", accept)
        assert status == 200 and expect in body and headers["Content-Type"].startswith(accept)


def test_named_graphs_per_module_and_data_file(server):
    q = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"
    _, rows = result_rows(sparql_get(server, q, "application/sparql-results+json")[2])
    graphs = {r[0] for r in rows}
    kb = engine()[0]
    for m in kb.content.modules:
        assert f"https://w3id.org/cptkg/graph/{m.id}" in graphs, m.id
    assert {"https://w3id.org/cptkg/graph/rules", "https://w3id.org/cptkg/graph/data/claims.csv",
            "https://w3id.org/cptkg/graph/data/encounters.json"} <= graphs
    # the protocol's default-graph-uri: one file's graph as the default graph
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    claims = dict(rows)["https://w3id.org/cptkg/graph/data/claims.csv"]
    _, only = result_rows(sparql_get(server, count, "application/sparql-results+json",
                                     **{"default-graph-uri": "https://w3id.org/cptkg/graph/data/claims.csv"})[2])
    assert only == [[claims]]


def test_syntax_error_is_400_with_the_engine_message(server):
    status, _, body = sparql_get(server, "SELECT ?x WHERE { ?x ?y }")
    assert status == 400 and b"refused the query" in body
    status, _, body = call(server + "sparql")
    assert status == 400 and b"query" in body


# --------------------------------------------------------------------------------------------
# Read-only, limits


@pytest.mark.parametrize("text,word", [
    ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", b"INSERT"),
    ("PREFIX x: <urn:x:> DELETE WHERE { ?s ?p ?o }", b"DELETE"),
    ("LOAD <http://127.0.0.1:9/data.ttl>", b"LOAD"),
    ("CLEAR ALL", b"CLEAR"),
    ("DROP GRAPH <urn:g>", b"DROP"),
])
def test_updates_are_refused(server, text, word):
    status, _, body = sparql_get(server, text)
    assert status == 403 and word in body and b"read-only" in body


def test_update_operations_are_refused_every_way(server):
    up = "INSERT DATA { <urn:a> <urn:b> <urn:c> }"
    assert call(server + "sparql", data=urlencode({"update": up}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert call(server + "sparql", data=up.encode(), headers={"Content-Type": "application/sparql-update"})[0] == 403
    assert call(server + "update", data=urlencode({"update": up}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
    assert call(server + "sparql", data=b"x", method="PUT")[0] == 405
    # and nothing was written
    assert sparql_get(server, "ASK { <urn:a> ?p ?o }", "application/sparql-results+json")[2].count(b"false") == 1


def test_service_is_refused_before_the_engine_sees_it(server):
    """Oxigraph would call the named endpoint: a listener on loopback shows nobody calls."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(1.5)
    port = listener.getsockname()[1]
    try:
        for q in (f"SELECT * WHERE {{ SERVICE <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}",
                  f"SELECT * WHERE {{ ?s ?p ?o .service silent <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}",
                  f"SELECT * WHERE {{ \\u0053ERVICE <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}"):
            status, _, body = sparql_get(server, q)
            assert status == 403 and b"SERVICE is refused" in body, body
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    # the word in a string, an IRI, a variable or a comment is no keyword
    ok = 'SELECT ?service WHERE { BIND ("SERVICE" AS ?service) } # SERVICE <http://x>'
    assert sparql_get(server, ok, "application/sparql-results+json")[0] == 200


def test_result_cap(server):
    huge = "WHERE { ?s ?p ?o . ?a ?b ?c }"  # tens of millions of rows, streamed: the cap stops it
    status, headers, body = sparql_get(server, "SELECT * " + huge, "text/csv")
    assert status == 200 and headers.get("X-Cptkg-Truncated") == "true" and headers.get("X-Cptkg-Result-Cap") == str(CAP)
    assert len(list(csv.reader(io.StringIO(body.decode())))) == CAP + 1
    status, headers, body = sparql_get(server, "CONSTRUCT { ?s ?p ?c } " + huge, "application/n-triples")
    assert status == 200 and headers.get("X-Cptkg-Truncated") == "true"
    assert len(Graph().parse(data=body.decode(), format="nt")) <= CAP
    assert len([line for line in body.decode().splitlines() if line.strip()]) == CAP
    status, headers, body = sparql_get(server, "SELECT * WHERE { ?s ?p ?o } LIMIT 10", "text/csv")
    assert "X-Cptkg-Truncated" not in headers and len(body.decode().splitlines()) == 11


def test_time_limit_stops_a_runaway_query_and_the_server_goes_on(server):
    """ORDER BY over a triple self-join: Oxigraph's own cancellation does not stop it (measured);
    the front answers 503 at the limit and restarts the engine."""
    runaway = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?c ?f ?i"
    t0 = time.monotonic()
    status, _, body = sparql_get(server, runaway)
    took = time.monotonic() - t0
    assert status == 503 and b"time limit" in body, body
    assert took < TIMEOUT + 10
    health = json.loads(call(server + "health")[2])
    assert health["timeouts"] >= 1 and health["engineRestarts"] >= 1
    assert sparql_get(server, CODES, "application/sparql-results+json")[0] == 200


def test_memory_limit_stops_a_runaway_query():
    """The engine is restarted when its resident memory passes --memory-limit; the query gets a 503."""
    from reasoner.serve import stop_spawned

    proc, url = _spawn("--quiet", "--memory-limit", "150", "--timeout", "60")
    try:
        t0 = time.monotonic()
        status, _, body = sparql_get(url, "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?c ?f ?i")
        assert status == 503 and b"memory limit" in body, body
        assert time.monotonic() - t0 < 30
        health = json.loads(call(url + "health")[2])
        assert health["engineMemoryRestarts"] == 1
        assert sparql_get(url, CODES, "application/sparql-results+json")[0] == 200
    finally:
        stop_spawned(proc)


def test_cors(server):
    status, headers, _ = call(server + "sparql?" + urlencode({"query": CODES}), headers={"Origin": "http://example.org"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    status, headers, _ = call(server + "sparql", method="OPTIONS", headers={
        "Origin": "http://example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]


def test_bearer_token(token_server):
    url = token_server + "sparql?" + urlencode({"query": "ASK {}"})
    status, headers, body = call(url)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and b"token" in body
    assert call(url, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call(url, headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert call(url + "&access_token=s3cret")[0] == 200
    assert call(token_server + "queries")[0] == 401
    assert call(token_server + "queries", headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert call(token_server)[0] == 200  # the page itself is open; it sends the token it is given
    assert call(token_server + "static/app.js")[0] == 200
    from SPARQLWrapper import JSON, SPARQLWrapper

    sw = SPARQLWrapper(token_server + "sparql")
    sw.addCustomHttpHeader("Authorization", "Bearer s3cret")
    sw.setQuery("ASK { ?s ?p ?o }")
    sw.setReturnFormat(JSON)
    assert sw.query().convert()["boolean"] is True


# --------------------------------------------------------------------------------------------
# Named queries


def test_queries_list(server):
    status, headers, body = call(server + "queries")
    assert status == 200 and headers["Content-Type"] == "application/json"
    listed = {q["id"]: q for q in json.loads(body)["queries"]}
    kb = engine()[0]
    assert set(listed) == {q.id for q in kb.content.reports}
    p = listed["primaries-for-add-on"]
    assert [x["name"] for x in p["params"]] == ["addon", "date"] and p["url"] == "/queries/primaries-for-add-on"
    assert p["title"] and p["text"].startswith("#")


def test_named_query_with_parameters_matches_cptkg_query(server):
    params = {"addon": "77003", "date": "2024-01-01"}
    status, headers, body = call(server + "queries/primaries-for-add-on?" + urlencode(params),
                                 headers={"Accept": "application/sparql-results+json"})
    assert status == 200
    names, rows = result_rows(body)
    want_names, want = local_rows("primaries-for-add-on", params)
    assert names == want_names and sorted(rows) == sorted(want) and rows
    status, headers, body = call(server + "queries/primaries-for-add-on?addon=77003&format=csv")
    assert headers["Content-Type"].startswith("text/csv") and body.startswith(b"addon,primary")


def test_named_query_errors(server):
    status, _, body = call(server + "queries/primaries-for-add-on?colour=blue")
    assert status == 400 and b"no parameter colour" in body
    status, _, body = call(server + "queries/primaries-for-add-on?date=yesterday")
    assert status == 400 and b"YYYY-MM-DD" in body
    assert call(server + "queries/no-such-report")[0] == 404


def normalised(query_text, names, rows):
    """Rows sorted, with each GROUP_CONCAT value's parts sorted: their order is each engine's choice."""
    seps = {}
    for m in re.finditer(r"GROUP_CONCAT\s*\((.*?)\)\s*AS\s*\?(\w+)", query_text, re.I | re.S):
        sep = re.search(r'separator\s*=\s*"([^"]*)"', m.group(1), re.I)
        seps[m.group(2)] = sep.group(1) if sep else " "
    cols = [seps.get(n) for n in names]
    return sorted([sep.join(sorted(c.split(sep))) if sep and c else c for c, sep in zip(r, cols)] for r in rows)


def test_every_named_query_returns_the_same_rows_as_cptkg_query(server):
    kb = engine()[0]
    for q in kb.content.reports:
        status, _, body = call(server + f"queries/{q.id}", headers={"Accept": "application/sparql-results+json"})
        assert status == 200, (q.id, body[:300])
        names, rows = result_rows(body)
        want_names, want = local_rows(q.id)
        assert names == want_names, q.id
        assert normalised(q.text, names, rows) == normalised(q.text, names, want), q.id


# --------------------------------------------------------------------------------------------
# Pages, /derive


def test_page_is_served_locally(server):
    status, headers, body = call(server)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    for needed in ('id="editor"', 'id="query-select"', 'id="results"', 'id="derive-input"', 'id="download-csv"'):
        assert needed in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ref.startswith("/"), f"the page loads {ref} from elsewhere"
    for name in ("app.js", "style.css"):
        status, _, body = call(server + "static/" + name)
        assert status == 200 and not re.search(rb"(?:import|fetch|src|url)\s*\(?\s*['\"]https?://", body)
    assert call(server + "static/../serve.py")[0] == 404


def test_code_page(server):
    status, headers, body = call(server + "code/62323")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Interlaminar epidural" in page  # what it is
    assert "includes guidance by" in page and "fluoroscopy" in page  # what it includes
    assert "primary: accepts the add-on" in page and "href='/code/77003'" in page  # pairs with
    assert "excluded by" in call(server + "code/77003")[2].decode()  # excluded by (bundling column 2)
    assert "replaces" in page and "62311" in page and "2016-12-31" in page  # edits and dates
    assert "<h2>Sources</h2>" in page and "src:" in page
    assert call(server + "code/99999")[0] == 404
    assert call(server + "code/<script>")[0] in (400, 404)


def test_derive(server):
    doc = json.loads((ROOT / "examples" / "encounters.json").read_text())
    enc = [e for e in doc["encounters"] if e["id"] in ("enc-tfesi-2024", "enc-lp-2021")]
    status, headers, body = call(server + "derive", data=json.dumps({"encounters": enc}).encode(),
                                 headers={"Content-Type": "application/json"})
    assert status == 200, body
    got = {e["id"]: e for e in json.loads(body)["encounters"]}
    assert {c["code"] for c in got["enc-lp-2021"]["codes"]} == {"62328"}
    tfesi = got["enc-tfesi-2024"]
    assert [c["code"] for c in tfesi["codes"]] == ["64483", "64484"]
    assert tfesi["codes"][0]["rules"][0]["id"] == "select-code-by-criteria"
    assert any(n["code"] == "77003" for n in tfesi["notReported"])
    # the server derives on the fast engine: the same as the reference engine's `cptkg derive --format json`
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "derive", "examples/encounters.json", "--format", "json",
                        "--encounter", "enc-tfesi-2024", "--engine", "reference"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    cli = json.loads(r.stdout)["encounters"][0]
    assert (cli["codes"], cli["notReported"]) == (tfesi["codes"], tfesi["notReported"])
    bad = dict(enc[0], procedures=[{"kind": "transforaminal-epidural-injection", "levles": 2}])
    status, _, body = call(server + "derive", data=json.dumps(bad).encode(), headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["encounters"][0]["error"]["field"] == "procedures[0].levles"
    status, _, body = call(server + "derive", data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and b"not JSON" in body
    assert call(server + "derive")[0] == 405


# --------------------------------------------------------------------------------------------
# Standard clients, export, --endpoint


def test_sparqlwrapper(server):
    from SPARQLWrapper import JSON, N3, TURTLE, XML, SPARQLWrapper

    sw = SPARQLWrapper(server + "sparql")
    sw.setQuery(CODES)
    sw.setReturnFormat(JSON)
    rows = sw.query().convert()["results"]["bindings"]
    assert any(b["code"]["value"] == "77003" for b in rows)
    sw.setReturnFormat(XML)
    assert len(sw.query().convert().getElementsByTagName("result")) == len(rows)
    sw.setMethod("POST")
    sw.setReturnFormat(JSON)
    assert len(sw.query().convert()["results"]["bindings"]) == len(rows)
    sw.setQuery(FACTS_77003)
    sw.setReturnFormat(TURTLE)
    g = Graph().parse(data=sw.query().convert(), format="turtle")
    assert (URIRef("https://w3id.org/cptkg/code/77003"), None, None) in g
    sw.setReturnFormat(XML)  # CONSTRUCT as RDF/XML, converted to an rdflib Graph by SPARQLWrapper
    assert len(sw.query().convert()) == len(g)
    assert N3  # imported: the formats SPARQLWrapper names


def test_rdflib_sparqlstore(server):
    from rdflib.plugins.stores.sparqlstore import SPARQLStore

    store = SPARQLStore(server + "sparql", returnFormat="xml")
    g = Graph(store=store)
    rows = list(g.query(CODES))
    assert any(str(r[0]) == "77003" for r in rows)
    code = URIRef("https://w3id.org/cptkg/code/77003")
    facts = list(g.triples((code, None, None)))
    assert len(facts) > 10
    assert len(g.query(FACTS_77003).graph) == len(facts)
    assert g.query("ASK { ?s ?p ?o }").askAnswer is True
    store.close()


def test_export_is_nquads_with_a_graph_per_module_and_file(tmp_path):
    from rdflib import Dataset

    out = tmp_path / "kb.nq"
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "export", "--data", "examples/claims.csv", "-o", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ds = Dataset()
    ds.parse(out, format="nquads")
    names = {str(g.identifier) for g in ds.graphs() if len(g)}
    kb = engine()[0]
    assert {f"https://w3id.org/cptkg/graph/{m.id}" for m in kb.content.modules} <= names
    assert "https://w3id.org/cptkg/graph/data/claims.csv" in names
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "export"], cwd=ROOT, capture_output=True, timeout=600)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == sum(len(g) for g in kb.dataset.graphs())


def test_query_against_an_endpoint(server):
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "reasoner.cli", "query", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
        return r.returncode, r.stdout, r.stderr

    local = cli("claims-guidance-included", "--data", "examples/claims.csv", "--format", "csv")
    remote = cli("claims-guidance-included", "--endpoint", server + "sparql", "--format", "csv")
    assert local[0] == remote[0] == 0 and local[1] == remote[1] and "CLM-" in remote[1]
    remote = cli("primaries-for-add-on", "--param", "addon=77003", "--endpoint", server + "sparql")
    assert remote[0] == 0 and "62273" in remote[1]
    code, _, err = cli("primaries-for-add-on", "--endpoint", server + "sparql", "--data", "examples/claims.csv")
    assert code == 2 and "export" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    code, _, err = cli("deleted-codes", "--endpoint", f"http://127.0.0.1:{dead}/sparql")
    assert code == 2 and "cannot reach" in err


def test_concurrent_clients_get_no_errors(server):
    """A small bounded load (the bench does the big one): 8 threads x 25 queries."""
    errors = []

    def worker(i):
        for j in range(25):
            q = f'SELECT ?p ?o WHERE {{ ?c <http://www.w3.org/2004/02/skos/core#notation> "{["77002", "77003", "62323", "64483"][(i + j) % 4]}" ; ?p ?o }}'
            status, _, _ = sparql_get(server, q, "application/sparql-results+json")
            if status != 200:
                errors.append(status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


# --------------------------------------------------------------------------------------------
# The page in headless Chromium


@pytest.fixture(scope="module")
def browser():
    debian_packages("chromedriver", ["chromium", "chromium-driver"])
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.skip(f"selenium is not installed: {exc}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
              "--disable-extensions", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-domain-reliability", "--no-default-browser-check",
              "--window-size=1280,1000",
              # loopback only: any other host name fails to resolve inside the browser
              "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def until(browser, wait, condition):
    """Wait; on a timeout, fail with what the page says."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    try:
        return wait.until(condition)
    except TimeoutException:
        said = {i: browser.find_element(By.ID, i).text for i in ("result-status", "derive-status")}
        pytest.fail(f"the page did not get there; it says {said}")


def test_page_in_a_browser_runs_a_named_query_and_derives(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "queries")
    Select(browser.find_element(By.ID, "query-select")).select_by_value("primaries-for-add-on")
    addon = browser.find_element(By.ID, "param-addon")
    addon.clear()
    addon.send_keys("77003")
    browser.find_element(By.ID, "run-named").click()
    until(browser, wait, lambda d: d.find_elements(By.CSS_SELECTOR, "#results-table tbody tr"))
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#results-table tbody td")]
    assert "62273" in cells
    assert "rows" in browser.find_element(By.ID, "result-status").text
    assert browser.find_element(By.ID, "download-csv").is_enabled()

    # the editor
    browser.find_element(By.ID, "editor").clear()
    browser.find_element(By.ID, "editor").send_keys(CODES)
    browser.find_element(By.ID, "run-sparql").click()
    until(browser, wait, lambda d: "77003" in [td.text for td in d.find_elements(By.CSS_SELECTOR, "#results-table tbody td")])

    # derive a pasted encounter
    doc = json.loads((ROOT / "examples" / "encounters.json").read_text())
    enc = next(e for e in doc["encounters"] if e["id"] == "enc-tfesi-2024")
    browser.execute_script("document.getElementById('derive-input').value = arguments[0];", json.dumps(enc))
    browser.find_element(By.ID, "derive-run").click()
    until(browser, wait, lambda d: d.find_elements(By.CSS_SELECTOR, "#derive-output .code-line.reported"))
    reported = [e.get_attribute("data-code") for e in browser.find_elements(By.CSS_SELECTOR, "#derive-output .code-line.reported")]
    assert reported == ["64483", "64484"]
    text = browser.find_element(By.ID, "derive-output").text
    assert "select-code-by-criteria" in text and "77003" in text  # a reason, and the code it did not report

    # a code's page, from a link in the derivation
    browser.find_element(By.CSS_SELECTOR, "#derive-output .code-line.reported a[data-code='64483']").click()
    wait.until(lambda d: d.find_elements(By.TAG_NAME, "h1") and d.find_element(By.TAG_NAME, "h1").text == "64483")
    assert "Sources" in browser.find_element(By.TAG_NAME, "main").text
