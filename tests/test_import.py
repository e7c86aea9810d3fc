"""`cptkg import ncci`: the CMS NCCI layouts in, generated modules out, and the edits taking effect.

Fixtures: tests/fixtures/ncci (FIXTURES in the published layouts, see its README). Every import
runs into a temporary copy of the content root (ontology/, queries/, shapes/), never this checkout.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF, RDFS, SKOS

from harness import ROOT, content_copy, engine
from reasoner.check import duplicate_problems, imports_problems, run_check
from reasoner.cli import main as cli
from reasoner.content import discover
from reasoner.importers.ncci import run_import
from reasoner.inputs import record_from_object
from reasoner.kb import KnowledgeBase
from reasoner.render import summarize_encounter
from reasoner.rules import Deriver
from reasoner.validate import ClaimValidator
from reasoner.vocab import CPT, CPTKG

FIX = ROOT / "tests" / "fixtures" / "ncci"
PTP_TXT = FIX / "ccipra-v323r0-f1.TXT"
PTP_XLSX = FIX / "ccipra-v323r0-f1.xlsx"
MUE_PRA = FIX / "MCR_MUE_PractitionerServices_Eff_10-01-2026.csv"
MUE_PRA_XLSX = FIX / "MCR_MUE_PractitionerServices_Eff_10-01-2026.xlsx"
MUE_OPH = FIX / "MCR_MUE_OutpatientHospitalServices_Eff_10-01-2026.csv"
MUE_DME = FIX / "MCR_MUE_DMESupplierServices_Eff_10-01-2026.csv"
AOC_XLSX = FIX / "AOC_V2026Q4-MCR.xlsx"
AOC_TXT = FIX / "AOC_V2026Q4-MCR.txt"
PRACTITIONER = URIRef("https://w3id.org/cptkg/cms-table/practitioner")
FACILITY = URIRef("https://w3id.org/cptkg/cms-table/facility")
HEADER = "notice, title or header line before the data"
OUTSIDE = "outside scope kb (no code of the graph)"


def do_import(root, *paths, quarter="2026Q4", scope="kb", setting=None):
    return run_import(discover(root), list(paths), quarter, scope=scope, setting=setting)


def module_graph(root, name):
    return Graph().parse(Path(root) / "ontology" / "edits" / "generated" / f"{name}.ttl", format="turtle")


def edits(g, cls):
    return sorted(g.subjects(RDF.type, cls), key=str)


def date(text):
    from rdflib.namespace import XSD  # not at module level: pytest's collection trips on the closed namespace

    return Literal(text, datatype=XSD.date)


def stats_of(result, family):
    (w,) = [w for w in result.modules if w.family == family]
    return w.files


@pytest.fixture
def root(tmp_path):
    return content_copy(tmp_path / "content")


# --------------------------------------------------------------------------------------------
# Layouts

def test_ptp_txt_layout_counts_and_values(root):
    raw = PTP_TXT.read_bytes()
    assert raw.count(b"\r\n") == 28 and raw.startswith(b"CPT only copyright 2025 American Medical Association.  All")
    result = do_import(root, PTP_TXT, scope="all")
    assert result.ok, result.errors
    (st,) = stats_of(result, "ptp")
    assert (st.read, st.data, st.written, st.malformed) == (28, 22, 22, 0)
    assert dict(st.skipped) == {HEADER: 6}
    g = module_graph(root, "ptp-practitioner-2026Q4")
    bundling = edits(g, CPTKG.BundlingEdit)
    assert len(bundling) == 22  # duplicate keys kept: one node per row

    def rows(c1, c2):
        return [e for e in bundling if g.value(e, CPTKG.column1) == CPT[c1] and g.value(e, CPTKG.column2) == CPT[c2]]

    twins = rows("13121", "13120")
    assert len(twins) == 2
    nine = next(e for e in twins if g.value(e, CPTKG.modifierIndicator) == Literal("9"))
    zero = next(e for e in twins if g.value(e, CPTKG.modifierIndicator) == Literal("0"))
    assert g.value(nine, CPTKG.effectiveThrough) == date("1996-01-01")
    assert g.value(zero, CPTKG.effectiveThrough) is None  # deletion "*": none
    assert g.value(zero, CPTKG.effectiveFrom) == date("1996-01-01")
    assert "prior to 1996" in str(g.value(zero, CPTKG.note)) and g.value(nine, CPTKG.note) is None
    (e,) = rows("0001A", "0591T")  # codes stay text: leading zeros, letters
    assert (g.value(e, CPTKG.effectiveFrom), g.value(e, CPTKG.effectiveThrough)) == (date("2022-01-01"), date("2023-12-31"))
    assert g.value(e, CPTKG.appliesToSetting) == PRACTITIONER
    assert str(g.value(e, RDFS.label)).endswith("CPT Manual or CMS manual coding instruction")
    assert len(rows("77002", "76942")) == 2 and len(rows("17000", "17281")) == 2
    # the module says what it is
    (mod,) = g.subjects(RDF.type, OWL.Ontology)
    assert g.value(mod, CPTKG.generated) == Literal(True)
    comment = str(g.value(mod, RDFS.comment))
    for text in ("ccipra-v323r0-f1.TXT", "2026Q4", st.part.sha256, "28 records read, 22 data rows, 22 written",
                 "6 notice, title or header", "cptkg 0.1.0", "not sized for"):
        assert text in comment, text
    src = g.value(mod, URIRef("http://purl.org/dc/terms/source"))
    assert (src, RDF.type, CPTKG.Source) in g and (e, URIRef("http://purl.org/dc/terms/source"), src) in g
    # unknown codes get one stanza each, in the shared generated module, typed by their shape
    codes = module_graph(root, "ncci-codes")
    assert (CPT["G0008"], RDF.type, CPTKG.HCPCSCode) in codes
    assert (CPT["0001A"], SKOS.notation, Literal("0001A")) in codes
    assert codes.value(CPT["0001A"], CPTKG.knownInUseBy) == date("2022-01-01")
    assert (CPT["77002"], None, None) not in codes  # described by the hand-written graph


def test_ptp_xlsx_gives_the_same_edits_as_the_txt(root, tmp_path):
    do_import(root, PTP_TXT, scope="all")
    txt = set(edits(module_graph(root, "ptp-practitioner-2026Q4"), CPTKG.BundlingEdit))
    other = content_copy(tmp_path / "other")
    result = do_import(other, PTP_XLSX, scope="all")
    assert result.ok, result.errors
    (st,) = stats_of(result, "ptp")
    assert (st.data, st.written, dict(st.skipped)) == (22, 22, {HEADER: 6})
    assert set(edits(module_graph(other, "ptp-practitioner-2026Q4"), CPTKG.BundlingEdit)) == txt  # same row, same IRI


def test_mue_csv_latin1_notice_and_setting_from_header(root):
    raw = MUE_PRA.read_bytes()
    assert b"CPT\xae is a registered" in raw and b'"HCPCS/\nCPT Code"' in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    result = do_import(root, MUE_PRA, MUE_OPH, scope="all")
    assert result.ok, result.errors
    by_setting = {w.setting: w.files[0] for w in result.modules}
    assert (by_setting["practitioner"].read, by_setting["practitioner"].data) == (15, 13)  # notice + header + 13
    assert dict(by_setting["practitioner"].skipped) == {HEADER: 2}
    assert (by_setting["facility"].data, by_setting["facility"].written) == (7, 7)
    g = module_graph(root, "mue-practitioner-2026Q4")
    limits = {str(g.value(e, CPTKG.code)).rsplit("/", 1)[1]: e for e in edits(g, CPTKG.UnitLimit)}
    assert set(limits) >= {"0001U", "0002M", "76942", "77002", "77003", "77012", "77021", "71046"}
    e = limits["77002"]
    assert g.value(e, CPTKG.maxUnits) == Literal(1) and g.value(e, CPTKG.adjudication) == Literal("2")
    assert g.value(e, CPTKG.appliesToSetting) == PRACTITIONER
    assert (g.value(e, CPTKG.effectiveFrom), g.value(e, CPTKG.effectiveThrough)) == (date("2026-10-01"), date("2026-12-31"))
    assert g.value(limits["0002M"], CPTKG.adjudication) == Literal("3")
    f = module_graph(root, "mue-facility-2026Q4")
    zero = next(e for e in edits(f, CPTKG.UnitLimit) if f.value(e, CPTKG.code) == CPT["E0114"])
    assert f.value(zero, CPTKG.maxUnits) == Literal(0) and f.value(zero, CPTKG.appliesToSetting) == FACILITY


def test_mue_xlsx_gives_the_same_limits_as_the_csv(root, tmp_path):
    do_import(root, MUE_PRA, scope="all")
    other = content_copy(tmp_path / "other")
    result = do_import(other, MUE_PRA_XLSX, scope="all")
    assert result.ok, result.errors
    assert set(edits(module_graph(other, "mue-practitioner-2026Q4"), CPTKG.UnitLimit)) == \
        set(edits(module_graph(root, "mue-practitioner-2026Q4"), CPTKG.UnitLimit))


def test_aoc_xlsx_and_fixed_width_txt(root, tmp_path):
    result = do_import(root, AOC_XLSX, scope="all")
    assert result.ok, result.errors
    (st,) = stats_of(result, "aoc")
    assert (st.read, st.data, st.written, dict(st.skipped)) == (7, 5, 5, {HEADER: 2})
    g = module_graph(root, "aoc-all-2026Q4")
    add_on = edits(g, CPTKG.AddOnEdit)
    assert len(add_on) == 5
    (cc,) = [e for e in add_on if g.value(e, CPTKG.addOn) == CPT["77001"]]
    assert g.value(cc, CPTKG.primary) is None and g.value(cc, CPTKG.aocType) == Literal("2")  # CCCCC
    assert g.value(cc, CPTKG.effectiveFrom) == date("2014-01-01") and "Contractor Defined" in str(g.value(cc, CPTKG.note))
    (deleted,) = [e for e in add_on if g.value(e, CPTKG.addOn) == CPT["99292"]]
    assert g.value(deleted, CPTKG.effectiveThrough) == date("2024-12-31")  # 2024366: leap year
    assert g.value(deleted, CPTKG.primary) == CPT["99291"] and g.value(deleted, CPTKG.aocType) == Literal("1")
    assert g.value(deleted, CPTKG.appliesToSetting) is None  # the AOC file serves both settings
    codes = module_graph(root, "ncci-codes")
    assert (CPT["33924"], RDF.type, CPTKG.AddOnCode) in codes
    assert codes.value(CPT["33924"], CPTKG.addOnFrom) == date("2015-01-01")
    other = content_copy(tmp_path / "other")
    result = do_import(other, AOC_TXT, scope="all")
    assert result.ok, result.errors
    assert set(edits(module_graph(other, "aoc-all-2026Q4"), CPTKG.AddOnEdit)) == set(add_on)


def test_cms_zip_member_picked_by_name(root, tmp_path):
    z = tmp_path / "medicare-ncci-2026q4-practitioner-ptp-edits-ccipra-v323r0-f1.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(PTP_TXT, "ccipra-v323r0-f1.TXT")
        zf.write(PTP_XLSX, "ccipra-v323r0-f1.xlsx")
        zf.writestr("readme.txt", "not a table")
    result = do_import(root, z, scope="all")
    assert result.ok, result.errors
    (st,) = stats_of(result, "ptp")
    assert st.part.member == "ccipra-v323r0-f1.TXT" and st.written == 22
    assert any("readme.txt" in n for n in st.part.notes)


# --------------------------------------------------------------------------------------------
# Scope, registration, re-import

def test_scope_kb_keeps_rows_touching_the_graph(root):
    result = do_import(root, PTP_TXT, MUE_PRA, MUE_OPH, AOC_XLSX)
    assert result.ok, result.errors
    (ptp,) = stats_of(result, "ptp")
    assert (ptp.data, ptp.written, ptp.skipped[OUTSIDE]) == (22, 8, 14)
    (aoc,) = stats_of(result, "aoc")
    assert (aoc.written, aoc.skipped[OUTSIDE]) == (3, 2)  # 77001 and 77003 rows; 33924, 99292 not in the graph
    facility = next(w for w in result.modules if w.setting == "facility")
    assert facility.files[0].written == 0  # none of its codes is in the graph: an empty, still valid module
    g = module_graph(root, "ptp-practitioner-2026Q4")
    named = {o for e in edits(g, CPTKG.BundlingEdit) for o in g.objects(e, CPTKG.column1)}
    assert CPT["0627T"] in named  # the other code of a kept row stays an IRI ...
    codes = module_graph(root, "ncci-codes")
    assert sorted(str(s).rsplit("/", 1)[1] for s in codes.subjects(SKOS.notation, None)) == ["0627T", "0628T"]
    assert (CPT["0627T"], SKOS.notation, None) not in g  # ... with its stanza in ncci-codes only


def test_generated_modules_pass_check(root):
    do_import(root, PTP_TXT, MUE_PRA, MUE_OPH, AOC_TXT, scope="all")
    ok, lines = run_check(discover(root), owl=False)
    assert ok, "\n".join(l for l in lines if not l.startswith("ok"))


def test_registration_is_idempotent_and_reimport_replaces(root):
    do_import(root, PTP_TXT, AOC_XLSX)
    gen = root / "ontology" / "edits" / "generated"
    first = {p.name: p.read_bytes() for p in gen.iterdir()}
    head = (root / "ontology" / "cptkg.ttl").read_text()
    catalog = (root / "ontology" / "catalog-v001.xml").read_text()
    do_import(root, PTP_TXT, AOC_XLSX)
    assert {p.name: p.read_bytes() for p in gen.iterdir()} == first  # same input, same bytes
    assert (root / "ontology" / "cptkg.ttl").read_text() == head
    assert (root / "ontology" / "catalog-v001.xml").read_text() == catalog
    assert head.count("module/ncci-ptp-practitioner-2026Q4>") == 1 and catalog.count("ncci-codes\"") == 1
    g = Graph().parse(root / "ontology" / "cptkg.ttl", format="turtle")
    imports = set(g.objects(None, OWL.imports))
    assert URIRef("https://w3id.org/cptkg/module/ncci-aoc-all-2026Q4") in imports
    before = set(Graph().parse(ROOT / "ontology" / "cptkg.ttl", format="turtle").objects(None, OWL.imports))
    assert imports - before == {URIRef(f"https://w3id.org/cptkg/module/ncci-{n}")
                                for n in ("aoc-all-2026Q4", "ptp-practitioner-2026Q4", "codes")}
    content = discover(root)
    assert imports_problems(content) == []
    do_import(root, PTP_TXT, scope="all")  # the same module, wider scope: replaced, not added
    assert len(edits(module_graph(root, "ptp-practitioner-2026Q4"), CPTKG.BundlingEdit)) == 22
    assert imports_problems(discover(root)) == []
    assert duplicate_problems(KnowledgeBase(discover(root))) == []


def test_aoc_scope_kb_keeps_whole_add_on_groups(root, tmp_path):
    """An add-on the graph lacks but whose primary it has: all its rows (a complete primary list);
    an add-on the graph describes without cptkg:AddOnCode: skipped with a warning."""
    rows = ["1" + "12345" + " " * 7 + "62273" + " " * 7 + "2018001" + " " * 7,
            "1" + "12345" + " " * 7 + "54321" + " " * 7 + "2018001" + " " * 7,
            "1" + "76942" + " " * 7 + "62273" + " " * 7 + "2018001" + " " * 7]
    path = tmp_path / "AOC_V2026Q4-MCR.txt"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("latin-1"))
    result = do_import(root, path)
    (st,) = stats_of(result, "aoc")
    assert st.written == 2 and st.skipped["add-on code described by the graph without cptkg:AddOnCode"] == 1
    assert any("76942" in w for w in result.modules[0].warnings)
    codes = module_graph(root, "ncci-codes")
    assert (CPT["12345"], RDF.type, CPTKG.AddOnCode) in codes and (CPT["54321"], RDF.type, CPTKG.CPTCode) in codes
    ok, lines = run_check(discover(root), owl=False)
    assert ok, "\n".join(l for l in lines if not l.startswith("ok"))


# --------------------------------------------------------------------------------------------
# Bad input: reported with file, line, record and field; the import goes on; exit 2

def test_malformed_rows_reported_and_import_continues(root, tmp_path, capsys):
    bad_ptp = tmp_path / "ccipra-v323r0-f1.TXT"
    bad_ptp.write_bytes(PTP_TXT.read_bytes() + (
        "73040\t77002\t\t2007011\t*\t0\tStandards of medical/surgical practice\r\n"
        "77002\t76942\t\t20160101\t20231231\t7\tStandards of medical/surgical practice\r\n"
        "7700\t76942\t\t20160101\t*\t1\tMutually exclusive procedures\r\n"
        "62323\t77003\t\t20170101\t*\r\n"
        "\r\n"
        "Note: footnote line after the data\t\t\t\t\t\t\r\n").encode("latin-1"))
    bad_mue = tmp_path / "MCR_MUE_PractitionerServices_Eff_10-01-2026.csv"
    bad_mue.write_bytes(MUE_PRA.read_bytes() + b"77001,two,2 Date of Service Edit: Policy,CMS Policy\n"
                        b"77001,2,4 Date of Service Edit: Policy,CMS Policy\n")
    rc = cli(["--content", str(root), "import", "ncci", str(bad_ptp), str(bad_mue), "--quarter", "2026Q4"])
    out, err = capsys.readouterr()
    assert rc == 2
    for text in (f"{bad_ptp}:29, record 73040/77002, field 'Effective Date'",
                 f"{bad_ptp}:30, record 77002/76942, field 'Modifier'",
                 f"{bad_ptp}:31, record 7700/76942, field 'Column 1'",
                 f"{bad_ptp}:32, record 62323/77003: expected 7 tab-separated fields",
                 f"{bad_mue}:23, record 77001, field 'MUE Values'",
                 f"{bad_mue}:24, record 77001, field 'MUE Adjudication Indicator'"):
        assert text in err, f"{text!r} not in:\n{err}"
    assert "8 written" in out and "4 malformed (reported)" in out and "1 footnote" in out and "done in" in out
    g = module_graph(root, "ptp-practitioner-2026Q4")
    assert len(edits(g, CPTKG.BundlingEdit)) == 8  # the good rows are in
    assert "4 malformed" in str(g.value(next(g.subjects(RDF.type, OWL.Ontology)), RDFS.comment))


def test_files_refused_with_a_reason(root, tmp_path, capsys):
    unnamed = tmp_path / "ptp-edits.txt"
    shutil.copy(PTP_TXT, unnamed)
    rc = cli(["--content", str(root), "import", "ncci", str(unnamed), str(MUE_DME), "--quarter", "2026Q4"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot tell the practitioner table from the facility one" in err and "DME supplier" in err
    rc = cli(["--content", str(root), "import", "ncci", str(unnamed), "--quarter", "2026Q4", "--setting", "facility"])
    assert rc == 0 and (root / "ontology" / "edits" / "generated" / "ptp-facility-2026Q4.ttl").exists()
    rc = cli(["--content", str(root), "import", "ncci", str(MUE_PRA), "--quarter", "2026Q4", "--setting", "facility"])
    assert rc == 2 and "is the practitioner table, but --setting facility" in capsys.readouterr().err
    junk = tmp_path / "notes.txt"
    junk.write_text("nothing to see\n")
    assert cli(["--content", str(root), "import", "ncci", str(junk), "--quarter", "2026Q4"]) == 2
    assert "not a CMS NCCI table" in capsys.readouterr().err
    assert cli(["--content", str(root), "import", "ncci", str(PTP_TXT), "--quarter", "2026-10"]) == 2


def test_quarter_from_the_name_is_checked(root):
    result = do_import(root, PTP_TXT, quarter="2026Q3")
    assert any("implies 2026Q4" in w for w in result.modules[0].warnings)


# --------------------------------------------------------------------------------------------
# The imported edits take effect in validate and derive (no rule change)

@pytest.fixture(scope="module")
def imported_kb(tmp_path_factory):
    root = content_copy(tmp_path_factory.mktemp("imported") / "content")
    result = do_import(root, PTP_TXT, MUE_PRA, MUE_OPH, AOC_XLSX)
    assert result.ok, result.errors
    return KnowledgeBase(discover(root))


def claim(cid, dos, *lines, claim_type="professional", pos="11"):
    return {"id": cid, "dateOfService": dos, "placeOfService": pos, "claimType": claim_type,
            "lines": [{"code": c, "units": u, "modifiers": list(m)} for c, u, *m in lines]}


def findings_for(kb, *claims):
    records = [record_from_object(c, "claim", kb.content.context, file="test", index=i) for i, c in enumerate(claims)]
    assert all(r.error is None for r in records)
    findings, _ = ClaimValidator(kb).validate(records)
    return findings


def test_validate_uses_an_imported_ptp_edit_in_force(imported_kb):
    claims = [claim("no-mod-2023", "2023-06-01", ("20552", 1), ("77002", 1), ("76942", 1)),
              claim("xu-2023", "2023-06-01", ("20552", 1), ("77002", 1), ("76942", 1, "XU")),
              claim("after-deletion-2024", "2024-06-03", ("20552", 1), ("77002", 1), ("76942", 1))]
    base = findings_for(engine()[0], claims[0])
    assert not [f for f in base if f["shape"].startswith("BundledPair")], "the pair must come from the import"
    found = findings_for(imported_kb, *claims)
    by = lambda cid: [f for f in found if f["claim"] == cid and f["shape"].startswith("BundledPair")]  # noqa: E731
    (v,) = by("no-mod-2023")
    assert (v["shape"], v["severity"], v["line"], v["code"]) == ("BundledPair", "violation", 3, "76942")
    assert "NCCI PTP practitioner 2026Q4" in v["message"] and "modifier indicator 1" in v["message"]
    (i,) = by("xu-2023")
    assert (i["shape"], i["severity"]) == ("BundledPairBypassed", "info") and "XU" in i["message"]
    assert by("after-deletion-2024") == []  # deleted 2023-12-31; the 2024 row has indicator 9
    # the pair is in the practitioner table only: a facility (hospital) claim is not held to it
    hospital = findings_for(imported_kb, claim("facility-2023", "2023-06-01", ("20552", 1), ("77002", 1), ("76942", 1),
                                               claim_type="facility", pos="22"))
    assert not [f for f in hospital if f["shape"].startswith("BundledPair")]


def kb_with_ptp_row(tmp_path, row):
    """A copy of the content with one PTP row (tab-separated, published layout) imported."""
    import sys

    sys.path.insert(0, str(FIX))
    from make_fixtures import PTP_PREAMBLE

    root = content_copy(tmp_path / "content")
    ptp = tmp_path / "ccipra-v323r0-f1.TXT"
    ptp.write_text("\r\n".join(PTP_PREAMBLE + [row]) + "\r\n", encoding="latin-1")
    assert do_import(root, ptp).ok
    return KnowledgeBase(discover(root))


def test_a_pair_stated_by_two_edits_gives_one_finding(tmp_path):
    """A hand-written edit (77002 not with 77001) and an imported PTP row for the same pair: one
    finding on the column 2 line, naming both reasons and both layers."""
    kb = kb_with_ptp_row(tmp_path, "77001\t77002\t\t20200101\t*\t0\tMutually exclusive procedures")
    found = findings_for(kb, claim("twice", "2024-06-03", ("36558", 1), ("77001", 1), ("77002", 1)))
    pairs = [f for f in found if f["shape"] == "BundledPair" and f["code"] == "77002" and "77001" in f["message"]]
    assert len(pairs) == 1, pairs
    assert "NCCI PTP practitioner 2026Q4" in pairs[0]["message"] and "77002 is not reported with 77001" in pairs[0]["message"]


def test_the_strictest_of_two_edits_in_force_decides_the_message(tmp_path):
    """The hand-written 76942/76872 edit has indicator 1 (an inference, not read from the PTP
    table); an imported PTP row for the same pair says 0. Both in force: the one finding must say
    that no modifier allows the pair, on both engines, with or without a distinct-service modifier."""
    from reasoner.fast import FastValidator

    kb = kb_with_ptp_row(tmp_path, "76942\t76872\t\t20200101\t*\t0\tStandards of medical/surgical practice")
    claims = [claim("plain", "2024-06-03", ("76942", 1), ("76872", 1)),
              claim("xu", "2024-06-03", ("76942", 1), ("76872", 1, "XU"))]
    records = [record_from_object(c, "claim", kb.content.context, file="test", index=i) for i, c in enumerate(claims)]
    for validator in (ClaimValidator(kb), FastValidator(kb)):
        found, _ = validator.validate(records)
        for cid in ("plain", "xu"):
            (v,) = [f for f in found if f["claim"] == cid and f["shape"] == "BundledPair"]
            assert v["code"] == "76872" and "no modifier allows it (modifier indicator 0)" in v["message"], v
            assert "modifier indicator 1" not in v["message"], v


def test_derive_shows_each_edit_of_a_pair_that_sources_disagree_on(tmp_path):
    """The hand-written 10005/10009 edit has indicator 1; an imported PTP row for the same pair
    says 0. Without a distinct service both suppress 10009, each with its own reason (one node per
    edit: before, one node held both reasons and each engine showed a different one); with a
    distinct service the indicator-0 edit still suppresses it and no 59 is assigned."""
    import json

    from reasoner.fastderive import FastDeriver
    from reasoner.render import summarize_encounter
    from reasoner.rules import Deriver

    kb = kb_with_ptp_row(tmp_path, "10005\t10009\t\t20200101\t*\t0\tMutually exclusive procedures")
    case = json.loads((ROOT / "tests/cases/derive/fna-two-lesions-two-modalities.json").read_text(encoding="utf-8"))
    distinct = case["encounter"]
    plain = json.loads(json.dumps(distinct).replace('"h04', '"plain'))
    del plain["procedures"][1]["distinctService"]
    records = [record_from_object(e, "encounter", kb.content.context, file="test", index=i)
               for i, e in enumerate((distinct, plain))]
    fast = FastDeriver(kb).derive_many(records)
    reference = Deriver(kb)
    for rec in records:
        summaries = [summarize_encounter(kb, rec, g) for g in (reference.derive(rec.graph), fast[rec.node])]
        assert summaries[0] == summaries[1]
        s = summaries[0]
        assert [c["code"] for c in s["codes"]] == ["10005"] and not s["codes"][0]["modifiers"]
        (entry,) = [c for c in s["notReported"] if c["code"] == "10009"]
        reasons = [r["reason"] for r in entry["reasons"]]
        assert any("NCCI PTP practitioner 2026Q4" in r and "no modifier allows it (modifier indicator 0)" in r
                   for r in reasons), reasons
        if rec.id == "plain":
            assert len(reasons) == 2 and any("this edit allows it" in r for r in reasons), reasons
        else:
            assert len(reasons) == 1, reasons


def test_validate_uses_an_imported_mue_in_its_quarter(imported_kb):
    found = findings_for(imported_kb, claim("in-quarter", "2026-11-02", ("76000", 2)),
                         claim("before", "2026-09-30", ("76000", 2)))
    limits = [f for f in found if f["shape"].startswith("UnitLimit")]
    assert [(f["claim"], f["code"]) for f in limits] == [("in-quarter", "76000")]
    assert "NCCI MUE practitioner 2026Q4" in limits[0]["message"]


def derive(kb, dos, claim_type="professional", pos="11"):
    enc = {"id": f"tp-{dos}", "dateOfService": dos, "placeOfService": pos, "claimType": claim_type,
           "patientAge": 55, "procedures": [{"id": "p1", "kind": "trigger-point-injection", "muscles": 3}],
           "imaging": [{"id": "i1", "modality": "ultrasound", "purpose": "guidance", "guides": "p1",
                        "documented": ["permanent-image", "report"]},
                       {"id": "i2", "modality": "fluoroscopy", "purpose": "guidance", "guides": "p1",
                        "documented": ["permanent-image", "report"]}]}
    rec = record_from_object(enc, "encounter", kb.content.context, file="test")
    assert rec.error is None
    return summarize_encounter(kb, rec, Deriver(kb).derive(rec.graph))


def test_derive_suppresses_column2_while_the_imported_edit_is_in_force(imported_kb):
    base = derive(engine()[0], "2023-06-01")
    assert {c["code"] for c in base["codes"]} == {"20553", "76942", "77002"}
    during = derive(imported_kb, "2023-06-01")
    assert {c["code"] for c in during["codes"]} == {"20553", "77002"}
    (gone,) = [n for n in during["notReported"] if n["code"] == "76942"]
    assert any("bundled with 77002" in r["reason"] and "NCCI PTP" in r["reason"] for r in gone["reasons"])
    after = derive(imported_kb, "2024-06-03")  # the edit ended 2023-12-31; its 2024 twin is indicator 9
    assert {c["code"] for c in after["codes"]} == {"20553", "76942", "77002"}
    # a practitioner-table edit: the facility coding of the same encounter keeps both codes
    facility = derive(imported_kb, "2023-06-01", claim_type="facility", pos="22")
    assert not [n for n in facility["notReported"] if n["code"] == "76942" and
                any("NCCI PTP" in r["reason"] for r in n["reasons"])]
    assert "76942" in {c["code"] for c in facility["codes"]}


# --------------------------------------------------------------------------------------------
# Full size: about two million rows in bounded memory

def _bench():
    spec = importlib.util.spec_from_file_location("ncci_bench", ROOT / "bench" / "ncci_import.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.large
def test_full_size_ptp_streams_in_bounded_memory(tmp_path):
    bench = _bench()
    rows = 2_000_000
    t = time.perf_counter()
    src = bench.write_synthetic_ptp(tmp_path / "ccipra-v323r0-f1.TXT", rows)
    made = time.perf_counter() - t
    root = bench.copy_content(tmp_path / "content")
    rc, seconds, peak_mb, out, err = bench.run_import_child(root, [src], scope="kb")
    print(f"\nsynthetic PTP: {rows:,} rows ({src.stat().st_size / 1e6:.0f} MB, made in {made:.1f} s); "
          f"import --scope kb {seconds:.1f} s, peak memory {peak_mb:.0f} MB", file=sys.stderr)
    assert rc == 0, err
    assert f"{rows + 6} records, {rows} data rows" in out
    assert peak_mb < 300, f"peak memory {peak_mb:.0f} MB"
    assert seconds < 120
    module = root / "ontology" / "edits" / "generated" / "ptp-practitioner-2026Q4.ttl"
    written = int(out.split(" data rows, ", 1)[1].split(" written", 1)[0])
    assert written > 1000 and sum(1 for l in open(module, encoding="utf-8") if l.startswith("e:")) == written
