"""`cptkg import ncci`: the CMS NCCI edit files (PTP, MUE, AOC) into generated knowledge modules.

Layouts and quirks follow shared/domain/cms-file-formats.md:

    PTP  ccipra/ccioph-vNNNrR-fN.TXT  tab-delimited, 7 columns, a 6-line preamble (notice, title,
         a header wrapped over 4 lines); or its .xlsx copy (header row found by content)
    MUE  MCR_MUE_*Services_Eff_MM-DD-YYYY.csv  a quoted multi-line AMA notice record, then the
         header ("HCPCS/\\nCPT Code", "<Setting> Services MUE Values", ...); or its .xlsx copy
    AOC  AOC_VYYYYQn-MCR.xlsx (8 loosely named columns, YYYYDDD dates) or the fixed-width .txt

A file (or a CMS zip holding them) is recognised by its content, never by its name alone. Text
is decoded as Latin-1 and every field is kept as text. Data rows are found by pattern (a code
in the first column), so notice, title, header and footnote rows are skipped wherever they sit;
a row that looks like data but breaks the layout is reported with file, line, record and field
and the import goes on. Duplicate keys are kept: one edit node per row, named from a hash of
the row, so a re-import writes the same IRIs.

Output, per (family, setting) of the inputs: ontology/edits/generated/<family>-<setting>-<quarter>.ttl,
written row by row (bounded memory), with a module header saying it is generated, from which
files (SHA-256), for which quarter, with which row counts and by which tool version. Codes the
edits name that the hand-written graph does not describe get a minimal stanza in one shared
generated module, edits/generated/ncci-codes.ttl, rebuilt on every import from
edits/generated/manifest.json (a code named by several generated modules has one stanza). Each
module is registered in ontology/cptkg.ttl and catalog-v001.xml, idempotently.

Meaning given to the fields (as cms-file-formats.md section 2.3 advises):
* PTP effective date = first day in force; deletion date = last day in force (an inference; "*"
  = none); modifier indicator 9 = never in force, kept as cptkg:modifierIndicator "9".
* MUE rows carry no dates: the table is in force for the quarter imported (first to last day).
* AOC pair dates (YYYYDDD) as PTP; CCCCC = contractor-defined primaries: no cptkg:primary.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from ..errors import ContentError, InputError

IMPORTER_VERSION = "1"
BASE = "https://w3id.org/cptkg/"
MODULE_BASE = BASE + "module/"
GENERATED = Path("edits") / "generated"  # under ontology/
MANIFEST = "manifest.json"
CODES_MODULE = "ncci-codes"
MAX_REPORTED = 20  # malformed rows printed per file (all are counted)

SETTINGS = ("practitioner", "facility")
TABLE = {"practitioner": BASE + "cms-table/practitioner", "facility": BASE + "cms-table/facility"}
FAMILY_TITLE = {"ptp": "procedure-to-procedure (PTP) edits", "mue": "medically unlikely edits (MUE)",
                "aoc": "add-on code (AOC) edits"}
FAMILY_SHORT = {"ptp": "PTP", "mue": "MUE", "aoc": "AOC"}
FAMILY_URL = {
    "ptp": "https://www.cms.gov/medicare/coding-billing/national-correct-coding-initiative-ncci-edits/medicare-ncci-procedure-procedure-ptp-edits",
    "mue": "https://www.cms.gov/medicare/coding-billing/national-correct-coding-initiative-ncci-edits/medicare-ncci-medically-unlikely-edits-mues",
    "aoc": "https://www.cms.gov/medicare/coding-billing/national-correct-coding-initiative-ncci-edits/medicare-ncci-add-code-edits",
}
FAMILY_CONCEPT_SOURCE = {"ptp": "ncci-modifiers", "mue": "mue-mai", "aoc": "aoc-types"}

CODE = re.compile(r"[0-9A-Z]{5}")
QUARTER = re.compile(r"(\d{4})[Qq]([1-4])")
PTP_ROW = re.compile(r"([0-9A-Z]{5})\t([0-9A-Z]{5})\t(\*?)\t(\d{8})\t(\d{8}|\*)\t([019])\t([^\t]*)")
PTP_FIELDS = ("Column 1", "Column 2", "*=in existence prior to 1996", "Effective Date", "Deletion Date",
              "Modifier", "PTP Edit Rationale")
MUE_FIELDS = ("HCPCS/CPT Code", "MUE Values", "MUE Adjudication Indicator", "MUE Rationale")
AOC_FIELDS = ("AOC_Edit_Type", "Add-On_Code", "AOC_DelDT", "Primary_Code", "Primary_Code_DelDT",
              "AOC_Edit_EffDT", "AOC_Edit_DelDT", "Special_Instruction_Notes")
AOC_KEYS = tuple(re.sub(r"[^a-z]", "", f.lower()) for f in AOC_FIELDS)
AOC_SLICES = ((0, 1), (1, 6), (6, 13), (13, 18), (18, 25), (25, 32), (32, 39), (39, None))

MEMBER_PATTERNS = (  # (family, regex on the member's base name, preferred layout first)
    ("ptp", re.compile(r"cci(pra|oph)-v\d{3}r\d+-f[1-4]\.(txt|xlsx)$", re.I), ("txt", "xlsx")),
    ("mue", re.compile(r"MCR_MUE_\w+?_Eff_\d{2}-\d{2}-\d{4}\.(csv|xlsx)$", re.I), ("csv", "xlsx")),
    ("aoc", re.compile(r"AOC_V\d{4}Q[1-4](_\d+)?-MCR\.(txt|xlsx)$", re.I), ("xlsx", "txt")),
)


# ---------------------------------------------------------------------------------------------
# Small helpers

def parse_quarter(text):
    m = QUARTER.fullmatch(text.strip())
    if not m:
        raise InputError(f"--quarter must look like 2026Q4, not '{text}'", field="quarter")
    year, q = int(m.group(1)), int(m.group(2))
    first = date(year, 3 * q - 2, 1)
    last = (date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)) - timedelta(days=1)
    return f"{year}Q{q}", first, last


def _lit(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_YMD = {}


def _ymd(text):
    """YYYYMMDD -> ISO date text, or None. Cached: a file holds a few hundred distinct dates."""
    iso = _YMD.get(text)
    if iso is None and text not in _YMD:
        try:
            iso = date(int(text[:4]), int(text[4:6]), int(text[6:8])).isoformat() if len(text) == 8 and text.isdigit() else None
        except ValueError:
            iso = None
        if len(_YMD) > 100_000:
            _YMD.clear()
        _YMD[text] = iso
    return iso


def _yyyyddd(text):
    """YYYYDDD ('Julian') -> ISO date text; '' for blank; None when malformed."""
    text = text.strip()
    if text in ("", "0000000"):
        return ""
    if len(text) != 7 or not text.isdigit():
        return None
    year, day = int(text[:4]), int(text[4:])
    first = date(year, 1, 1)
    if not 1 <= day <= (date(year + 1, 1, 1) - first).days:
        return None
    return (first + timedelta(days=day - 1)).isoformat()


def _cell(value, kind="text"):
    """An xlsx cell as text (openpyxl gives numbers and datetimes; CMS files are text)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        text = str(value)
        return text.zfill(5) if kind == "code" and len(text) < 5 else text
    if isinstance(value, (datetime, date)):
        if kind == "julian":
            return f"{value.year}{value.timetuple().tm_yday:03d}"
        return value.strftime("%Y%m%d")
    return str(value).strip()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _row_id(canonical, occurrence):
    key = canonical if not occurrence else f"{canonical}\n#{occurrence}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=6).hexdigest()


