"""`cptkg check`: is the knowledge base sound?

1. every content file parses (Turtle, JSON-LD context, SPARQL);
2. query headers are complete and rule ids unique;
3. cptkg.ttl imports every module and every import resolves through the catalog (no orphan);
4. no duplicate identifiers (a code notation on two IRIs, a shape IRI in two files, a code
   stanza in two modules);
5. the knowledge-base shapes (shapes/kb) conform;
6. HermiT finds the OWL axioms consistent, with no unsatisfiable class.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from rdflib import Graph, URIRef
from rdflib.namespace import OWL, RDF, SKOS
from rdflib.plugins.sparql import prepareQuery

from .content import check_headers
from .errors import CptkgError
from .kb import KnowledgeBase, parse_turtle
from .validate import run_shacl, shapes_graph
from .vocab import SH

# pySHACL 0.40 refuses a SPARQL constraint whose text matches this (a word ending in "service"
# before a space is taken for a SERVICE clause); say so here instead of at validation time.
PYSHACL_SERVICE_RE = re.compile(r"^(?:[^#]*|S)(?!#)#?[^\?\$\#]S?ERVICE[\s\<]", flags=re.M | re.I)
ROOT_MODULE = "cptkg"


def imports_problems(content):
    problems = []
    root = content.root / "ontology" / "cptkg.ttl"
    catalog = content.root / "ontology" / "catalog-v001.xml"
    if not root.exists():
        return [f"{root}: missing (the ontology header that imports every module)"]
    g = parse_turtle(root)
    imports = set(g.objects(None, OWL.imports))
    mapping = {}
    if catalog.exists():
        try:
            tree = ET.parse(catalog)
        except ET.ParseError as exc:
            return [f"{catalog}: not valid XML: {exc}"]
        for el in tree.iter():
            if el.tag.endswith("uri") and el.get("name") and el.get("uri"):
                mapping[URIRef(el.get("name"))] = el.get("uri")
    else:
        problems.append(f"{catalog}: missing (module IRI -> file)")
    declared = {}
    for module in content.modules:
        if module.id == ROOT_MODULE:
            continue
        mg = parse_turtle(module.path)
        onts = [s for s in mg.subjects(RDF.type, OWL.Ontology)]
        if len(onts) != 1:
            problems.append(f"{module.path}: must declare exactly one owl:Ontology (found {len(onts)})")
            continue
        declared[onts[0]] = module
        if onts[0] not in imports:
            problems.append(f"{module.path}: orphan module: {onts[0]} is not imported by ontology/cptkg.ttl")
        rel = module.path.relative_to(content.root / "ontology").as_posix()
        if mapping and mapping.get(onts[0]) != rel:
            problems.append(f"{catalog}: {onts[0]} should map to {rel} (maps to {mapping.get(onts[0])})")
    for imp in sorted(imports):
        if imp not in declared:
            problems.append(f"{root}: imports {imp}, which no module under ontology/ declares")
    return problems


def duplicate_problems(kb):
    problems = []
    notations = defaultdict(set)
    for s, n in kb.graph.subject_objects(SKOS.notation):
        if str(s).startswith("https://w3id.org/cptkg/code/"):
            notations[str(n)].add(s)
            if str(s).rsplit("/", 1)[-1] != str(n):
                problems.append(f"code {s} has notation '{n}', which is not its local name")
    for n, subjects in notations.items():
        if len(subjects) > 1:
            problems.append(f"notation '{n}' is used by {len(subjects)} codes: {', '.join(sorted(subjects))}")
    typed_in = defaultdict(list)
    for mid, g in kb.module_graphs.items():
        for s in set(g.subjects(RDF.type, None)):
            if isinstance(s, URIRef):
                typed_in[s].append(mid)
    for s, mids in typed_in.items():
        if len(mids) > 1:
            problems.append(f"{s} is defined in {len(mids)} modules: {', '.join(sorted(mids))}")
    shape_files = defaultdict(list)
    for group, paths in kb.content.shapes.items():
        for path in paths:
            for s in parse_turtle(path).subjects(RDF.type, SH.NodeShape):
                shape_files[s].append(str(path.relative_to(kb.content.root)))
    for s, files in shape_files.items():
        if len(files) > 1:
            problems.append(f"shape {s} is defined in {', '.join(files)}")
    return problems


def query_problems(content):
    problems = [f"{path}: {msg}" for path, msg in check_headers(content)]
    for q in content.all_queries():
        try:
            prepareQuery(q.text)
        except Exception as exc:
            problems.append(f"{q.path}: SPARQL does not parse: {exc}")
    return problems


def shape_file_problems(content):
    problems = []
    for group, paths in content.shapes.items():
        for path in paths:
            g = parse_turtle(path)
            for sel in g.objects(None, SH.select):
                if PYSHACL_SERVICE_RE.search(str(sel)):
                    problems.append(f"{path}: pySHACL would refuse this SPARQL (a word ending in 'service' before a space reads as SERVICE); rephrase")
    ctx = content.context
    if ctx is None:
        problems.append("ontology/context.jsonld: missing")
    else:
        try:
            json.loads(ctx.read_text(encoding="utf-8"))["@context"]
        except (ValueError, KeyError) as exc:
            problems.append(f"{ctx}: not a JSON-LD context: {exc}")
    return problems


def kb_shape_results(kb):
    sg = shapes_graph(kb.content, "kb")
    data = Graph()
    data += kb.graph
    _, results = run_shacl(data, sg)
    return results


def run_check(content, owl=True):
    lines = []
    ok = True
    try:
        kb = KnowledgeBase(content)
    except CptkgError as err:
        return False, [f"FAIL parse: {err}"]
    lines.append(f"ok   parse: {len(content.modules)} modules, {len(kb.graph)} triples, "
                 f"{len(content.rules)} rules, {len(content.reports)} reports, "
                 f"{sum(len(v) for v in content.shapes.values())} shape files")
    for name, problems in (("imports", imports_problems(content)), ("queries", query_problems(content)),
                           ("shapes", shape_file_problems(content)), ("identifiers", duplicate_problems(kb))):
        if problems:
            ok = False
            lines += [f"FAIL {name}: {p}" for p in problems]
        else:
            lines.append(f"ok   {name}")
    results = kb_shape_results(kb)
    violations = [r for r in results if r["severity"] == "violation"]
    for r in sorted(results, key=lambda r: (r["severity"], r["shape"], str(r["focus"]))):
        tag = "FAIL" if r["severity"] == "violation" else "warn"
        path = f" {str(r['path']).rsplit('#', 1)[-1]}" if r["path"] is not None else ""
        lines.append(f"{tag} kb-shapes: {r['focus']}{path}: {r['message']} [{r['shape']}]")
    if violations:
        ok = False
    else:
        lines.append(f"ok   kb-shapes ({len(results)} warnings)")
    if owl:
        from .owl import consistency

        consistent, _, message = consistency(kb.graph)
        lines.append(("ok   " if consistent else "FAIL ") + "owl: " + message)
        ok = ok and consistent
    lines.append("check passed" if ok else "check FAILED")
    return ok, lines
