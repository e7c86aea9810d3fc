"""Reading encounter and claim files into RDF, one record at a time.

JSON is JSON-LD with ontology/context.jsonld: the same file is RDF to any JSON-LD processor.
The reader adds only plumbing a processor cannot (it is documented in the README):
  * the context, when the file does not name one;
  * `"type": "Encounter"` / `"Claim"` / `"ClaimLine"` when absent;
  * ids for procedures, imaging uses and claim lines that have none;
  * claim-level dateOfService / placeOfService / claimType / patientAge copied to lines lacking them.
It rejects keys the context does not define (a JSON-LD processor would drop them silently).
CSV claim lines are turned into the same JSON first, so there is one path to RDF.

Every record yields either a graph or an InputError naming file, record and field.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import quote

from rdflib import Graph, URIRef
from rdflib.namespace import RDF

from . import jsonstream
from .errors import InputError
from .fastinput import XSD_NS, ContextWriter, lexical_error, valid_unicode
from .vocab import CPTKG, DATA


class Record:
    """One encounter or claim: its RDF graph, or the InputError that stopped it.

    A record read from JSON also carries `nt`, its triples as N-Triples lines written by
    reasoner.fastinput (when the writer takes it); the fast engines load those directly, and
    `graph` is parsed from them only when someone asks for it."""

    __slots__ = ("id", "file", "line", "_graph", "node", "error", "source", "nt")

    def __init__(self, id, file, line, graph=None, node=None, error=None, source=None, nt=None):
        self.id, self.file, self.line, self._graph = id, file, line, graph
        self.node, self.error, self.source, self.nt = node, error, source, nt

    @property
    def graph(self) -> Graph | None:
        if self._graph is None and self.nt is not None:
            g = Graph()
            g.parse(data="\n".join(self.nt), format="nt")
            self._graph = g
        return self._graph

    @graph.setter
    def graph(self, value):
        self._graph = value

    def __repr__(self):
        return f"Record(id={self.id!r}, file={str(self.file)!r}, line={self.line!r}, error={self.error!r})"


_CONTEXT_CACHE = {}


def open_text(path):
    """A data file opened for streaming as UTF-8 (a byte order mark dropped). Bytes that are not
    UTF-8 (a Latin-1 or Windows-1252 export) are kept as lone surrogates (surrogateescape), so that
    `not_utf8` reports them with the record and field they are in, and the file's other records
    are still read."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def utf8_error(byte, file=None, line=None, field=None, record=None):
    return InputError(f"not UTF-8 text (byte 0x{byte:02X}); save the file as UTF-8",
                      file=file, line=line, field=field, record=record)


def not_utf8(text, file=None, line=None, field=None, record=None):
    """An InputError when text (from open_text) holds a byte that is not UTF-8."""
    if text.isascii():
        return None
    byte, at = jsonstream.bad_byte(text)
    if byte is None:
        return None
    if line is None and "\n" in text:
        line = text.count("\n", 0, at) + 1
    return utf8_error(byte, file=file, line=line, field=field, record=record)


def load_context(path: Path) -> dict:
    key = str(path)
    if key not in _CONTEXT_CACHE:
        _CONTEXT_CACHE[key] = json.loads(Path(path).read_text(encoding="utf-8"))["@context"]
    return _CONTEXT_CACHE[key]


def base_for(path: Path) -> str:
    """The IRI records of a file are named under: the file's stem, percent-encoded where it holds
    characters an IRI cannot ("my claims.jsonl" -> .../my%20claims/)."""
    return f"{DATA}{quote(Path(path).stem, safe=_STEM_SAFE)}/"


_STEM_SAFE = "-._~!$&'()*+,;=@"


_WRITERS = {}


def writer_for(context: dict):
    """The compiled context (reasoner.fastinput.ContextWriter), made once per context."""
    w = _WRITERS.get(id(context))
    if w is None or w[0] is not context:
        w = _WRITERS[id(context)] = (context, ContextWriter(context))
    return w[1]