# ---------------------------------------------------------------------------------------------
# What a file is

@dataclass
class Part:
    """One table to read: a file, or a member of a CMS zip."""

    path: Path
    member: str | None
    family: str
    layout: str  # txt | csv | xlsx | fixed
    setting: str | None = None  # practitioner | facility | dme | None (AOC: all)
    name_quarter: str | None = None  # the quarter the file name implies
    sha256: str = ""
    notes: list = field(default_factory=list)
    xlsx_path: Path | None = None

    @property
    def name(self):
        return f"{self.path.name}!{self.member}" if self.member else self.path.name

    @property
    def display(self):
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    def open_binary(self):
        if self.member:
            zf = zipfile.ZipFile(self.path)
            return zf.open(self.member)
        return open(self.path, "rb")

    def open_text(self):
        return io.TextIOWrapper(self.open_binary(), encoding="latin-1", newline="")


def _name_hints(name):
    """Setting and quarter implied by a CMS file name."""
    base = Path(name).name
    setting = quarter = None
    m = re.search(r"cci(pra|oph)-v(\d{3})r\d+", base, re.I)
    if m:
        setting = "practitioner" if m.group(1).lower() == "pra" else "facility"
        v = int(m.group(2))
        if v % 10 <= 3:
            quarter = f"{1994 + v // 10}Q{v % 10 + 1}"
    m = re.search(r"MCR_MUE_(\w+?)Services_Eff_(\d{2})-(\d{2})-(\d{4})", base, re.I)
    if m:
        kind = m.group(1).lower()
        setting = {"practitioner": "practitioner", "outpatienthospital": "facility",
                   "facilityoutpatienthospital": "facility", "dmesupplier": "dme"}.get(kind)
        quarter = f"{m.group(4)}Q{(int(m.group(2)) - 1) // 3 + 1}"
    m = re.search(r"AOC_V(\d{4})Q([1-4])", base, re.I)
    if m:
        quarter = f"{m.group(1)}Q{m.group(2)}"
    return setting, quarter


def _mue_setting(header_cell):
    text = header_cell.lower()
    if "practitioner" in text:
        return "practitioner"
    if "hospital" in text or "facility" in text:
        return "facility"
    if "dme" in text or "supplier" in text:
        return "dme"
    return None


def _aoc_key(text):
    key = re.sub(r"[^a-z]", "", str(text).lower())
    return key[:-6] if key.endswith("julian") else key


def _xlsx_rows(source):
    """Rows of the first sheet of a workbook (path or binary file), as tuples of raw values."""
    import openpyxl

    wb = openpyxl.load_workbook(source, read_only=True, data_only=True)
    try:
        ws = wb.worksheets[0]
        try:
            ws.reset_dimensions()
        except AttributeError:
            pass
        for row in ws.iter_rows(values_only=True):
            yield row
    finally:
        wb.close()


def _classify_xlsx(rows):
    """(family, setting) of a workbook from its first rows."""
    for i, row in enumerate(rows):
        if i > 60:
            break
        cells = [_cell(v) for v in row]
        texts = [c for c in cells if c]
        if not texts:
            continue
        if cells and cells[0].upper().startswith("HCPCS") and len(cells) > 1:
            return "mue", _mue_setting(cells[1])
        if "Column 1" in cells and "Column 2" in cells:
            return "ptp", None
        keys = {_aoc_key(c) for c in cells}
        if "addoncode" in keys and "primarycode" in keys:
            return "aoc", None
        if len(cells) >= 6 and CODE.fullmatch(cells[0]) and CODE.fullmatch(cells[1]) and re.fullmatch(r"\d{8}", _cell(row[3])):
            return "ptp", None
        if len(cells) >= 3 and CODE.fullmatch(_cell(row[0], "code")) and re.fullmatch(r"\d+", cells[1]) and cells[2][:1] in "123":
            return "mue", None
        if len(cells) >= 6 and cells[0] in ("1", "2", "3") and CODE.fullmatch(cells[1]):
            return "aoc", None
    return None, None


def _classify_text(head):
    """Family of a text file from its first 64 KB (decoded as Latin-1)."""
    lines = head.splitlines()[:300]
    for line in lines:
        if "Column1/Column2" in line or ("Column 1\tColumn 2" in line):
            return "ptp", "txt"
        if re.match(r"[0-9A-Z]{5}\t[0-9A-Z]{5}\t", line):
            fields = line.split("\t")
            if len(fields) == 6 and re.fullmatch(r"\d{8}", fields[2].strip()):
                return "medicaid-ptp", "txt"
            return "ptp", "txt"
    if "HCPCS/" in head and "MUE" in head:
        return "mue", "csv"
    for line in lines:
        if re.match(r"[0-9A-Z]{5},\d+,[123]", line):
            return "mue", "csv"
        if re.match(r"[123][0-9A-Z]{5}[ 0-9]{7}[0-9A-Z]{5}[ 0-9]{7}[ 0-9]{7}", line):
            return "aoc", "fixed"
    return None, None


