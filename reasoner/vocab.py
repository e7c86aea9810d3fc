"""Namespaces shared by the engine. The vocabulary itself is defined in ontology/core/vocab.ttl."""
from rdflib import Namespace
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SKOS, XSD



class _Namespace(Namespace):
    """rdflib's Namespace, each term made once. Namespace.__getattr__ makes a new URIRef on every
    `CPTKG.code` (about 4 us); the batch paths read such terms hundreds of times a record. The
    first read stores the term on the instance, so later ones are plain attribute reads."""

    def __getattr__(self, name):
        term = super().__getattr__(name)  # AttributeError for __names__, as rdflib
        self.__dict__[name] = term
        return term


BASE = "https://w3id.org/cptkg/"
CPTKG = _Namespace(BASE + "vocab#")
CPT = _Namespace(BASE + "code/")
MOD = _Namespace(BASE + "modifier/")
RULE = _Namespace(BASE + "rule/")
SHAPE = _Namespace(BASE + "shape/")
MODULE = _Namespace(BASE + "module/")
SRC = _Namespace(BASE + "source/")
DATA = BASE + "data/"
PROV = _Namespace("http://www.w3.org/ns/prov#")
SH = _Namespace("http://www.w3.org/ns/shacl#")

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