def _check_keys(obj, terms, file, record, prefix=""):
    """Every key a term of the context; every value of a datatyped term a valid literal of it
    (terms: the compiled context, writer_for)."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            _check_keys(item, terms, file, record, f"{prefix}[{i}].")
        return
    if not isinstance(obj, dict):
        return
    datatype_of = terms.datatype_of
    for key, value in obj.items():
        if key.startswith("@"):
            continue
        if key not in terms.names:
            raise InputError(f"unknown field '{key}' (known fields are the terms of ontology/context.jsonld)",
                             file=file, record=record, field=f"{prefix}{key}")
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(v, str) and not valid_unicode(v):
                at = f"{prefix}{key}" + (f"[{i}]" if isinstance(value, list) else "")
                raise InputError("not valid Unicode text (an unpaired surrogate, \\ud800-\\udfff)",
                                 file=file, record=record, field=at)
        dt = datatype_of.get(key)
        if dt is not None:
            for i, v in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(v, dict):
                    continue
                why = lexical_error(v, dt)
                if why:
                    at = f"{prefix}{key}" + (f"[{i}]" if isinstance(value, list) else "")
                    raise InputError(f"{why} ({dt.replace(XSD_NS, 'xsd:')})", file=file, record=record, field=at)
    for key, value in obj.items():  # the object's own fields first, then what it holds
        if isinstance(value, (dict, list)) and not key.startswith("@"):
            _check_keys(value, terms, file, record, f"{prefix}{key}" + ("" if isinstance(value, list) else "."))


def _json_to_graph(obj: dict, context: dict, base: str, file, record) -> Graph:
    doc = dict(obj)
    doc["@context"] = context
    g = Graph()
    try:
        g.parse(data=json.dumps(doc), format="json-ld", base=base)
    except Exception as exc:
        raise InputError(f"not valid JSON-LD with the cptkg context: {exc}", file=file, record=record) from exc
    return g


LIST_KEYS = ("encounters", "claims", "@graph")


def _records_from_json(path: Path):
    """Top level: an object with "encounters" or "claims", a single record object, or an array.
    Read as a stream (JSON Lines a line at a time, a document with reasoner/jsonstream.py), so a
    file of any size is read in bounded memory. Yields (line, record or InputError): the line a
    record starts on (None for a lone object that is not an error); a malformed document raises
    InputError after the records before the fault."""
    if path.suffix == ".jsonl":
        with open_text(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                bad = not_utf8(line, file=path, line=n)
                if bad is not None:
                    yield n, bad
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, InputError(f"not valid JSON: {exc.msg}", file=path, line=n)
        return
    listed = False
    try:
        with open_text(path) as fh:
            for what, line, value in jsonstream.records(fh, LIST_KEYS):
                if what == "item":
                    listed = True
                    yield (line, utf8_error(value.byte, path, line)) if isinstance(value, jsonstream.NotUtf8) \
                        else (line, value)
                elif not listed:  # an object without a list: one record, unless a list key holds something else
                    for key in LIST_KEYS:
                        if key in value:
                            raise InputError(f"'{key}' must be a list", file=path, field=key)
                    bad = jsonstream.NotUtf8.among(value.values())
                    yield (1, utf8_error(bad.byte, path)) if bad is not None else (None, value)
    except jsonstream.JsonError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=path, line=exc.line) from None


def _prepare_encounter(obj, file, index):
    if not isinstance(obj, dict):
        raise InputError("an encounter must be a JSON object", file=file, record=index)
    rid = obj.get("id")
    if not rid or not isinstance(rid, str):
        raise InputError("encounter has no 'id'", file=file, record=index, field="id")
    obj = dict(obj)
    obj.setdefault("type", "Encounter")
    for key, prefix, typ in (("procedures", "p", "Procedure"), ("imaging", "i", "ImagingUse")):
        items = obj.get(key, [])
        if not isinstance(items, list):
            raise InputError(f"'{key}' must be a list", file=file, record=rid, field=key)
        fixed = []
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise InputError(f"each of '{key}' must be an object", file=file, record=rid, field=f"{key}[{i-1}]")
            item = dict(item)
            item.setdefault("id", f"{rid}-{prefix}{i}")
            item.setdefault("type", typ)
            fixed.append(item)
        if key in obj:
            obj[key] = fixed
    return rid, obj


CLAIM_DEFAULTS = ("dateOfService", "placeOfService", "claimType", "patientAge", "payer")


def _prepare_claim(obj, file, index):
    if not isinstance(obj, dict):
        raise InputError("a claim must be a JSON object", file=file, record=index)
    rid = obj.get("id") or obj.get("claimId")
    if not rid or not isinstance(rid, str):
        raise InputError("claim has no 'id'", file=file, record=index, field="id")
    obj = dict(obj)
    obj.setdefault("id", rid)
    obj.setdefault("claimId", rid)
    obj.setdefault("type", "Claim")
    lines = obj.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InputError("claim has no 'lines'", file=file, record=rid, field="lines")
    fixed = []
    for i, line in enumerate(lines, 1):
        if not isinstance(line, dict):
            raise InputError("each line must be an object", file=file, record=rid, field=f"lines[{i-1}]")
        line = dict(line)
        line.setdefault("line", i)
        line.setdefault("id", f"{rid}-L{line['line']}")
        line.setdefault("type", "ClaimLine")
        line.setdefault("units", 1)
        if isinstance(line.get("documented"), str):
            line["documented"] = [d for d in line["documented"].replace(";", " ").replace(",", " ").split() if d]
        if isinstance(line.get("modifiers"), str):
            line["modifiers"] = [m for m in line["modifiers"].replace(";", " ").replace(",", " ").split() if m]
        for key in CLAIM_DEFAULTS:
            if key in obj and key not in line:
                line[key] = obj[key]
        if not line.get("code"):
            raise InputError("line has no 'code'", file=file, record=rid, field=f"lines[{i-1}].code")
        line["code"] = str(line["code"]).strip().upper()
        fixed.append(line)
    obj["lines"] = fixed
    return rid, obj


def _graph_record(kind, path, n, obj, context, terms, base, index):
    prepare = _prepare_encounter if kind == "encounter" else _prepare_claim
    rid = obj.get("id") if isinstance(obj, dict) else None
    try:
        rid, obj = prepare(obj, path, index if n is None else f"line {n}")
        node = URIRef(base + rid)
        # the writer takes only known terms and valid literals: what it writes needs no _check_keys
        nt = writer_for(context).write(obj, base)
        if nt is not None:
            return Record(id=rid, file=path, line=n, node=node, source=obj, nt=nt)
        _check_keys(obj, terms, path, rid)
        g = _json_to_graph(obj, context, base, path, rid)
        return Record(id=rid, file=path, line=n, graph=g, node=node, source=obj)
    except InputError as err:
        if err.line is None:
            err.line = n
        return Record(id=rid or f"#{index}", file=path, line=n, error=err)


def record_from_object(obj, kind: str, context_path: Path, file="<inline>", index=0):
    """One record from an already-parsed JSON object (test cases, the web page, the server)."""
    context = load_context(context_path)
    terms = writer_for(context)
    where = _FILES.get(file)
    if where is None:
        if len(_FILES) > 1000:
            _FILES.clear()
        where = _FILES[file] = (Path(file), base_for(Path(file)))
    return _graph_record(kind, where[0], None, obj, context, terms, where[1], index)


_FILES = {}


def read_records(path, kind: str, context_path: Path):
    """Yield a Record per encounter (kind='encounter') or claim (kind='claim') in a file."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", file=path)
    context = load_context(context_path)
    terms = writer_for(context)
    base = base_for(path)
    suffix = path.suffix.lower()
    if suffix in (".ttl", ".nt", ".n3"):
        yield from _records_from_rdf(path, kind, base)
        return
    if suffix == ".csv":
        if kind != "claim":
            raise InputError("CSV holds claim lines; describe encounters in JSON or Turtle", file=path)
        for index, (_, n, obj) in enumerate(csv_claims(path)):
            if isinstance(obj, InputError):
                yield Record(id=obj.record or f"line {n}", file=path, line=n, error=obj)
                continue
            yield _graph_record(kind, path, n, obj, context, terms, base, index)
        return
    if suffix not in (".json", ".jsonl", ".jsonld"):
        raise InputError(f"unknown file type '{suffix}' (use .json, .jsonl, .ttl or, for claims, .csv)", file=path)
    for index, (n, obj) in enumerate(_records_from_json(path)):
        if isinstance(obj, InputError):
            yield Record(id=f"line {n}", file=path, line=n, error=obj)
            continue
        yield _graph_record(kind, path, n, obj, context, terms, base, index)


