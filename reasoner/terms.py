"""pyoxigraph terms as rdflib terms: the one mapping shared by the knowledge-base reader
(reasoner/kb.py) and the fast engines (reasoner/fast.py, reasoner/fastderive.py)."""
from __future__ import annotations

import pyoxigraph as ox
from rdflib import BNode, Literal, URIRef

_XSD_STRING = ox.NamedNode("http://www.w3.org/2001/XMLSchema#string")


def literal_to_rdflib(term: ox.Literal) -> Literal:
    if term.language:
        return Literal(term.value, lang=term.language)
    if term.datatype == _XSD_STRING:  # RDF 1.1 simple literal: rdflib keeps it untyped
        return Literal(term.value)
    return Literal(term.value, datatype=URIRef(term.datatype.value))


def to_rdflib(term):
    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if isinstance(term, ox.Literal):
        return literal_to_rdflib(term)
    raise TypeError(term)


def cached(convert):
    """`convert` with a cache, so each distinct term is made once (a file, a batch)."""
    made = {}

    def term(x):
        r = made.get(x)
        if r is None:
            r = made[x] = convert(x)
        return r
    return term
