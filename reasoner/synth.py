"""Seeded synthetic claims for the differential test and the benchmark.

`generate_claims(kb, n, seed)` returns n claim objects in the JSON shape `cptkg validate` reads
(and reasoner.inputs.record_from_object accepts). The generator reads its facts from the knowledge
graph (add-on edits, bundling edits, unit limits, code dates, PC/TC indicators, guidance that a
primary includes, codes to which fluoroscopy is integral, documentation requirements), so every
kind of finding the coding shapes can produce is injected, beside correct claims:

    correct, add-on without primary, add-on with another primary (type 2/3), add-on with its
    primary, guidance included in the primary, bundled pair with and without a distinct-service
    modifier, 76000 with a code to which fluoroscopy is integral, units over a per-line or
    per-day limit, a code deleted or not yet effective on the date, a professional claim in a
    facility without modifier 26 (and with it), an unknown code, malformed lines (units 0, units
    that are not a number, an unknown modifier, an unknown place of service, a malformed date),
    documentation missing (and complete), and claims mixing several of these.

The same seed gives the same claims (facts are read in sorted order).
"""
from __future__ import annotations

import random
from functools import lru_cache

Q_PREFIX = """PREFIX cptkg: <https://w3id.org/cptkg/vocab#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
"""

KINDS = (
    "correct", "addon-alone", "addon-other-primary", "addon-with-primary", "guidance-included",
    "bundle", "bundle-59", "fluoro-integral", "units-line", "units-day", "deleted", "not-yet",
    "facility-no-26", "facility-26", "unknown-code", "malformed", "documentation-missing",
    "documentation-complete", "mixed",
)


def _s(x):
    return None if x is None else str(x)


def _local(x):
    return str(x).rsplit("/", 1)[-1]


class Facts:
    """What the generator needs to know, read once from the knowledge graph."""

    def __init__(self, kb):
        g = kb.graph

        def q(text):
            return sorted((tuple(_s(v) for v in row) for row in g.query(Q_PREFIX + text)),
                          key=lambda r: tuple("" if v is None else v for v in r))

        self.codes = {}
        for c, n, f, t in q("""SELECT ?c ?n ?f ?t WHERE { ?c skos:notation ?n ; a/rdfs:subClassOf* cptkg:Code .
                 OPTIONAL { ?c cptkg:effectiveFrom ?f } OPTIONAL { ?c cptkg:effectiveThrough ?t } }"""):
            self.codes[n] = (f, t)
        self.code_list = sorted(self.codes)
        self.addons = q("""SELECT ?n ?aof ?pn ?type WHERE { ?c a cptkg:AddOnCode ; skos:notation ?n ; cptkg:addOnFrom ?aof .
                 ?e a cptkg:AddOnEdit ; cptkg:addOn ?c . OPTIONAL { ?e cptkg:aocType ?type }
                 OPTIONAL { { ?e cptkg:primary ?p } UNION { ?e cptkg:primaryCategory ?cat . ?p cptkg:guidanceCategory ?cat }
                            ?p skos:notation ?pn } }""")
        self.bundles = q("""SELECT ?n1 ?n2 ?mi ?f ?t WHERE { ?e a cptkg:BundlingEdit ; cptkg:column1/skos:notation ?n1 ;
                 cptkg:column2/skos:notation ?n2 ; cptkg:modifierIndicator ?mi .
                 OPTIONAL { ?e cptkg:effectiveFrom ?f } OPTIONAL { ?e cptkg:effectiveThrough ?t } }""")
        self.limits = q("""SELECT ?n ?max ?mai ?f ?t WHERE { ?e a cptkg:UnitLimit ; cptkg:code/skos:notation ?n ;
                 cptkg:maxUnits ?max . OPTIONAL { ?e cptkg:adjudication ?mai }
                 OPTIONAL { ?e cptkg:effectiveFrom ?f } OPTIONAL { ?e cptkg:effectiveThrough ?t } }""")
        self.pctc = [r[0] for r in q('SELECT ?n WHERE { ?c cptkg:pctcIndicator "1" ; skos:notation ?n }')]
        self.integral = [r[0] for r in q("SELECT ?n WHERE { ?c cptkg:fluoroscopyIntegral true ; skos:notation ?n }")]
        self.guidance = q("""SELECT ?gn ?pn ?from WHERE { ?g cptkg:guidanceModality ?m ; skos:notation ?gn ; cptkg:guidesCategory ?cat .
                 ?p cptkg:includesGuidanceBy ?m ; cptkg:guidanceCategory ?cat ; skos:notation ?pn .
                 OPTIONAL { ?p cptkg:includesGuidanceFrom ?from } }""")
        docs = q("SELECT ?n ?d WHERE { ?c cptkg:requiresDocumentation ?d ; skos:notation ?n }")
        self.docs = {}
        for n, d in docs:
            self.docs.setdefault(n, []).append(_local(d))
        self.doc_elements = sorted({_local(r[0]) for r in q(
            "SELECT ?d WHERE { ?d a/rdfs:subClassOf* cptkg:DocumentationElement }")} | {d for v in self.docs.values() for d in v})
        pos = q("SELECT ?n ?st WHERE { ?p a cptkg:PlaceOfService ; skos:notation ?n . OPTIONAL { ?p cptkg:settingType ?st } }")
        self.facility_pos = [n for n, st in pos if st and st.endswith("/facility")]
        self.office_pos = [n for n, st in pos if st and st.endswith("/non-facility")]
        self.distinct_mods = [r[0] for r in q(
            "SELECT ?n WHERE { ?m a/rdfs:subClassOf* cptkg:DistinctServiceModifier ; skos:notation ?n }")]
        self.modifiers = [r[0] for r in q("SELECT ?n WHERE { ?m a/rdfs:subClassOf* cptkg:Modifier ; skos:notation ?n }")]