def _records_from_rdf(path, kind, base):
    g = Graph()
    try:
        g.parse(path, format="turtle" if path.suffix != ".nt" else "nt", publicID=base)
    except Exception as exc:
        raise InputError(f"cannot parse RDF: {exc}", file=path) from exc
    if kind == "encounter":
        nodes = set(g.subjects(RDF.type, CPTKG.Encounter))
        nodes |= set(g.subjects(CPTKG.procedure, None)) | set(g.subjects(CPTKG.imaging, None))
    else:
        nodes = set(g.subjects(RDF.type, CPTKG.Claim)) | set(g.subjects(CPTKG.line, None))
    for node in sorted(nodes):
        sub = Graph()
        _closure(g, node, sub)
        if kind == "encounter":
            sub.add((node, RDF.type, CPTKG.Encounter))
        else:
            sub.add((node, RDF.type, CPTKG.Claim))
        rid = str(node)[len(base):] if str(node).startswith(base) else str(node)
        yield Record(id=rid, file=path, line=None, graph=sub, node=node)


def _closure(g, node, out, seen=None):
    """The record: the node and everything reachable from it (procedures, imaging, lines)."""
    seen = seen if seen is not None else set()
    if node in seen:
        return
    seen.add(node)
    for p, o in g.predicate_objects(node):
        out.add((node, p, o))
        if (o, None, None) in g and p not in (CPTKG.guides, CPTKG.confirms):
            _closure(g, o, out, seen)


