"""OWL consistency and classification with HermiT, through owlready2.

owlready2 does not parse Turtle, so the modules are loaded with rdflib and handed over as
N-Triples in a fresh World(). HermiT rejects xsd:date, so date literals are given to it as
xsd:dateTime at midnight (the same instant; nothing in the axioms compares dates). The merged
graph already holds every module, so owl:imports are dropped: owlready2 would try to download them. Pellet, the
other bundled reasoner, does not run on Java 17 with owlready2 0.51, so HermiT is the one used.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from rdflib import Graph, Literal
from rdflib.namespace import OWL, XSD


def reasoner_graph(kb_graph: Graph) -> Graph:
    g = Graph()
    for s, p, o in kb_graph:
        if p == OWL.imports:
            continue  # every module is already merged; owlready2 would try to fetch the IRI
        if isinstance(o, Literal) and o.datatype == XSD.date:
            o = Literal(f"{o}T00:00:00", datatype=XSD.dateTime)
        elif o == XSD.date:  # rdfs:range xsd:date declarations
            o = XSD.dateTime
        g.add((s, p, o))
    return g


def consistency(kb_graph: Graph):
    """Run HermiT. Returns (consistent, unsatisfiable class IRIs, message)."""
    import owlready2

    g = reasoner_graph(kb_graph)
    with tempfile.TemporaryDirectory() as tmp:
        nt = Path(tmp) / "kb.nt"
        g.serialize(nt, format="nt", encoding="utf-8")
        world = owlready2.World()
        onto = world.get_ontology(nt.as_uri()).load()
        try:
            with onto:
                owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
        except owlready2.OwlReadyInconsistentOntologyError as exc:
            return False, [], f"HermiT: the knowledge base is inconsistent ({str(exc).strip()[:300]})"
        unsat = sorted(c.iri for c in world.inconsistent_classes())
        if unsat:
            return False, unsat, "HermiT: unsatisfiable classes: " + ", ".join(unsat)
        return True, [], f"HermiT: consistent ({len(g)} triples)"