def _mue_csv_setting(part):
    with part.open_text() as f:
        for i, rec in enumerate(csv.reader(f)):
            if i > 20:
                break
            if rec and rec[0].strip().upper().startswith("HCPCS") and len(rec) > 1:
                return _mue_setting(rec[1])
    return None


def _detect_one(part_path, member, data_head, is_xlsx, tmpdir):
    """Return a Part (family/layout/setting filled) or raise InputError."""
    part = Part(part_path, member, family="", layout="")
    name = member or part_path.name
    if is_xlsx:
        if member:  # openpyxl needs a seekable file: extract the member
            target = Path(tmpdir) / Path(member).name
            with zipfile.ZipFile(part_path) as zf, zf.open(member) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.xlsx_path = target
        else:
            part.xlsx_path = part_path
        family, setting = _classify_xlsx(_xlsx_rows(part.xlsx_path))
        layout = "xlsx"
    else:
        family, layout = _classify_text(data_head.decode("latin-1"))
        setting = None
        if family == "medicaid-ptp":
            raise InputError("a PTP table without the 'in existence prior to 1996' column (the Medicaid layout): "
                             "only the Medicare PTP tables are read", file=part.display)
    if family is None:
        raise InputError("not a CMS NCCI table this importer knows (PTP TXT/xlsx, MUE CSV/xlsx, AOC xlsx/fixed-width TXT)",
                         file=part.display)
    part.family, part.layout = family, layout
    name_setting, part.name_quarter = _name_hints(name)
    if family == "mue" and layout == "csv":
        setting = _mue_csv_setting(part)
    part.setting = setting or name_setting
    if setting and name_setting and setting != name_setting:
        part.notes.append(f"the file name says {name_setting} but the table header says {setting}; the header wins")
    if family == "aoc":
        part.setting = None
    return part