@lru_cache(maxsize=4)
def _facts(kb):
    return Facts(kb)


DATES = [f"{y}-{m:02d}-{d:02d}" for y in range(2006, 2027) for m in (1, 3, 6, 9, 12) for d in (1, 15, 28)]


class _Gen:
    def __init__(self, facts, rng):
        self.f = facts
        self.r = rng

    def date(self):
        return self.r.choice(DATES)

    def valid_on(self, code, date):
        f, t = self.f.codes.get(code, (None, None))
        return (f is None or f <= date) and (t is None or date <= t)

    def valid_code(self, date, pool=None):
        pool = pool or self.f.code_list
        for _ in range(30):
            c = self.r.choice(pool)
            if self.valid_on(c, date):
                return c
        return self.r.choice(pool)

    def line(self, code, units=1, modifiers=None, **extra):
        out = {"code": code, "units": units}
        if modifiers:
            out["modifiers"] = list(modifiers)
        out.update(extra)
        return out

    def claim(self, cid, lines, date=None, pos=None, claim_type=None):
        return {
            "id": cid,
            "dateOfService": date or self.date(),
            "placeOfService": pos or self.r.choice(self.f.office_pos),
            "claimType": claim_type or self.r.choice(["professional", "professional", "facility"]),
            "lines": lines,
        }

    # scenarios return (lines, overrides)
    def correct(self):
        d = self.date()
        return [self.line(self.valid_code(d))], {"date": d}

    def addon_alone(self):
        n, aof, _, _ = self.r.choice(self.f.addons)
        d = self.r.choice([x for x in DATES if x >= aof] or DATES)
        return [self.line(n)], {"date": d}

    def addon_other_primary(self):
        typed = [a for a in self.f.addons if a[3] in ("2", "3")] or self.f.addons
        n, aof, _, _ = self.r.choice(typed)
        d = self.r.choice([x for x in DATES if x >= aof] or DATES)
        other = self.valid_code(d)
        return [self.line(other), self.line(n)], {"date": d}

    def addon_with_primary(self):
        with_p = [a for a in self.f.addons if a[2]] or self.f.addons
        n, aof, pn, _ = self.r.choice(with_p)
        d = self.r.choice([x for x in DATES if x >= aof] or DATES)
        return [self.line(pn or self.valid_code(d)), self.line(n)], {"date": d}

    def guidance_included(self):
        gn, pn, frm = self.r.choice(self.f.guidance)
        d = self.r.choice([x for x in DATES if frm is None or x >= frm] or DATES)
        lines = [self.line(pn), self.line(gn)]
        self.r.shuffle(lines)
        return lines, {"date": d}

    def bundle(self, distinct=False):
        n1, n2, mi, f, t = self.r.choice(self.f.bundles)
        dates = [x for x in DATES if (f is None or f <= x) and (t is None or x <= t)] or DATES
        mods = [self.r.choice(self.f.distinct_mods)] if distinct and self.f.distinct_mods else None
        return [self.line(n1), self.line(n2, modifiers=mods)], {"date": self.r.choice(dates)}

    def fluoro_integral(self):
        return [self.line("76000"), self.line(self.r.choice(self.f.integral))], {}

    def units_line(self):
        n, mx, mai, f, t = self.r.choice(self.f.limits)
        dates = [x for x in DATES if (f is None or f <= x) and (t is None or x <= t)] or DATES
        return [self.line(n, units=int(mx) + self.r.randint(1, 3))], {"date": self.r.choice(dates)}

    def units_day(self):
        n, mx, mai, f, t = self.r.choice(self.f.limits)
        dates = [x for x in DATES if (f is None or f <= x) and (t is None or x <= t)] or DATES
        u = int(mx)
        return [self.line(n, units=max(1, u)), self.line(n, units=1)], {"date": self.r.choice(dates)}

    def dated(self, deleted):
        pool = [c for c, (f, t) in self.f.codes.items() if (t if deleted else f)]
        c = self.r.choice(sorted(pool))
        f, t = self.f.codes[c]
        dates = [x for x in DATES if (x > t if deleted else x < f)] or DATES
        return [self.line(c)], {"date": self.r.choice(dates)}

    def facility(self, with26):
        c = self.r.choice(self.f.pctc)
        d = self.date()
        return [self.line(c, modifiers=["26"] if with26 else None)], {
            "date": d, "pos": self.r.choice(self.f.facility_pos), "claim_type": "professional"}

    def unknown(self):
        return [self.line(self.r.choice(["99999", "0000T", "A1234", "12345", "7700"]))], {}

    def malformed(self):
        d = self.date()
        c = self.valid_code(d)
        kind = self.r.randrange(6)
        if kind == 0:
            return [self.line(c, units=0)], {"date": d}
        if kind == 1:
            return [self.line(c, units=self.r.choice([-3, -1]))], {"date": d}
        if kind == 2:
            return [self.line(c, modifiers=[self.r.choice(["ZZ", "Q9", "XX"])])], {"date": d}
        if kind == 3:
            return [self.line(c)], {"date": d, "pos": self.r.choice(["99", "00", "7"])}
        if kind == 4:
            return [self.line(c)], {"date": self.r.choice(["2024-13-45", "2024-02-30", "20240105", "June 3"])}
        return [self.line(c, units=0, modifiers=["ZZ"])], {"date": d}

    def documentation(self, complete):
        n = self.r.choice(sorted(self.f.docs))
        need = self.f.docs[n]
        if complete:
            have = list(need)
        else:
            drop = self.r.sample(need, self.r.randint(1, len(need)))
            have = [x for x in need if x not in drop] or [self.r.choice(
                [e for e in self.f.doc_elements if e not in need] or need)]
        return [self.line(n, documented=have)], {}

    def scenario(self, kind):
        return {
            "correct": self.correct, "addon-alone": self.addon_alone,
            "addon-other-primary": self.addon_other_primary, "addon-with-primary": self.addon_with_primary,
            "guidance-included": self.guidance_included, "bundle": lambda: self.bundle(False),
            "bundle-59": lambda: self.bundle(True), "fluoro-integral": self.fluoro_integral,
            "units-line": self.units_line, "units-day": self.units_day, "deleted": lambda: self.dated(True),
            "not-yet": lambda: self.dated(False), "facility-no-26": lambda: self.facility(False),
            "facility-26": lambda: self.facility(True), "unknown-code": self.unknown,
            "malformed": self.malformed, "documentation-missing": lambda: self.documentation(False),
            "documentation-complete": lambda: self.documentation(True),
        }[kind]()


def generate_claims(kb, n, seed=0, prefix="s"):
    """n claim objects; about a third correct, the rest with injected errors of every kind."""
    return list(iter_claims(kb, n, seed, prefix))


def iter_claims(kb, n, seed=0, prefix="s"):
    """The claims of generate_claims, one at a time (for streams larger than memory)."""
    facts = _facts(kb)
    rng = random.Random(seed)
    gen = _Gen(facts, rng)
    kinds = [k for k in KINDS if k != "mixed"]
    for i in range(n):
        roll = rng.random()
        if roll < 0.3:
            kind = "correct"
        elif roll < 0.4:
            kind = "mixed"
        else:
            kind = kinds[i % len(kinds)]
        if kind == "mixed":
            lines, over = [], {}
            for k in rng.sample(kinds, rng.randint(2, 3)):
                ls, ov = gen.scenario(k)
                lines.extend(ls)
                over = over or ov
        else:
            lines, over = gen.scenario(kind)
        claim = gen.claim(f"{prefix}{seed}-{i}", lines, over.get("date"), over.get("pos"), over.get("claim_type"))
        claim["lines"] = [dict(line, line=j) for j, line in enumerate(claim["lines"], 1)]
        yield claim
