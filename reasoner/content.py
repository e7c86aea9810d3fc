"""THE discovery function: which content files exist and what role each plays.

The folder gives a file its role and the file name is its identifier (ROBOT's report_queries,
the OBO repositories' sparql folders). The command line, the docs and the tests all call
`discover()`, so a check that is documented is a check that runs.

    ontology/**/*.ttl            knowledge modules (overlays/<name>/ only on request)
    ontology/context.jsonld      JSON-LD context for encounter and claim JSON
    queries/derive/*.rq          derivation rules (CONSTRUCT), run by stage
    queries/edits/*.rq           edit rules on derived codes (CONSTRUCT), run by stage
    queries/reports/*.rq         analyst report queries (SELECT)
    queries/inactive/            retired rules: found, listed, never run
    shapes/<group>/*.ttl         SHACL shapes: encounter (input), coding (claims), kb (knowledge base)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ContentError

RULE_FOLDERS = ("derive", "edits")
SHAPE_GROUPS = ("encounter", "coding", "kb")
REQUIRED_HEADERS = ("title", "kind", "source", "status")
HEADER_RE = re.compile(r"^#\s*([a-z][a-z-]*)\s*:\s*(.*)$")


def default_root() -> Path:
    """The content root: $CPTKG_HOME, else the checkout this package sits in."""
    env = os.environ.get("CPTKG_HOME")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Query:
    """A .rq file with its comment header."""

    id: str
    path: Path
    role: str  # derive | edits | reports | inactive
    header: dict
    text: str

    @property
    def title(self):
        return self.header.get("title", self.id)

    @property
    def kind(self):
        return self.header.get("kind", "")

    @property
    def stage(self):
        return self.header.get("stage", "")

    @property
    def status(self):
        return self.header.get("status", "active")

    @property
    def active(self):
        return self.role != "inactive" and self.status == "active"

    @property
    def sources(self):
        return [s.strip() for s in self.header.get("source", "").split(",") if s.strip()]

    @property
    def params(self):
        """Report parameters: `# param: name (type, default): description`."""
        return self.header.get("param-list", [])


@dataclass
class Module:
    id: str
    path: Path
    overlay: str | None = None


@dataclass
class Content:
    root: Path
    modules: list = field(default_factory=list)
    rules: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    inactive: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)
    context: Path | None = None
    overlays: dict = field(default_factory=dict)  # name -> list[Module]
    overlay_rules: dict = field(default_factory=dict)  # name -> list[Query]

    def report(self, name):
        for q in self.reports:
            if q.id == name:
                return q
        raise ContentError(f"no report query named '{name}' (see `cptkg query --list`)")

    def all_queries(self):
        return [*self.rules, *self.reports, *self.inactive,
                *[q for qs in self.overlay_rules.values() for q in qs]]


def parse_header(text: str, path: Path) -> dict:
    """Read the leading `# key: value` comment lines of a query.

    A `# param:` line may repeat; a comment line without a key continues the previous value.
    """
    header: dict = {}
    params = []
    last = None
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip() == "":
                continue
            break
        m = HEADER_RE.match(line)
        if m:
            key, value = m.group(1), m.group(2).strip()
            if key == "param":
                params.append(_parse_param(value, path))
                last = None
                continue
            if key in header:
                raise ContentError(f"header key '{key}' given twice", file=path)
            header[key] = value
            last = key
        elif last and line.strip("# ").strip():
            header[last] = header[last] + " " + line.lstrip("#").strip()
    if params:
        header["param-list"] = params
    return header


PARAM_RE = re.compile(r"^([a-zA-Z_][\w]*)\s*(?:\(([^)]*)\))?\s*:?\s*(.*)$")


def _parse_param(value, path):
    m = PARAM_RE.match(value)
    if not m:
        raise ContentError(f"cannot read parameter declaration '{value}'", file=path)
    name, spec, desc = m.group(1), (m.group(2) or ""), m.group(3)
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    ptype = parts[0] if parts else "string"
    default = None
    for p in parts[1:]:
        if p.startswith("default="):
            default = p[len("default="):].strip()
    return {"name": name, "type": ptype, "default": default, "description": desc}


def _load_query(path: Path, role: str) -> Query:
    text = path.read_text(encoding="utf-8")
    header = parse_header(text, path)
    return Query(id=path.stem, path=path, role=role, header=header, text=text)


def _module_id(path: Path, root: Path) -> str:
    return path.relative_to(root / "ontology").with_suffix("").as_posix()


def discover(root: Path | str | None = None, overlays=()) -> Content:
    root = Path(root).resolve() if root else default_root()
    ont = root / "ontology"
    if not ont.is_dir():
        raise ContentError("no ontology/ folder: not a cptkg content root", file=root)
    content = Content(root=root)
    for path in sorted(ont.rglob("*.ttl")):
        rel = path.relative_to(ont).parts
        if rel[0] == "overlays":
            name = rel[1] if len(rel) > 2 else None
            if name:
                content.overlays.setdefault(name, []).append(Module(_module_id(path, root), path, name))
            continue
        content.modules.append(Module(_module_id(path, root), path))
    for qpath in sorted(ont.glob("overlays/*/*.rq")):
        name = qpath.parent.name
        content.overlay_rules.setdefault(name, []).append(_load_query(qpath, "derive"))
    ctx = ont / "context.jsonld"
    content.context = ctx if ctx.exists() else None

    queries = root / "queries"
    for role in RULE_FOLDERS:
        for path in sorted((queries / role).glob("*.rq")):
            content.rules.append(_load_query(path, role))
    for path in sorted((queries / "reports").glob("*.rq")):
        content.reports.append(_load_query(path, "reports"))
    for path in sorted((queries / "inactive").glob("*.rq")):
        content.inactive.append(_load_query(path, "inactive"))

    for group in SHAPE_GROUPS:
        content.shapes[group] = sorted((root / "shapes" / group).glob("*.ttl"))

    unknown = [o for o in overlays if o not in content.overlays]
    if unknown:
        known = ", ".join(sorted(content.overlays)) or "none"
        raise ContentError(f"unknown overlay {', '.join(unknown)} (known: {known})")
    content.selected_overlays = tuple(overlays)
    return content


def check_headers(content: Content):
    """Problems with query headers, as (path, message) pairs. Used by `cptkg check` and the tests."""
    problems = []
    seen = {}
    for q in content.all_queries():
        for key in REQUIRED_HEADERS:
            if not q.header.get(key):
                problems.append((q.path, f"header '{key}' missing"))
        if q.role in RULE_FOLDERS and not q.stage:
            problems.append((q.path, "header 'stage' missing"))
        if q.id in seen:
            problems.append((q.path, f"rule id '{q.id}' also used by {seen[q.id]}"))
        seen[q.id] = q.path
    return problems
