"""The command line as a user meets it: README commands, formats, exit codes, errors."""
import json
import re
import subprocess
import sys

import pytest

from harness import ROOT

CLI = [sys.executable, "-m", "reasoner.cli"]


def run(*args, input=None):
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, input=input, timeout=600)


def readme_tour():
    text = (ROOT / "README.md").read_text()
    block = text.split("## A short tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [l.split("  #", 1)[0].strip() for l in block.splitlines() if l.strip().startswith("cptkg ")]
    return [l.split()[1:] for l in lines]


def test_readme_has_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", text, re.S)
    assert any("pip install" in b and "cptkg derive examples/" in b for b in blocks)
    assert any("pip install" in b and "pytest" in b for b in blocks)
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd.strip() in ci, ".ci/run must run the README's test command"


def test_readme_main_job_runs():
    """The cptkg part of the README's first command, as a new user runs it."""
    text = (ROOT / "README.md").read_text()
    first = re.findall(r"```sh\n(.*?)\n```", text, re.S)[0]
    for part in first.split("&&"):
        part = part.strip()
        if part.startswith(".venv/bin/cptkg"):
            r = run(*part.split()[1:])
            assert r.returncode == 0, r.stderr + r.stdout
            assert "Report" in r.stdout or "findings" in r.stdout


@pytest.mark.parametrize("args", readme_tour(), ids=lambda a: " ".join(a)[:60])
def test_readme_tour_command(args):
    r = run(*args)
    expected = 1 if args[0] == "validate" and "--fail-on" not in args and "csv" not in args else 0
    if args[0] == "validate":
        assert r.returncode in (0, 1), r.stderr
    else:
        assert r.returncode == expected, r.stderr + r.stdout[-2000:]
    assert r.stdout.strip(), "no output"


def test_derive_json_schema():
    r = run("derive", "examples/encounters.json", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schemaVersion"] == "1"
    enc = {e["id"]: e for e in doc["encounters"]}
    lp19, lp21 = enc["enc-lp-2019"], enc["enc-lp-2021"]
    assert {c["code"] for c in lp19["codes"]} == {"62270", "77003"}
    assert {c["code"] for c in lp21["codes"]} == {"62328"}
    c = lp21["codes"][0]
    for key in ("code", "label", "units", "modifiers", "rules", "codeSources", "acts", "addOn"):
        assert key in c
    assert c["rules"][0]["id"] == "select-code-by-criteria" and c["rules"][0]["sources"]
    assert any("includes" in r["reason"] for n in lp21["notReported"] if n["code"] == "77003" for r in n["reasons"])


def test_derive_ttl_is_rdf():
    from rdflib import Graph

    r = run("derive", "examples/encounter.ttl", "--format", "ttl")
    assert r.returncode == 0, r.stderr
    g = Graph().parse(data=r.stdout, format="turtle")
    q = """PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
           SELECT ?n WHERE { ?l a cptkg:CodeLine ; cptkg:code ?c ; cptkg:derivedBy ?rule .
                             FILTER NOT EXISTS { ?s cptkg:suppresses ?l }
                             BIND (REPLACE(STR(?c), "^.*/", "") AS ?n) }"""
    assert {str(row.n) for row in g.query(q)} == {"64493"}


def test_validate_exit_codes_and_formats(tmp_path):
    r = run("validate", "examples/claims.csv", "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["summary"]["claims"] == 8 and doc["summary"]["errors"] == 0
    shapes = {f["shape"] for f in doc["findings"]}
    assert {"GuidanceIncludedInPrimary", "BundledPair", "AddOnWithoutPrimary", "UnitLimitPerDay",
            "CodeValidOnDate", "FluoroscopyIntegral", "Modifier26InFacility"} <= shapes
    clean = tmp_path / "clean.csv"
    clean.write_text("claim_id,code,units,date_of_service,place_of_service,claim_type\nA,62273,1,2024-01-02,11,professional\nA,77003,1,2024-01-02,11,professional\n")
    r = run("validate", str(clean))
    assert r.returncode == 0, r.stdout
    r = run("validate", "examples/claims.csv", "--format", "csv")
    assert r.stdout.splitlines()[0].startswith("claim,line,code,severity,message,shape")


def test_bad_input_names_file_record_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("claim_id,code,units,date_of_service,place_of_service,claim_type\n"
                   "A,62273,1,2024-01-02,11,professional\n"
                   "B,77003,two,2024-01-02,11,professional\n"
                   "C,77003,1,2024-01-02,11,professional\n")
    r = run("validate", str(bad), "--format", "json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["summary"]["claims"] == 3 and doc["summary"]["byStatus"] == {"conforms": 1, "error": 1, "violation": 1}  # nothing dropped silently
    err = doc["errors"][0]
    assert err["line"] == 3 and err["field"] == "units" and "bad.csv" in err["file"]
    assert "bad.csv:3" in r.stderr
    enc = tmp_path / "enc.json"
    enc.write_text(json.dumps({"encounters": [
        {"id": "ok", "dateOfService": "2024-01-02", "placeOfService": "11", "claimType": "professional",
         "procedures": [{"kind": "trigger-point-injection"}]},
        {"id": "bad", "dateOfService": "2024-01-02", "placeOfService": "11", "claimType": "professional",
         "procedures": [{"kind": "trigger-point-injection", "musles": 2}]}]}))
    r = run("derive", str(enc), "--format", "json")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert [e["id"] for e in doc["encounters"]] == ["ok", "bad"]
    assert doc["encounters"][1]["error"]["field"] == "procedures[0].musles"
    assert "record bad" in r.stderr


def test_missing_file_and_unknown_report():
    r = run("derive", "no/such/file.json")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("query", "no-such-report")
    assert r.returncode == 2 and "no report query named" in r.stderr
    r = run("query", "primaries-for-add-on", "--param", "colour=blue")
    assert r.returncode == 2 and "no parameter colour" in r.stderr


def test_query_reports_run_and_return_rows():
    from harness import engine
    from reasoner.query import rows, run_query

    kb = engine()[0]
    empty = []
    for q in kb.content.reports:
        data = ["examples/claims.csv"] if q.id.startswith("claims-") else []
        names, data_rows = rows(run_query(kb, q.id, data=[str(ROOT / d) for d in data]))
        if not data_rows:
            empty.append(q.id)
    assert not empty, f"reports returning no rows on the examples: {empty}"


def test_check_passes():
    r = run("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HermiT: consistent" in r.stdout
