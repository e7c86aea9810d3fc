"""Claim and encounter JSON straight to N-Triples, with the JSON-LD context compiled once.

rdflib's JSON-LD parser costs about 1.7 ms per claim, more than the fast engine's validation
of it. The records our readers prepare (reasoner/inputs.py: plain objects whose keys are terms
of ontology/context.jsonld, with ids) use a small part of JSON-LD 1.1, so the context is read
once into a table (term -> predicate IRI, how its values are coerced: `@id`, `@vocab` with the
term's scoped `@vocab`, a datatype, or none) and each record is written as N-Triples text.

The writer is driven by the context alone: a term added to the context is written without a
change here. It takes only what it can write exactly as a JSON-LD processor would, and returns
None for anything else, so the caller uses rdflib's JSON-LD for that record:
  * ids and `@id`-coerced values that are simple relative references (letters, digits, `.`,
    `_`, `~`, `-`), resolved against the file's base;
  * `@vocab`-coerced values of the same simple form that are not themselves a term (a term
    would expand to its own IRI), appended to the term's scoped `@vocab`;
  * types that are terms of the context;
  * literals in canonical form that rdflib and oxigraph read alike: integers (JSON numbers, or
    strings of digits, for xsd:integer terms), JSON booleans, xsd:date as YYYY-MM-DD naming a
    real day, plain strings;
  * nested objects under terms without a scoped context.
Anything else (a compact or absolute IRI, a float, null, a value object, an ill-typed literal,
a keyword) falls back. tests/test_fast_input.py checks, graph for graph, that what is written
here equals rdflib's JSON-LD reading on every case file and on a seeded batch.

What it writes is valid N-Triples by construction (plain IRIs under a base it has checked,
canonical literals, escaped strings that are valid Unicode), so the store reads it without
checking it again (reasoner/fast.py: WRITTEN_NT, oxigraph's lenient parser, about 9 us a claim
less). Because it accepts only canonical, valid literals, a record written here needs none of the
fast validator's literal checks (FastValidator.split): it can go straight into the store.
"""
from __future__ import annotations

import datetime
import json
import re

XSD_NS = "http://www.w3.org/2001/XMLSchema#"
_XSD = XSD_NS
_RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
_SIMPLE = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$")
_INTEGER = re.compile(r"^(?:0|-?[1-9][0-9]*)$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_BASE = re.compile(r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@/-]+/$")


def valid_unicode(s: str) -> bool:
    """False for a string holding an unpaired surrogate (a JSON escape such as "\\ud800")."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _nt_string(s: str) -> str:
    if not valid_unicode(s):  # the reader names the field
        raise Fallback
    if '"' in s or "\\" in s or any(ord(c) < 0x20 for c in s):
        out = []
        for c in s:
            if c == '"':
                out.append('\\"')
            elif c == "\\":
                out.append("\\\\")
            elif c == "\n":
                out.append("\\n")
            elif c == "\r":
                out.append("\\r")
            elif ord(c) < 0x20:
                out.append(f"\\u{ord(c):04X}")
            else:
                out.append(c)
        s = "".join(out)
    return f'"{s}"'


_LEX_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_LEX_DATE = re.compile(r"^(-?[0-9]{4,})-([0-9]{2})-([0-9]{2})(Z|[+-][0-9]{2}:[0-9]{2})?$")


def lexical_error(value, datatype):
    """Why a JSON value is not a valid literal of the datatype its term declares, or None.

    JSON-LD writes such a value as an ill-typed literal; the reader refuses it instead, naming the
    field, so that no engine has to decide what "two" units or the 30th of February mean (rdflib
    compares an ill-typed date as a string, oxigraph refuses to compare it). Datatypes other than
    these three are not checked."""
    if datatype == _XSD + "integer":
        if type(value) is int or (type(value) is str and _LEX_INTEGER.match(value)):
            return None
        return f"{json.dumps(value)} is not a whole number"
    if datatype == _XSD + "date":
        m = _LEX_DATE.match(value) if type(value) is str else None
        if m is not None:
            try:
                datetime.date(2000 if len(m.group(1)) != 4 else int(m.group(1)), int(m.group(2)), int(m.group(3)))
                if m.group(1) not in ("0000", "-0000"):
                    return None
            except ValueError:
                pass
        return f"{json.dumps(value)} is not a date (YYYY-MM-DD)"
    if datatype == _XSD + "boolean":
        if type(value) is bool or value in ("true", "false", "1", "0"):
            return None
        return f"{json.dumps(value)} is not true or false"
    return None


class Fallback(Exception):
    """The record is outside what the writer takes; read it with rdflib's JSON-LD."""


class _Term:
    __slots__ = ("pred", "coerce", "vocab", "datatype", "scoped")

    def __init__(self, pred, coerce=None, vocab=None, datatype=None, scoped=False):
        self.pred, self.coerce, self.vocab, self.datatype, self.scoped = pred, coerce, vocab, datatype, scoped


