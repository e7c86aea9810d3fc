"""Namespaces shared by the engine. The vocabulary itself is defined in ontology/core/vocab.ttl."""
from rdflib import Namespace
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SKOS, XSD

BASE = "https://w3id.org/cptkg/"
CPTKG = Namespace(BASE + "vocab#")
CPT = Namespace(BASE + "code/")
MOD = Namespace(BASE + "modifier/")
RULE = Namespace(BASE + "rule/")
SHAPE = Namespace(BASE + "shape/")
MODULE = Namespace(BASE + "module/")
SRC = Namespace(BASE + "source/")
DATA = BASE + "data/"
PROV = Namespace("http://www.w3.org/ns/prov#")
SH = Namespace("http://www.w3.org/ns/shacl#")

PREFIXES = {
    "cptkg": CPTKG, "cpt": CPT, "mod": MOD, "rule": RULE, "shape": SHAPE, "module": MODULE,
    "src": SRC, "kind": Namespace(BASE + "kind/"), "anat": Namespace(BASE + "anatomy/"),
    "modality": Namespace(BASE + "modality/"), "doc": Namespace(BASE + "documentation/"),
    "gc": Namespace(BASE + "guidance-category/"), "fam": Namespace(BASE + "family/"),
    "pos": Namespace(BASE + "pos/"), "edit": Namespace(BASE + "edit/"),
    "purpose": Namespace(BASE + "purpose/"), "claim": Namespace(BASE + "claim-type/"),
    "setting": Namespace(BASE + "setting/"), "lat": Namespace(BASE + "laterality/"),
    "contrast": Namespace(BASE + "contrast/"), "joint": Namespace(BASE + "joint-size/"),
    "payer": Namespace(BASE + "payer/"),
    "skos": SKOS, "rdfs": RDFS, "rdf": RDF, "owl": OWL, "xsd": XSD, "dcterms": DCTERMS,
    "sh": SH, "prov": PROV,
}


def bind_all(graph):
    for prefix, ns in PREFIXES.items():
        graph.bind(prefix, ns, override=True)
    return graph
