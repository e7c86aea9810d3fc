"""Beyond one machine: `cptkg export` loaded into a real third-party SPARQL store (Virtuoso Open Source,
from Debian's packages) answers every named query with the same rows as the embedded server, each run
unchanged through `cptkg query --endpoint`'s code path."""
import shutil
import subprocess
import sys

import pytest

from harness import ROOT, engine
from sysdeps import Virtuoso, debian_packages
from test_serve import DATA, normalised


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    from reasoner.serve import spawn, stop_spawned

    debian_packages("virtuoso-t", ["virtuoso-opensource"])
    if not shutil.which("isql-vt"):
        pytest.skip("isql-vt is missing (it comes with virtuoso-opensource)")
    folder = tmp_path_factory.mktemp("virtuoso")
    load, db = folder / "load", folder / "db"
    load.mkdir()
    db.mkdir()
    args = [a for d in DATA for a in ("--data", d)]
    r = subprocess.run([sys.executable, "-m", "reasoner.cli", "export", *args, "-o", str(load / "cptkg.nq")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    virtuoso = Virtuoso(db, load)
    proc = None
    try:
        virtuoso.start()
        virtuoso.bulk_load()
        proc, url = spawn(["--quiet", *DATA], cwd=ROOT)
        yield virtuoso.endpoint, url + "sparql"
    finally:
        if proc is not None:
            stop_spawned(proc)
        virtuoso.stop()


def test_virtuoso_holds_the_export(endpoints):
    from reasoner.serve import remote_query

    virtuoso, _ = endpoints
    q = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } FILTER (STRSTARTS(STR(?g), 'https://w3id.org/cptkg/graph/')) }"
    n = int(list(remote_query(virtuoso, q))[0][0])
    kb = engine()[0]
    assert n >= sum(len(g) for g in kb.dataset.graphs())


def test_every_named_query_returns_the_same_rows_on_virtuoso(endpoints):
    from reasoner.query import bind_params, rows
    from reasoner.serve import remote_query

    virtuoso, embedded = endpoints
    kb = engine()[0]
    differ = []
    for q in kb.content.reports:
        text = bind_params(q, {})
        names_v, rows_v = rows(remote_query(virtuoso, text))
        names_e, rows_e = rows(remote_query(embedded, text))
        assert rows_e, f"{q.id}: no rows on the embedded server"
        if names_v != names_e or normalised(q.text, names_e, rows_v) != normalised(q.text, names_e, rows_e):
            differ.append(q.id)
            extra_v = [r for r in normalised(q.text, names_e, rows_v) if r not in normalised(q.text, names_e, rows_e)]
            extra_e = [r for r in normalised(q.text, names_e, rows_e) if r not in normalised(q.text, names_e, rows_v)]
            print(q.id, names_v, names_e, "\nonly virtuoso:", extra_v[:5], "\nonly embedded:", extra_e[:5], len(rows_v), len(rows_e))
    assert not differ, f"reports whose rows differ between Virtuoso and the embedded server: {differ}"