CSV_COLUMNS = {
    "claim_id": "claimId", "claim": "claimId", "line": "line", "line_number": "line", "code": "code",
    "units": "units", "modifiers": "modifiers", "modifier": "modifiers",
    "date_of_service": "dateOfService", "dos": "dateOfService", "place_of_service": "placeOfService",
    "pos": "placeOfService", "claim_type": "claimType", "patient_age": "patientAge", "payer": "payer",
    "documented": "documented",
}
INT_FIELDS = ("line", "units", "patientAge")


def csv_claims(path):
    """The claims of a CSV file, streaming: one row per claim line, the lines of a claim consecutive.
    Yields (path, first line number, claim dict) or (path, line number, InputError); a claim with a
    bad row is one error (its first), and every claim is answered."""
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            yield path, 1, InputError("empty CSV file", file=path, line=1)
            return
        keys = []
        for name in header:
            key = CSV_COLUMNS.get(name.strip().lower().replace(" ", "_"))
            if key is None:
                yield path, 1, InputError(f"unknown column '{name}'", file=path, line=1, field=name)
                return
            keys.append((name, key))
        if "claimId" not in [k for _, k in keys] or "code" not in [k for _, k in keys]:
            yield path, 1, InputError("CSV needs the columns claim_id and code", file=path, line=1)
            return
        current, first_line, lines, seen = None, None, [], set()
        bad_claims = {}
        row_no = 1
        for row in reader:
            row_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            line, err = {}, None
            if len(row) != len(keys):
                err = InputError(f"{len(row)} fields, expected {len(keys)}", file=path, line=row_no)
            else:
                for (name, key), value in zip(keys, row):
                    value = value.strip()
                    if not value:
                        continue
                    err = not_utf8(value, file=path, line=row_no, field=name)
                    if err is not None:
                        break
                    if key in INT_FIELDS:
                        try:
                            value = int(value)
                        except ValueError:
                            err = InputError(f"'{value}' is not a whole number", file=path, line=row_no, field=name)
                            break
                    line[key] = value
            cid = line.pop("claimId", None) if err is None else (row[[k for _, k in keys].index("claimId")].strip()
                                                                    if len(row) == len(keys) else None)
            if err is None and not cid:
                err = InputError("no claim id", file=path, line=row_no, field="claim_id")
            if cid != current:
                if current is not None:
                    yield from _emit_csv_claim(path, first_line, current, lines, bad_claims)
                if cid in seen:
                    err = err or InputError(f"lines of claim {cid} are not consecutive (claim seen before line {row_no})",
                                            file=path, line=row_no, field="claim_id")
                current, first_line, lines = cid, row_no, []
                if cid is not None:
                    seen.add(cid)
            if err is not None:
                bad_claims.setdefault(cid, err)
            else:
                lines.append(line)
        if current is not None or bad_claims.get(None):
            yield from _emit_csv_claim(path, first_line, current, lines, bad_claims)


def _emit_csv_claim(path, first_line, cid, lines, bad_claims):
    err = bad_claims.pop(cid, None)
    if err is not None:
        # a claim id with bytes that are not UTF-8 is named with U+FFFD in their place
        err.record = cid.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if cid else cid
        yield path, first_line, err
    elif cid is not None:
        yield path, first_line, {"id": cid, "lines": lines}