def detect(path, tmpdir):
    """The tables in a path: one Part for a plain file, one per CMS member for a zip."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", file=path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head[:4] != b"PK\x03\x04":
        return [_detect_one(path, None, head, False, tmpdir)]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable zip or xlsx file: {exc}", file=path) from exc
    with zf:
        names = zf.namelist()
        if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
            return [_detect_one(path, None, head, True, tmpdir)]
        chosen = {}
        ignored = []
        for n in names:
            base = Path(n).name
            if n.endswith("/"):
                continue
            for family, pattern, prefer in MEMBER_PATTERNS:
                if pattern.search(base) and "change" not in base.lower():
                    stem, ext = base.rsplit(".", 1)
                    key = (family, stem.lower())
                    rank = prefer.index(ext.lower())
                    if key not in chosen or rank < chosen[key][0]:
                        chosen[key] = (rank, n)
                    break
            else:
                ignored.append(base)
        if not chosen:
            raise InputError("the zip holds no CMS NCCI table (ccipra/ccioph-*.TXT, MCR_MUE_*.csv, AOC_V*-MCR.*)", file=path)
        picked = {member for _, member in chosen.values()}
        ignored += [Path(n).name + " (another copy of the same table)" for n in names
                    if n not in picked and not n.endswith("/") and Path(n).name not in ignored]
        parts = []
        for (_, _), (_, member) in sorted(chosen.items(), key=lambda kv: kv[1][1]):
            with zf.open(member) as m:
                mhead = m.read(1 << 16)
            part = _detect_one(path, member, mhead, member.lower().endswith(".xlsx"), tmpdir)
            if ignored:
                part.notes.append("zip members not read: " + ", ".join(sorted(set(ignored))))
            parts.append(part)
        return parts


# ---------------------------------------------------------------------------------------------
# Reading rows. Each reader yields (line, canonical text, values) for a valid data row and reports
# everything else (notice, header, footnote, blank and malformed rows) to the FileStats.

@dataclass
class FileStats:
    part: Part
    read: int = 0
    data: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list = field(default_factory=list)
    malformed: int = 0
    seen_data: bool = False

    def skip(self, reason, n=1):
        self.skipped[reason] += n

    def non_data(self):
        self.skip("footnote or other non-data line after the data" if self.seen_data
                  else "notice, title or header line before the data")

    def bad(self, line, record, fieldname, message):
        self.malformed += 1
        self.skip("malformed (reported)")
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(InputError(message, file=self.part.display, line=line, record=record, field=fieldname))


def _ptp_check(f):
    """Validate PTP fields; return (values, None) or (None, (field, message))."""
    if len(f) < 7 or any(x.strip() for x in f[7:]):
        return None, (None, f"expected 7 tab-separated fields, found {len(f)}")
    c1, c2, pre, eff, dele, mi, why = (x.strip() for x in f[:7])
    if not CODE.fullmatch(c1):
        return None, (PTP_FIELDS[0], f"'{c1}' is not a 5-character code")
    if not CODE.fullmatch(c2):
        return None, (PTP_FIELDS[1], f"'{c2}' is not a 5-character code")
    if pre not in ("", "*"):
        return None, (PTP_FIELDS[2], f"expected '*' or empty, found '{pre}'")
    eff_iso = _ymd(eff)
    if eff_iso is None:
        return None, (PTP_FIELDS[3], f"'{eff}' is not a date YYYYMMDD")
    del_iso = None
    if dele != "*":
        del_iso = _ymd(dele)
        if del_iso is None:
            return None, (PTP_FIELDS[4], f"'{dele}' is neither a date YYYYMMDD nor '*'")
    if mi not in ("0", "1", "9"):
        return None, (PTP_FIELDS[5], f"modifier indicator must be 0, 1 or 9, found '{mi}'")
    return (c1, c2, pre == "*", eff_iso, del_iso, mi, why), None


def _ptp_like(fields):
    """A data row, well formed or not: a code in column 1 or column 2."""
    return bool(CODE.fullmatch(fields[0].strip()) or (len(fields) > 1 and CODE.fullmatch(fields[1].strip())))


def read_ptp(part, stats):
    if part.layout == "xlsx":
        yield from _read_ptp_xlsx(part, stats)
        return
    with part.open_text() as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            stats.read += 1
            m = PTP_ROW.fullmatch(line)
            if m:
                eff = _ymd(m.group(4))
                dele = m.group(5)
                del_iso = None if dele == "*" else _ymd(dele)
                if eff is not None and (dele == "*" or del_iso is not None):
                    stats.seen_data = True
                    yield n, line, (m.group(1), m.group(2), m.group(3) == "*", eff, del_iso, m.group(6), m.group(7))
                    continue
            if not line.strip("\t "):
                stats.skip("blank line")
                continue
            fields = line.split("\t")
            if not _ptp_like(fields):
                stats.non_data()
                continue
            values, err = _ptp_check(fields)
            if err:
                stats.bad(n, "/".join(x.strip() for x in fields[:2]), *err)
                continue
            stats.seen_data = True
            yield n, "\t".join(x.strip() for x in fields[:7]), values


def _read_ptp_xlsx(part, stats):
    for n, row in enumerate(_xlsx_rows(part.xlsx_path), 1):
        stats.read += 1
        cells = [_cell(v, "code" if i < 2 else "text") for i, v in enumerate(row)]
        if not any(cells):
            stats.skip("blank line")
            continue
        if not _ptp_like(cells):
            stats.non_data()
            continue
        values, err = _ptp_check(cells)
        if err:
            stats.bad(n, "/".join(cells[:2]), *err)
            continue
        stats.seen_data = True
        yield n, "\t".join(cells[:7]), values


def _mue_check(f):
    if len(f) < 3 or any(x.strip() for x in f[4:]):
        return None, (None, f"expected 4 comma-separated fields, found {len(f)}")
    code, value, mai = f[0].strip(), f[1].strip(), f[2].strip()
    why = f[3].strip() if len(f) > 3 else ""
    if not CODE.fullmatch(code):
        return None, (MUE_FIELDS[0], f"'{code}' is not a 5-character code")
    if not value.isdigit():
        return None, (MUE_FIELDS[1], f"'{value}' is not a whole number of units (0 or more)")
    if mai[:1] not in ("1", "2", "3") or (len(mai) > 1 and mai[1] != " "):
        return None, (MUE_FIELDS[2], f"'{mai}' does not start with the indicator 1, 2 or 3")
    return (code, int(value), mai[0], mai[1:].strip(), why), None


def read_mue(part, stats):
    if part.layout == "xlsx":
        rows = ((n, [_cell(v, "code" if i == 0 else "text") for i, v in enumerate(row)])
                for n, row in enumerate(_xlsx_rows(part.xlsx_path), 1))
    else:
        rows = _csv_rows(part)
    for n, rec in rows:
        stats.read += 1
        if not any(x.strip() for x in rec):
            stats.skip("blank line")
            continue
        if not (CODE.fullmatch(rec[0].strip()) or (len(rec) > 2 and rec[1].strip().isdigit() and rec[2].strip()[:1] in ("1", "2", "3") and rec[2].strip())):
            stats.non_data()
            continue
        values, err = _mue_check(rec)
        if err:
            stats.bad(n, rec[0].strip(), *err)
            continue
        stats.seen_data = True
        yield n, "\t".join(x.strip() for x in rec[:4]), values


def _csv_rows(part):
    with part.open_text() as f:
        reader = csv.reader(f)
        line = 1
        for rec in reader:
            yield line, rec  # the line the record starts on
            line = reader.line_num + 1


def _aoc_check(f):
    f = list(f) + [""] * (8 - len(f))
    typ, addon, addon_del, primary, primary_del, eff, dele, notes = (x.strip() for x in f[:8])
    if typ not in ("1", "2", "3"):
        return None, (AOC_FIELDS[0], f"AOC edit type must be 1, 2 or 3, found '{typ}'")
    if not CODE.fullmatch(addon) or addon == "CCCCC":
        return None, (AOC_FIELDS[1], f"'{addon}' is not a 5-character code")
    if not CODE.fullmatch(primary):
        return None, (AOC_FIELDS[3], f"'{primary}' is neither a 5-character code nor CCCCC")
    if primary == "CCCCC" and typ == "1":
        return None, (AOC_FIELDS[3], "CCCCC (contractor-defined primaries) on a type 1 edit, which lists its primaries")
    dates = []
    for i, text in ((2, addon_del), (4, primary_del), (5, eff), (6, dele)):
        iso = _yyyyddd(text)
        if iso is None:
            return None, (AOC_FIELDS[i], f"'{text}' is not a date YYYYDDD (year and day of the year) or blank")
        dates.append(iso or None)
    return (typ, addon, dates[0], None if primary == "CCCCC" else primary, dates[1], dates[2], dates[3], notes), None


def read_aoc(part, stats):
    if part.layout == "xlsx":
        rows = _aoc_xlsx_rows(part, stats)
    else:
        rows = _aoc_fixed_rows(part, stats)
    for n, fields in rows:
        values, err = _aoc_check(fields)
        if err:
            stats.bad(n, f"{fields[1].strip()}/{fields[3].strip()}" if len(fields) > 3 else None, *err)
            continue
        stats.seen_data = True
        yield n, "\t".join(x.strip() for x in fields[:8]), values


def _aoc_fixed_rows(part, stats):
    with part.open_text() as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            stats.read += 1
            if not line.strip():
                stats.skip("blank line")
                continue
            if not (CODE.fullmatch(line[1:6]) or CODE.fullmatch(line[13:18])):
                stats.non_data()
                continue
            yield n, [line[a:b] if b is not None else line[a:] for a, b in AOC_SLICES]


def _aoc_xlsx_rows(part, stats):
    columns = None
    kinds = ("text", "code", "julian", "code", "julian", "julian", "julian", "text")
    for n, row in enumerate(_xlsx_rows(part.xlsx_path), 1):
        stats.read += 1
        if columns is None:
            keys = [_aoc_key(_cell(v)) for v in row]
            if "addoncode" in keys and "primarycode" in keys:
                missing = [AOC_FIELDS[i] for i, k in enumerate(AOC_KEYS[:7]) if k not in keys]
                if missing:
                    raise InputError(f"AOC header lacks {', '.join(missing)}", file=part.display, line=n)
                columns = [keys.index(k) if k in keys else None for k in AOC_KEYS]
                stats.non_data()
                continue
        idx = columns or list(range(8))  # no header seen yet: the published column order
        cells = [_cell(row[i], kinds[j]) if i is not None and i < len(row) else "" for j, i in enumerate(idx)]
        if not any(_cell(v) for v in row):
            stats.skip("blank line")
            continue
        if not (CODE.fullmatch(cells[1]) or (cells[0] in ("1", "2", "3") and cells[1])):
            stats.non_data()
            continue
        yield n, cells


READERS = {"ptp": read_ptp, "mue": read_mue, "aoc": read_aoc}


# ---------------------------------------------------------------------------------------------
# The knowledge graph: which codes it describes (hand-written modules only)

def generated_dir(root):
    return Path(root) / "ontology" / GENERATED


def is_generated(module_path, root):
    try:
        Path(module_path).resolve().relative_to(generated_dir(root).resolve())
        return True
    except ValueError:
        return False


def known_codes(content):
    """(notations, add-on notations) of the codes the hand-written modules describe."""
    from rdflib.namespace import RDF, SKOS

    from ..kb import parse_turtle
    from ..vocab import CPT, CPTKG

    codes, addons = set(), set()
    for module in content.modules:
        if is_generated(module.path, content.root):
            continue
        g = parse_turtle(module.path)
        for s, n in g.subject_objects(SKOS.notation):
            if str(s).startswith(str(CPT)):
                codes.add(str(n))
        for s in g.subjects(RDF.type, CPTKG.AddOnCode):
            if str(s).startswith(str(CPT)):
                addons.add(str(s)[len(str(CPT)):])
    return codes, addons


# ---------------------------------------------------------------------------------------------
# Writing a module

PREFIXES = """@prefix cptkg: <https://w3id.org/cptkg/vocab#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
@prefix cpt: <https://w3id.org/cptkg/code/> .
@prefix src: <https://w3id.org/cptkg/source/> .
@prefix fam: <https://w3id.org/cptkg/family/> .
"""


class ModuleWriter:
    """Writes one generated module, row by row, to a temporary file; `finish` adds the header."""

    def __init__(self, root, family, setting, quarter, scope, qfirst, qlast):
        self.root = Path(root)
        self.family, self.setting, self.quarter, self.scope = family, setting, quarter, scope
        self.qfirst, self.qlast = qfirst.isoformat(), qlast.isoformat()
        self.name = f"{family}-{setting or 'all'}-{quarter}"
        self.iri = MODULE_BASE + "ncci-" + self.name
        self.rel = (GENERATED / f"{self.name}.ttl").as_posix()
        self.path = self.root / "ontology" / self.rel
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".body", dir=self.path.parent)
        self.body_path = Path(tmp)
        self.body = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self.files = []  # FileStats
        self.codes = {}  # code -> [first in use, add-on from, set(source local names)]
        self.warnings = []
        self.group = None
        self.seen = {}
        self.label_prefix = f"NCCI {FAMILY_SHORT[family]} " + (f"{setting} " if setting else "") + quarter
        self.labels = {}

    # -- per file
    def source_local(self, part):
        return f"ncci-{self.name}-{_slug(part.name)}"

    def _label(self, text):
        lit = self.labels.get(text)
        if lit is None:
            lit = _lit(f"{self.label_prefix}: {text}") + "@en"
            if len(self.labels) < 1000:
                self.labels[text] = lit
        return lit

    def start_file(self, part):
        stats = FileStats(part)
        self.files.append(stats)
        self.src_local = self.source_local(part)
        self.src = "s:" + _slug(part.name)
        self.group = None
        self.seen = {}
        return stats

    def _occurrence(self, group, canonical):
        if group != self.group:
            self.group = group
            self.seen = {}
        n = self.seen.get(canonical, 0)
        self.seen[canonical] = n + 1
        return n

    def _note_code(self, code, known, first, addon_from=None):
        if code in known:
            return
        entry = self.codes.get(code)
        if entry is None:
            self.codes[code] = [first, addon_from, {self.src_local}]
            return
        if first and (entry[0] is None or first < entry[0]):
            entry[0] = first
        if addon_from and (entry[1] is None or addon_from < entry[1]):
            entry[1] = addon_from
        entry[2].add(self.src_local)

    # -- rows
    def ptp(self, canonical, v, known):
        c1, c2, pre, eff, dele, mi, why = v
        rid = _row_id(canonical, self._occurrence((c1, c2), canonical))
        parts = [f"e:{c1}-{c2}-{rid} a cptkg:BundlingEdit",
                 f"cptkg:column1 cpt:{c1}", f"cptkg:column2 cpt:{c2}", f'cptkg:modifierIndicator "{mi}"',
                 f'cptkg:effectiveFrom "{eff}"^^xsd:date']
        if dele:
            parts.append(f'cptkg:effectiveThrough "{dele}"^^xsd:date')
        if self.setting in TABLE:
            parts.append(f"cptkg:appliesToSetting tbl:{self.setting}")
        parts.append("rdfs:label " + self._label(why or "no rationale given"))
        if pre:
            parts.append('cptkg:note "In existence prior to 1996 (CMS flag *)."')
        parts += ["cptkg:confidence cptkg:high", f"dcterms:source {self.src}"]
        self.body.write(" ; ".join(parts) + " .\n")
        self._note_code(c1, known, eff)
        self._note_code(c2, known, eff)

    def mue(self, canonical, v, known):
        code, value, mai, mai_text, why = v
        rid = _row_id(canonical, self._occurrence(code, canonical))
        label = (f"{self.label_prefix}: {value} unit{'s' if value != 1 else ''}, MAI {mai}"
                 + (f" ({mai_text})" if mai_text else "") + (f"; {why}" if why else ""))
        parts = [f"e:{code}-{rid} a cptkg:UnitLimit",
                 f"cptkg:code cpt:{code}", f"cptkg:maxUnits {value}", f'cptkg:adjudication "{mai}"',
                 f"cptkg:appliesToSetting tbl:{self.setting}",
                 f'cptkg:effectiveFrom "{self.qfirst}"^^xsd:date', f'cptkg:effectiveThrough "{self.qlast}"^^xsd:date',
                 "rdfs:label " + _lit(label) + "@en",
                 "cptkg:confidence cptkg:high", f"dcterms:source {self.src}"]
        self.body.write(" ; ".join(parts) + " .\n")
        self._note_code(code, known, self.qfirst)

    def aoc(self, canonical, v, known):
        typ, addon, addon_del, primary, primary_del, eff, dele, notes = v
        rid = _row_id(canonical, self._occurrence((addon, primary), canonical))
        parts = [f"e:{addon}-{primary or 'CCCCC'}-{rid} a cptkg:AddOnEdit",
                 f"cptkg:addOn cpt:{addon}"]
        if primary:
            parts.append(f"cptkg:primary cpt:{primary}")
        parts.append(f'cptkg:aocType "{typ}"')
        if eff:
            parts.append(f'cptkg:effectiveFrom "{eff}"^^xsd:date')
        if dele:
            parts.append(f'cptkg:effectiveThrough "{dele}"^^xsd:date')
        what = f"primary {primary}" if primary else "contractor-defined primaries (CCCCC)"
        parts.append("rdfs:label " + _lit(f"{self.label_prefix}: type {typ} add-on {addon}, {what}") + "@en")
        note = []
        if notes:
            note.append(f"Special instruction: {notes}")
        if addon_del:
            note.append(f"The file gives {addon_del} as the add-on code's deletion date.")
        if primary_del:
            note.append(f"The file gives {primary_del} as the primary code's deletion date.")
        if note:
            parts.append("cptkg:note " + _lit(" ".join(note)))
        parts += ["cptkg:confidence cptkg:high", f"dcterms:source {self.src}"]
        self.body.write(" ; ".join(parts) + " .\n")
        first = eff or self.qfirst
        self._note_code(addon, known, first, first)
        if primary:
            self._note_code(primary, known, first)

    # -- the header
    def header(self):
        from .. import __version__

        files = []
        for st in self.files:
            p = st.part
            skipped = sum(st.skipped.values())
            reasons = "; ".join(f"{n} {r}" for r, n in sorted(st.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
            files.append(f"  {p.name} (sha256 {p.sha256}; {p.family.upper()} {p.layout}): "
                         f"{st.read} records read, {st.data} data rows, {st.written} written, "
                         f"{skipped} skipped" + (f" ({reasons})" if reasons else ""))
        scope = ("kb: only rows naming at least one code the hand-written graph describes"
                 if self.scope == "kb" else
                 "all: every data row. The rdflib/pySHACL reference engine is not sized for a module "
                 "this large; it is meant for the fast engine")
        if self.family == "aoc" and self.scope == "kb":
            scope += " (AOC: every row of an add-on code that is, or has a primary, in the graph, so its primary list is complete)"
        meaning = {
            "ptp": "Effective date = first day in force; deletion date = last day in force (cptkg:effectiveThrough; "
                   "'*' = none; the day is an inference, cms-file-formats.md 2.3); modifier indicator 9 = never in "
                   "force, kept as cptkg:modifierIndicator \"9\"; duplicate keys kept, one node per row.",
            "mue": f"MUE rows carry no dates: each limit is in force for the quarter imported ({self.qfirst} to "
                   f"{self.qlast}); the adjudication indicator is the first character of the MAI field.",
            "aoc": "AOC_Edit_EffDT / AOC_Edit_DelDT (YYYYDDD) = first / last day in force (whether the deletion "
                   "day is the last valid day is not documented; last day assumed); CCCCC = contractor-defined "
                   "primaries (no cptkg:primary); code deletion dates kept as notes.",
        }[self.family]
        comment = "\n".join([
            f"Generated by cptkg {__version__} (`cptkg import ncci`, importer format {IMPORTER_VERSION}) from the "
            f"CMS NCCI {FAMILY_TITLE[self.family]}" + (f", {self.setting} table" if self.setting else "")
            + f", quarter {self.quarter}. Do not edit: re-run the import.",
            f"Scope {scope}.",
            "Files:", *files,
            "Totals: " + f"{sum(s.read for s in self.files)} records read, {sum(s.data for s in self.files)} data rows, "
            f"{sum(s.written for s in self.files)} written, {sum(s.malformed for s in self.files)} malformed.",
            meaning,
            *[f"Warning: {w}" for w in self.warnings],
        ])
        out = [PREFIXES + f"@prefix tbl: <{BASE}cms-table/> .\n@prefix e: <{BASE}edit/ncci-{self.name}-> .\n"
               f"@prefix s: <{BASE}source/ncci-{self.name}-> .\n",
               "# Generated by `cptkg import ncci`; never edit by hand (ontology/README.md).",
               "# One line per data row of the CMS file; the node name ends with a hash of the row.\n",
               f"<{self.iri}> a owl:Ontology ;",
               "    rdfs:label " + _lit(f"{self.label_prefix} edits (generated)") + "@en ;",
               "    cptkg:generated true ;",
               "    dcterms:source " + ", ".join("s:" + _slug(s.part.name) for s in self.files) + " ;",
               '    rdfs:comment """' + comment.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '""" .', ""]
        for st in self.files:
            p = st.part
            out.append(f"s:{_slug(p.name)} a cptkg:Source ;\n"
                       f"    dcterms:title {_lit(f'CMS NCCI {FAMILY_TITLE[self.family]}, {self.quarter}: {p.name}')} ;\n"
                       f"    dcterms:identifier {_lit('sha256:' + p.sha256)} ;\n"
                       f"    cptkg:url {_lit(FAMILY_URL[self.family])} ;\n"
                       f"    cptkg:confidence cptkg:high .")
        out.append("\n### Edits, one node per data row\n")
        return "\n".join(out)

    def finish(self):
        self.body.close()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".ttl.part", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out, open(self.body_path, encoding="utf-8") as body:
            out.write(self.header())
            while chunk := body.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, self.path)
        self.body_path.unlink()

    def abort(self):
        try:
            self.body.close()
        finally:
            self.body_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Registration: cptkg.ttl imports and the catalog

IMPORTS_BLOCK = re.compile(r"(owl:imports\s+)((?:<[^>]+>\s*,\s*)*<[^>]+>)(\s*\.)")


def register_module(root, iri, rel):
    """Make ontology/cptkg.ttl import `iri` and the catalog map it to `rel` (idempotent)."""
    ont = Path(root) / "ontology"
    head = ont / "cptkg.ttl"
    text = head.read_text(encoding="utf-8")
    m = IMPORTS_BLOCK.search(text)
    if not m:
        raise ContentError("cannot find the owl:imports list to register a generated module", file=head)
    iris = re.findall(r"<([^>]+)>", m.group(2))
    if iri not in iris:
        iris = sorted(set(iris) | {iri})
        indent = re.search(r"\n([ \t]+)<", m.group(2))
        indent = indent.group(1) if indent else "        "
        block = m.group(1).rstrip() + "\n" + ",\n".join(f"{indent}<{i}>" for i in iris) + " ."
        text = text[:m.start()] + block + text[m.end():]
        head.write_text(text, encoding="utf-8")
    catalog = ont / "catalog-v001.xml"
    ctext = catalog.read_text(encoding="utf-8")
    entry = f'  <uri name="{iri}" uri="{rel}"/>'
    existing = re.search(r'[ \t]*<uri name="' + re.escape(iri) + r'" uri="[^"]*"\s*/>', ctext)
    if existing:
        if existing.group(0).strip() != entry.strip():
            ctext = ctext[:existing.start()] + entry + ctext[existing.end():]
            catalog.write_text(ctext, encoding="utf-8")
        return
    lines = ctext.splitlines(keepends=True)
    at = next((i for i, l in enumerate(lines) if l.strip().startswith("</catalog")), None)
    if at is None:
        raise ContentError("no </catalog> in the catalog", file=catalog)
    for i, l in enumerate(lines):
        m2 = re.search(r'<uri name="([^"]+)"', l)
        if m2 and m2.group(1) > iri:
            at = i
            break
    lines.insert(at, entry + "\n")
    catalog.write_text("".join(lines), encoding="utf-8")
    ET.fromstring("".join(lines))  # still XML


# ---------------------------------------------------------------------------------------------
# The shared stanza module for codes the graph does not describe

def load_manifest(root):
    path = generated_dir(root) / MANIFEST
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        data = {"format": 1, "modules": {}}
    # a module file removed by hand no longer contributes codes
    data["modules"] = {rel: m for rel, m in data["modules"].items() if (Path(root) / "ontology" / rel).exists()}
    return data


def save_manifest(root, data):
    path = generated_dir(root) / MANIFEST
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def write_codes_module(root, manifest, known):
    """Rebuild edits/generated/ncci-codes.ttl: one stanza per code named by a generated module
    and not described by a hand-written one. Returns (path, number of stanzas)."""
    merged = {}
    for rel, m in sorted(manifest["modules"].items()):
        for code, (first, addon_from, sources) in m["codes"].items():
            if code in known:
                continue
            e = merged.setdefault(code, [None, None, set(), set()])
            if first and (e[0] is None or first < e[0]):
                e[0] = first
            if addon_from and (e[1] is None or addon_from < e[1]):
                e[1] = addon_from
            e[2].update(sources)
            e[3].add(m["family"])
    families = sorted({f for e in merged.values() for f in e[3]})
    count = len(merged)
    iri = MODULE_BASE + CODES_MODULE
    out = [PREFIXES, "# Generated by `cptkg import ncci`; never edit by hand (ontology/README.md).\n",
           f"<{iri}> a owl:Ontology ;",
           '    rdfs:label "Codes named by the CMS NCCI files and not described by this graph (generated)"@en ;',
           "    cptkg:generated true ;",
           "    dcterms:source src:ncci-modifiers, src:mue-mai, src:aoc-types ;",
           '    rdfs:comment """Rebuilt by every `cptkg import ncci` from edits/generated/manifest.json: a minimal '
           "stanza (notation, a placeholder label, the file family, the earliest date a generated edit names the "
           "code, the files) for each code a generated edit module names that no hand-written module describes, "
           "so the edits can name it as a cptkg:Code. No coding criteria: derive never selects these codes. "
           f"{len(merged)} codes from {len(manifest['modules'])} generated modules.\"\"\" .", ""]
    for fam in families:
        out.append(f"fam:cms-ncci-{fam} a cptkg:CodeFamily ; skos:prefLabel "
                   f"{_lit(f'codes known only from the CMS NCCI {FAMILY_SHORT[fam]} file')}@en ; "
                   f"dcterms:source src:{FAMILY_CONCEPT_SOURCE[fam]} .")
    rel = (GENERATED / f"{CODES_MODULE}.ttl").as_posix()
    path = Path(root) / "ontology" / rel
    fd, tmp = tempfile.mkstemp(prefix=f".{CODES_MODULE}.", suffix=".ttl.part", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n\n")
        for code in sorted(merged):  # written one by one: with --scope all there are tens of thousands
            first, addon_from, sources, fams = merged.pop(code)
            types = ["cptkg:HCPCSCode" if code[0].isalpha() else "cptkg:CPTCode"]
            if addon_from:
                types.append("cptkg:AddOnCode")
            named = " and ".join(FAMILY_SHORT[f] for f in sorted(fams))
            parts = [f"cpt:{code} a {', '.join(types)}", f'skos:notation "{code}"',
                     f'skos:prefLabel "Code {code}, known here only from the CMS NCCI {named} file{"s" if len(fams) > 1 else ""}"@en',
                     "cptkg:family " + ", ".join(f"fam:cms-ncci-{f}" for f in sorted(fams)),
                     f'cptkg:knownInUseBy "{first}"^^xsd:date']
            if addon_from:
                parts.append(f'cptkg:addOnFrom "{addon_from}"^^xsd:date')
            parts += ['cptkg:note "Stanza generated for a code a CMS file names; the in-use date is the earliest date of an edit naming it."',
                      "cptkg:confidence cptkg:medium",
                      "dcterms:source " + ", ".join(f"src:{s}" for s in sorted(sources))]
            f.write(" ;\n    ".join(parts) + " .\n")
    os.replace(tmp, path)
    register_module(root, iri, rel)
    return path, count


# ---------------------------------------------------------------------------------------------
# The import

@dataclass
class ImportResult:
    modules: list  # ModuleWriter (finished)
    errors: list  # InputError: files refused, malformed rows (first MAX_REPORTED per file)
    malformed: int
    codes_module: Path | None
    code_stanzas: int
    seconds: float
    notes: list

    @property
    def ok(self):
        return not self.errors and not self.malformed


def run_import(content, paths, quarter, scope="kb", setting=None, log=None):
    """Import CMS NCCI files into generated modules under content.root. See the module doc."""
    started = time.perf_counter()
    if scope not in ("kb", "all"):
        raise InputError(f"--scope must be kb or all, not '{scope}'", field="scope")
    if setting is not None and setting not in SETTINGS:
        raise InputError(f"--setting must be practitioner or facility, not '{setting}'", field="setting")
    quarter, qfirst, qlast = parse_quarter(quarter)
    root = content.root
    errors, notes = [], []
    known, known_addons = known_codes(content)

    with tempfile.TemporaryDirectory() as tmpdir:
        parts = []
        for p in paths:
            try:
                found = detect(p, tmpdir)
            except InputError as err:
                errors.append(err)
                continue
            digest = sha256_of(p)
            for part in found:
                part.sha256 = digest
                problem = _settle_setting(part, setting)
                if problem:
                    errors.append(problem)
                    continue
                if part.name_quarter and part.name_quarter != quarter:
                    part.notes.append(f"the file name implies {part.name_quarter}, imported as {quarter} (--quarter)")
                parts.append(part)

        groups = {}
        for part in _one_copy_per_table(parts, notes):
            groups.setdefault((part.family, part.setting), []).append(part)
        writers = []
        for (family, set_), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            writer = ModuleWriter(root, family, set_, quarter, scope, qfirst, qlast)
            try:
                keep_addons = _aoc_groups(group, known) if family == "aoc" and scope == "kb" else None
                for part in group:
                    stats = writer.start_file(part)
                    for note in part.notes:
                        writer.warnings.append(f"{part.name}: {note}")
                    _import_part(writer, part, stats, scope, known, known_addons, keep_addons)
                    errors.extend(stats.problems)
                    if log:
                        log(_file_line(stats))
            except BaseException:
                writer.abort()
                raise
            writer.finish()
            writers.append(writer)

    codes_path, stanzas = None, 0
    if writers:
        manifest = load_manifest(root)
        for w in writers:
            manifest["modules"][w.rel] = {
                "module": w.iri, "family": w.family, "setting": w.setting, "quarter": w.quarter, "scope": w.scope,
                "files": [{"name": s.part.name, "sha256": s.part.sha256} for s in w.files],
                "codes": {c: [e[0], e[1], sorted(e[2])] for c, e in sorted(w.codes.items())},
            }
        for w in writers:
            older = sorted(rel for rel, m in manifest["modules"].items()
                           if m["family"] == w.family and m["setting"] == w.setting and m["quarter"] != w.quarter)
            if older and w.family in ("ptp", "aoc"):
                notes.append(f"{w.rel} and {', '.join(older)} are both loaded: the {FAMILY_SHORT[w.family]} file "
                             f"holds the full history, so their edits apply twice; delete the module you no "
                             f"longer want (its file, its line in cptkg.ttl and catalog-v001.xml)")
        save_manifest(root, manifest)
        codes_path, stanzas = write_codes_module(root, manifest, known)
        for w in writers:
            register_module(root, w.iri, w.rel)
    malformed = sum(s.malformed for w in writers for s in w.files)
    return ImportResult(writers, errors, malformed, codes_path, stanzas, time.perf_counter() - started, notes)


def _one_copy_per_table(parts, notes):
    """CMS ships each table as text and as xlsx under one stem: read one copy (the text one for
    PTP and MUE, the xlsx for AOC, as MEMBER_PATTERNS prefers), and say so."""
    prefer = {family: order for family, _, order in MEMBER_PATTERNS}
    best = {}
    for part in parts:
        stem = Path(part.member or part.path.name).stem.lower()
        ext = "txt" if part.layout == "fixed" else part.layout
        key = (part.family, part.setting, stem)
        rank = prefer[part.family].index(ext) if ext in prefer[part.family] else 9
        if key in best:
            other_rank, other = best[key]
            kept, dropped = (part, other) if rank < other_rank else (other, part)
            notes.append(f"{dropped.display}: another copy of {kept.display}; only that one was read")
            best[key] = (min(rank, other_rank), kept)
        else:
            best[key] = (rank, part)
    return [p for _, p in best.values()]


def _settle_setting(part, wanted):
    """Fix the part's setting from content, name and --setting; an InputError when they clash."""
    if part.family == "aoc":
        return None
    if part.setting == "dme":
        return InputError("the DME supplier MUE table has no setting concept in the graph (only practitioner and "
                          "facility tables are imported)", file=part.display, field="MUE Values header")
    if part.setting and wanted and part.setting != wanted:
        return InputError(f"the file is the {part.setting} table, but --setting {wanted} was given",
                          file=part.display, field="setting")
    part.setting = part.setting or wanted
    if not part.setting:
        return InputError("cannot tell the practitioner table from the facility one: keep the CMS file name "
                          "(ccipra-/ccioph-, MCR_MUE_PractitionerServices/OutpatientHospitalServices) or pass --setting",
                          file=part.display, field="setting")
    return None


def _aoc_groups(parts, known):
    """Scope kb for AOC: the add-on codes whose rows are kept (the add-on or a primary is known)."""
    keep = set()
    for part in parts:
        stats = FileStats(part)
        for _, _, v in read_aoc(part, stats):
            if v[1] in known or (v[3] and v[3] in known):
                keep.add(v[1])
    return keep


def _import_part(writer, part, stats, scope, known, known_addons, keep_addons):
    family = part.family
    all_rows = scope == "all"
    if family == "ptp":
        for _, canonical, v in read_ptp(part, stats):
            stats.data += 1
            if all_rows or v[0] in known or v[1] in known:
                writer.ptp(canonical, v, known)
                stats.written += 1
            else:
                writer._occurrence((v[0], v[1]), canonical)  # keep IRIs the same in both scopes
                stats.skip("outside scope kb (no code of the graph)")
    elif family == "mue":
        for _, canonical, v in read_mue(part, stats):
            stats.data += 1
            if all_rows or v[0] in known:
                writer.mue(canonical, v, known)
                stats.written += 1
            else:
                writer._occurrence(v[0], canonical)
                stats.skip("outside scope kb (no code of the graph)")
    else:
        warned = set()
        for _, canonical, v in read_aoc(part, stats):
            stats.data += 1
            addon = v[1]
            if addon in known and addon not in known_addons:
                writer._occurrence((addon, v[3]), canonical)
                stats.skip("add-on code described by the graph without cptkg:AddOnCode")
                if addon not in warned:
                    warned.add(addon)
                    writer.warnings.append(f"{part.name}: the file makes {addon} an add-on code, but the hand-written "
                                           f"graph does not type it cptkg:AddOnCode; its rows were skipped")
                continue
            if all_rows or addon in keep_addons:
                writer.aoc(canonical, v, known)
                stats.written += 1
            else:
                writer._occurrence((addon, v[3]), canonical)
                stats.skip("outside scope kb (no code of the graph)")


def _file_line(stats):
    skipped = sum(stats.skipped.values())
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(stats.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"  {stats.part.display}: {stats.read} records, {stats.data} data rows, {stats.written} written, "
            f"{skipped} skipped" + (f" ({reasons})" if reasons else ""))