class ContextWriter:
    """A compiled JSON-LD context; `write(obj, base)` gives N-Triples lines or None."""

    def __init__(self, context: dict):
        self.prefixes = {k: v for k, v in context.items()
                         if isinstance(v, str) and not k.startswith("@") and v.endswith(("/", "#"))}
        self.names = frozenset(k for k in context if not k.startswith("@"))  # every term, for the key check
        self.terms = {}
        self.term_iris = {}
        self.datatype_of = {}   # every term whose values the context types with a datatype
        self.id_keys, self.type_keys = set(), set()
        self.unsupported = set(k for k in context if k.startswith("@") and k not in ("@version",))
        self._bases = set()     # bases already found to be plain IRIs
        for key, spec in context.items():
            if key.startswith("@"):
                continue
            if spec == "@id":
                self.id_keys.add(key)
                continue
            if spec == "@type":
                self.type_keys.add(key)
                continue
            if isinstance(spec, str):
                iri = self.expand(spec)
                if iri is None:
                    continue
                self.term_iris[key] = iri
                if key not in self.prefixes:
                    self.terms[key] = _Term(f"<{iri}>")
                continue
            if not isinstance(spec, dict):
                continue
            dt = spec.get("@type")
            if isinstance(dt, str) and not dt.startswith("@") and self.expand(dt):
                self.datatype_of[key] = self.expand(dt)
            iri = spec.get("@id")
            if iri in ("@graph", "@id", "@type") or not isinstance(iri, str):
                continue
            iri = self.expand(iri)
            if iri is None or set(spec) - {"@id", "@type", "@container", "@context"}:
                continue
            self.term_iris[key] = iri
            container = spec.get("@container")
            if container not in (None, "@set"):
                continue
            coerce = spec.get("@type")
            scoped = spec.get("@context")
            vocab = None
            if scoped is not None:
                if not isinstance(scoped, dict) or set(scoped) != {"@vocab"}:
                    continue
                vocab = scoped["@vocab"]
            if coerce is None:
                self.terms[key] = _Term(f"<{iri}>", scoped=scoped is not None)
            elif coerce == "@id":
                self.terms[key] = _Term(f"<{iri}>", "@id", scoped=scoped is not None)
            elif coerce == "@vocab":
                if vocab is None:
                    continue
                self.terms[key] = _Term(f"<{iri}>", "@vocab", vocab=vocab, scoped=True)
            elif isinstance(coerce, str) and not coerce.startswith("@"):
                dt = self.expand(coerce)
                if dt is None:
                    continue
                self.terms[key] = _Term(f"<{iri}>", "datatype", datatype=dt, scoped=scoped is not None)

    def expand(self, value):
        if ":" not in value:
            return None
        prefix, _, rest = value.partition(":")
        if rest.startswith("//"):
            return value
        ns = self.prefixes.get(prefix)
        return None if ns is None else ns + rest

    # -----------------------------------------------------------------------------------------

    def write(self, obj: dict, base: str):
        """N-Triples lines for obj (a node object with an id), or None to fall back."""
        if self.unsupported:
            return None
        if base not in self._bases:
            if not _BASE.match(base):
                return None
            self._bases.add(base)
        out = []
        try:
            self._node(obj, base, out)
        except Fallback:
            return None
        return out

    def _ref(self, value, base):
        if type(value) is not str or not _SIMPLE.match(value) or value in (".", ".."):
            raise Fallback
        return f"<{base}{value}>"

    def _node(self, obj, base, out):
        subject = None
        for k in self.id_keys:
            if k in obj:
                if subject is not None:
                    raise Fallback
                subject = self._ref(obj[k], base)
        if subject is None or "@context" in obj:
            raise Fallback
        for key, value in obj.items():
            if key in self.id_keys:
                continue
            if key in self.type_keys:
                for v in (value if type(value) is list else (value,)):
                    iri = self.term_iris.get(v) if type(v) is str else None
                    if iri is None:
                        raise Fallback
                    out.append(f"{subject} {_RDF_TYPE} <{iri}> .")
                continue
            term = self.terms.get(key)
            if term is None:
                raise Fallback
            for v in (value if type(value) is list else (value,)):
                out.append(f"{subject} {term.pred} {self._value(term, v, base, out)} .")
        return subject

    def _value(self, term, v, base, out):
        tv = type(v)
        if tv is dict:
            if term.scoped:
                raise Fallback
            return self._node(v, base, out)
        coerce = term.coerce
        if coerce == "@id":
            return self._ref(v, base)
        if coerce == "@vocab":
            if tv is not str or not _SIMPLE.match(v) or v in self.term_iris or v in self.id_keys or v in self.type_keys:
                raise Fallback
            return f"<{term.vocab}{v}>"
        dt = term.datatype
        if tv is bool:
            if dt not in (None, _XSD + "boolean"):
                raise Fallback
            return f'"{"true" if v else "false"}"^^<{_XSD}boolean>'
        if tv is int:
            if dt not in (None, _XSD + "integer"):
                raise Fallback
            return f'"{v}"^^<{_XSD}integer>'
        if tv is not str:
            raise Fallback  # floats, null, nested lists: the JSON-LD processor decides
        if dt is None:
            return _nt_string(v)
        if dt == _XSD + "integer":
            if not _INTEGER.match(v):
                raise Fallback
        elif dt == _XSD + "date":
            if not _DATE.match(v):
                raise Fallback
            try:
                datetime.date.fromisoformat(v)
            except ValueError:
                raise Fallback
        elif dt == _XSD + "boolean":
            if v not in ("true", "false"):
                raise Fallback
        else:
            raise Fallback
        return f'"{v}"^^<{dt}>'
