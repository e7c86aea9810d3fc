"""The records of a large JSON document, one at a time, in bounded memory.

A claims file may be one JSON document rather than JSON Lines: `{"claims": [ ... ]}`, a top-level
array, or a FHIR Bundle `{"resourceType": "Bundle", "entry": [ ... ]}`. `json.loads` of such a
file holds all of it (a million claims: several GB of Python objects); `records` reads it in
chunks and yields the items of the list one by one as the standard decoder reads each, with the
line each starts on. The other members of the top-level object are read whole (they are small).

What it accepts is what `json.loads` accepts (each value is read by `json.JSONDecoder`; the
structure around the list is checked here: braces, brackets, commas, colons, nothing after the
document). A malformed document raises `JsonError` with the line of the fault; the items before
it have been yielded.
"""
from __future__ import annotations

import json
import re

_WS = re.compile(r"[ \t\n\r]*")
_AFTER_SCALAR = frozenset(",]} \t\n\r")
_DECODER = json.JSONDecoder()
CHUNK = 1 << 20


class NotUtf8:
    """An item holding a byte that is not UTF-8 (the file is opened with surrogateescape)."""

    def __init__(self, byte):
        self.byte = byte

    @staticmethod
    def among(values):
        """The first NotUtf8 of values, or None."""
        return next((v for v in values if isinstance(v, NotUtf8)), None)


def bad_byte(text, start=0, end=None):
    """The first byte that was not UTF-8 in text read with surrogateescape (its escape, as an int),
    with its index; (None, None) when there is none."""
    m = _SURROGATE.search(text, start, len(text) if end is None else end)
    return (None, None) if m is None else (ord(m.group()) - 0xDC00, m.start())


_SURROGATE = re.compile("[\udc80-\udcff]")


class JsonError(ValueError):
    def __init__(self, msg, line):
        super().__init__(f"{msg} (line {line})")
        self.msg, self.line = msg, line


class _Stream:
    def __init__(self, fh, chunk=CHUNK):
        self.fh, self.chunk = fh, chunk
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        self.ascii = True

    def _fill(self):
        data = self.fh.read(self.chunk)
        if not data:
            self.eof = True
            return
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        self.ascii = self.buf.isascii()

    def _advance(self, end):
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def peek(self):
        """The next character that is not white space ('' at the end)."""
        while True:
            self._advance(_WS.match(self.buf, self.pos).end())
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos] if self.pos < len(self.buf) else ""
            self._fill()

    def expect(self, ch, what):
        got = self.peek()
        if got != ch:
            raise JsonError(f"expected {what}, found {repr(got) if got else 'the end of the file'}", self.line)
        self.pos += 1

    def value(self, check=False):
        """The next JSON value (with check: NotUtf8 in its place when it holds such a byte)."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise JsonError(exc.msg, self.line + self.buf.count("\n", self.pos, exc.pos)) from None
                self._fill()
                continue
            if not self.eof and not isinstance(obj, (str, list, dict)) and (
                    end == len(self.buf) or self.buf[end] not in _AFTER_SCALAR):
                self._fill()   # a number or literal may go on in the next chunk ("2." then "5"): read it whole
                continue
            if check and not self.ascii:
                byte = bad_byte(self.buf, self.pos, end)[0]
                if byte is not None:
                    obj = NotUtf8(byte)
            self._advance(end)
            return obj

    def items(self):
        """The values of the array that starts here, with their lines."""
        self.expect("[", "'['")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            self.peek()
            line = self.line
            yield line, self.value(check=True)
            if self.closes("]"):
                return

    def closes(self, closer):
        """After a member or item: True at the closing bracket, False at a comma (both read)."""
        c = self.peek()
        if c not in (closer, ","):
            raise JsonError(f"expected ',' or '{closer}', found {repr(c) if c else 'the end of the file'}", self.line)
        self.pos += 1
        return c == closer


def records(fh, list_keys=(), chunk=CHUNK):
    """Yield ("item", line, value) for each item of the document's list: the top-level array, or
    the array under the first of `list_keys` met in the top-level object; then, when the document
    is an object, ("object", 1, its other members) (all of them when no list was streamed)."""
    s = _Stream(fh, chunk)
    c = s.peek()
    if c == "[":
        yield from (("item", line, v) for line, v in s.items())
    elif c == "{":
        s.pos += 1
        members, streamed = {}, None
        if s.peek() == "}":
            s.pos += 1
        else:
            while True:
                if s.peek() != '"':
                    raise JsonError("expected a member name in double quotes", s.line)
                key = s.value()
                s.expect(":", "':'")
                if streamed is None and key in list_keys and s.peek() == "[":
                    streamed = key
                    yield from (("item", line, v) for line, v in s.items())
                else:
                    members[key] = s.value(check=True)
                if s.closes("}"):
                    break
        yield "object", 1, members
    elif c == "":
        raise JsonError("the file is empty", s.line)
    else:
        s.value()  # a scalar document: not records, but say so only if it is valid JSON
        raise JsonError("top level must be an object or a list", 1)
    if s.peek() != "":
        raise JsonError("extra data after the JSON document", s.line)
