"""cptkg: a knowledge-graph coding reasoner for imaging-guided CPT codes.

The coding knowledge lives in ontology/ (facts), queries/ (derivation rules, SPARQL) and
shapes/ (validation, SHACL). This package loads that content, runs it, records provenance
and renders results; it holds no coding rule of its own.
"""
__version__ = "0.1.0"
