"""Running the derivation rules, stage by stage, and recording provenance.

Rules are the CONSTRUCT queries in queries/derive and queries/edits (plus overlay rules). Each
header names a stage. Numbered stages run in order; within a stage the rules run again until
they add nothing (a fixpoint), so stages are strata: a rule that asks whether a line is
suppressed sees every suppression of the earlier stages. Rules of stage `screen` (validity
filters: date of service, documentation) run after every numbered stage, so every code
considered at any stage is screened.

The engine, not the rule author, records provenance: every node a rule constructs that is a
code line, a suppression or a modifier assignment gets `cptkg:derivedBy rule:<file-stem>`;
the rule's own triples (title, source) come from its header (kb.rule_triples).

Derivation of one encounter needs only that encounter and the knowledge graph, so batches can
be split across processes.
"""
from __future__ import annotations

from rdflib import Graph
from rdflib.namespace import RDF
from rdflib.plugins.sparql import prepareQuery

from .errors import ContentError
from .vocab import CPTKG, RULE, bind_all

PRODUCT_TYPES = (CPTKG.CodeLine, CPTKG.Suppression, CPTKG.ModifierAssignment)
MAX_PASSES = 10


class Deriver:
    def __init__(self, kb):
        self.kb = kb
        self.stages = []  # [(stage name, [(rule, prepared)])]
        self.screens = []
        numbered = {}
        for rule in kb.rules():
            try:
                prepared = prepareQuery(rule.text)
            except Exception as exc:
                raise ContentError(f"cannot parse SPARQL: {exc}", file=rule.path) from exc
            if rule.stage == "screen":
                self.screens.append((rule, prepared))
                continue
            try:
                n = float(rule.stage)
            except ValueError:
                raise ContentError(f"stage '{rule.stage}' is neither a number nor 'screen'", file=rule.path)
            numbered.setdefault(n, []).append((rule, prepared))
        self.stages = [(str(k), numbered[k]) for k in sorted(numbered)]

    def _run(self, g, derived, rules):
        """Run rules to a fixpoint over g; add what they construct to g and to derived."""
        for _ in range(MAX_PASSES):
            grew = False
            for rule, prepared in rules:
                try:
                    result = g.query(prepared).graph
                except Exception as exc:
                    raise ContentError(f"rule failed: {exc}", file=rule.path) from exc
                new = [t for t in result if t not in g]
                if not new:
                    continue
                grew = True
                for t in new:
                    g.add(t)
                    derived.add(t)
                rule_iri = RULE[rule.id]
                for s, _, o in result.triples((None, RDF.type, None)):
                    if o in PRODUCT_TYPES and (s, CPTKG.derivedBy, rule_iri) not in g:
                        g.add((s, CPTKG.derivedBy, rule_iri))
                        derived.add((s, CPTKG.derivedBy, rule_iri))
            if not grew:
                return
        names = ", ".join(r.id for r, _ in rules)
        raise ContentError(f"rules do not settle after {MAX_PASSES} passes: {names}")

    def derive(self, record_graph: Graph) -> Graph:
        """Derive codes for the encounter(s) in record_graph; return the derivation triples."""
        g = self.kb.graph
        added = [t for t in record_graph if t not in g]
        derived = bind_all(Graph())
        for t in added:
            g.add(t)
        try:
            for _, rules in self.stages:
                self._run(g, derived, rules)
                if self.screens:
                    self._run(g, derived, self.screens)
        finally:
            for t in derived:
                g.remove(t)
            for t in added:
                g.remove(t)
        return derived
