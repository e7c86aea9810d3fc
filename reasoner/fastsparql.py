"""A small structural SPARQL reader and the rewrites the fast validator applies to queries.

It reads SELECT queries into a tree of group graph patterns (triples blocks, FILTER, OPTIONAL,
UNION, MINUS, BIND, VALUES, GRAPH, sub-SELECT) whose leaves keep the original tokens, so a query
comes back out as the same text apart from what a rewrite changed. Three rewrites, each applied
only where the conditions below prove it keeps the solutions (as a bag) unchanged:

1. Batching a SHACL-SPARQL constraint. pySHACL runs the query once per focus node with `$this`
   pre-bound (SHACL 5.3.1: every occurrence replaced by the node). The batch query adds a target
   pattern binding `?this` to every focus node at the start of the top-level group and projects
   `?this`. That gives the same rows per focus node when every occurrence of `$this` is in a
   position where `?this` is already bound when it is read (`this_is_safe`): a triple pattern, a
   filter or BIND of a group in which `?this` is certainly bound, an EXISTS inside such a filter,
   a sub-SELECT that projects and groups by it. Otherwise the caller evaluates per focus node.

2. Correlated `FILTER NOT EXISTS { P }` -> `MINUS { G' P }` (and `FILTER EXISTS { P }` -> a join
   with `{ SELECT DISTINCT V WHERE { G' P } }`), where G' is a copy of the triples blocks and
   sub-SELECTs of the enclosing group G and V their certainly bound variables. oxigraph plans the
   inside of an EXISTS without the outer bindings, so a correlated EXISTS costs a scan of the batch
   per row (quadratic); MINUS and joins are planned once (linear). Equivalence: let mu be a
   solution of G. Every variable P shares with the scope of G must be certainly bound by G' (so
   it is in dom(mu)), and P may use such variables only where a join or a filter of the merged
   group reads them (not inside a nested group's own filter or BIND). Then mu|G' is a solution
   of G' (a sub-pattern of G without G's other parts), so the solutions of `{ G' P }`
   compatible with mu are exactly mu|G' joined with the solutions of P with mu substituted: one
   exists iff EXISTS { P } is true for mu. MINUS needs a shared variable, which G' provides.
   MINUS is placed at the end of the group (a filter applies to the whole group); filters
   commute with MINUS and with the semi-join.

3. OPTIONAL moved after the join elements that follow it: Join(LeftJoin(A, B), C) =
   LeftJoin(Join(A, C), B) when every variable B (with its filter) shares with C is certainly
   bound by A. oxigraph otherwise evaluates C first when C is small (a cross product of the
   knowledge graph) and runs the OPTIONAL once per row of it.
"""
from __future__ import annotations

import itertools
import re

KEYWORDS_PATTERN = {"OPTIONAL", "MINUS", "FILTER", "BIND", "VALUES", "GRAPH", "SERVICE", "UNION"}


class SparqlSyntaxError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# tokens

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
  | (?P<var>[?$][A-Za-z0-9_\u00B7-\uFFFF]+)
  | (?P<bnode>_:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])
  | (?P<lang>@[A-Za-z]+(?:-[A-Za-z0-9]+)*)
  | (?P<number>[+-]?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+))
  | (?P<pname>(?:[A-Za-z][\w\-.]*[\w\-]|[A-Za-z])?:(?:(?:[\w:\-%]|\\.)(?:(?:[\w.:\-%]|\\.)*(?:[\w:\-%]|\\.))?)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\^\^|\|\||&&|!=|<=|>=|[{}()\[\];,.=<>+\-*/!^|?])
""", re.X)


class Tok(str):
    """A token: its text, with its kind."""

    kind: str

    def __new__(cls, text, kind):
        t = str.__new__(cls, text)
        t.kind = kind
        return t



def tokenize(text):
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SparqlSyntaxError(f"cannot read the query at {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        out.append(Tok(m.group(kind), kind))
    return out


def is_var(tok):
    return isinstance(tok, Tok) and tok.kind == "var"


def var_name(tok):
    return tok[1:]


def kw(tok, *words):
    return isinstance(tok, Tok) and tok.kind == "word" and str.upper(tok) in words


# ---------------------------------------------------------------------------------------------
# tree


class Node:
    def vars(self):
        """Every variable mentioned anywhere in this element."""
        raise NotImplementedError

    def render(self):
        raise NotImplementedError


def _tokens_vars(tokens):
    out = set()
    for t in tokens:
        if isinstance(t, Node):
            out |= t.vars()
        elif is_var(t):
            out.add(var_name(t))
    return out


def _render_tokens(tokens):
    out = ""
    prev = None
    for t in tokens:
        text = t.render() if isinstance(t, Node) else str(t)
        glue = False
        if prev is not None and isinstance(t, Tok):
            if t.kind == "lang" or t == "^^" or prev == "^^":
                glue = True
            elif t == "(" and isinstance(prev, Tok) and prev.kind == "word" and str.upper(prev) not in (
                    "AS", "WHERE", "UNION", "OPTIONAL", "MINUS", "GRAPH", "SELECT", "DISTINCT", "BY", "HAVING"):
                glue = True
            elif t in ("*", "+", "?") and isinstance(prev, Tok) and (prev.kind in ("iri", "pname") or prev == ")" or prev == "a"):
                glue = True
        if prev is not None and isinstance(prev, Tok) and prev in ("^", "!") and prev.kind == "punct":
            glue = True
        out += text if (glue or not out) else " " + text
        prev = t
    return out


class Triples(Node):
    def __init__(self, tokens):
        while tokens and tokens[-1] == ".":
            tokens = tokens[:-1]
        self.tokens = tokens

    def vars(self):
        return _tokens_vars(self.tokens)

    def has_bnode_label(self):
        return any(isinstance(t, Tok) and t.kind == "bnode" for t in self.tokens)

    def render(self):
        return _render_tokens(self.tokens) + " ."


class Expr(Node):
    """Tokens of an expression; EXISTS / NOT EXISTS groups inside are Group nodes."""

    def __init__(self, tokens):
        self.tokens = tokens

    def vars(self):
        return _tokens_vars(self.tokens)

    def groups(self):
        return [t for t in self.tokens if isinstance(t, Group)]

    def render(self):
        return _render_tokens(self.tokens)


class Filter(Node):
    def __init__(self, expr):
        self.expr = expr

    def exists(self):
        """(negated, group) when the whole constraint is [NOT] EXISTS { ... }, else None."""
        t = self.expr.tokens
        if len(t) == 3 and kw(t[0], "NOT") and kw(t[1], "EXISTS") and isinstance(t[2], Group):
            return True, t[2]
        if len(t) == 2 and kw(t[0], "EXISTS") and isinstance(t[1], Group):
            return False, t[1]
        return None

    def vars(self):
        return self.expr.vars()

    def render(self):
        return "FILTER " + self.expr.render()


class Bind(Node):
    def __init__(self, expr, var):
        self.expr, self.var = expr, var

    def vars(self):
        return self.expr.vars() | {self.var}

    def render(self):
        return f"BIND ({self.expr.render()} AS ?{self.var})"


class Values(Node):
    def __init__(self, tokens):
        self.tokens = tokens

    def vars(self):
        return _tokens_vars(self.tokens)

    def render(self):
        return "VALUES " + _render_tokens(self.tokens)


class Optional(Node):
    def __init__(self, group):
        self.group = group

    def vars(self):
        return self.group.vars()

    def render(self):
        return "OPTIONAL " + self.group.render()


class Minus(Node):
    def __init__(self, group):
        self.group = group

    def vars(self):
        return self.group.vars()

    def render(self):
        return "MINUS " + self.group.render()


class GraphElem(Node):
    def __init__(self, keyword, term_tokens, group):
        self.keyword, self.term, self.group = keyword, term_tokens, group

    def vars(self):
        return _tokens_vars(self.term) | self.group.vars()

    def render(self):
        return f"{self.keyword} {_render_tokens(self.term)} {self.group.render()}"


class Union(Node):
    def __init__(self, branches):
        self.branches = branches  # Group or SubSelect

    def vars(self):
        return set().union(*(b.vars() for b in self.branches))

    def render(self):
        return " UNION ".join(b.render() for b in self.branches)


class Group(Node):
    def __init__(self, elems):
        self.elems = elems

    def vars(self):
        return set().union(set(), *(e.vars() for e in self.elems))

    def render(self):
        return "{ " + " ".join(e.render() for e in self.elems) + " }"


class SubSelect(Node):
    def __init__(self, query):
        self.query = query

    def vars(self):
        return self.query.vars()

    def render(self):
        return "{ " + self.query.render(prologue=False) + " }"


class Query(Node):
    """SELECT [DISTINCT|REDUCED] projection WHERE group modifiers."""

    def __init__(self, prologue, modifier, projection, where, modifiers):
        self.prologue = prologue          # tokens
        self.modifier = modifier          # "", "DISTINCT", "REDUCED"
        self.projection = projection      # list of items: Tok var, "*", or Expr for ( expr AS ?v )
        self.where = where                # Group
        self.modifiers = modifiers        # tokens after the group (GROUP BY, HAVING, ORDER BY, LIMIT ...)

    def vars(self):
        out = self.where.vars()
        for item in self.projection:
            if isinstance(item, Expr):
                out |= item.vars()
            elif is_var(item):
                out.add(var_name(item))
        return out | _tokens_vars(self.modifiers)

    def projected_vars(self):
        """The projected variable names in order (None for SELECT *)."""
        out = []
        for item in self.projection:
            if item == "*":
                return None
            if isinstance(item, Expr):
                out.append(var_name(item.tokens[-1]))
            else:
                out.append(var_name(item))
        return out

    def render(self, prologue=True):
        head = _render_tokens(self.prologue) + "\n" if prologue and self.prologue else ""
        proj = " ".join(f"({p.render()})" if isinstance(p, Expr) else str(p) for p in self.projection)
        mod = f"{self.modifier} " if self.modifier else ""
        return f"{head}SELECT {mod}{proj} WHERE {self.where.render()} {_render_tokens(self.modifiers)}".rstrip()

    # modifiers
    def modifier_words(self):
        return {str.upper(t) for t in self.modifiers if isinstance(t, Tok) and t.kind == "word"}

    def group_by_vars(self):
        """Variables named plainly in GROUP BY (None when there is no GROUP BY)."""
        toks = self.modifiers
        for i, t in enumerate(toks):
            if kw(t, "GROUP") and i + 1 < len(toks) and kw(toks[i + 1], "BY"):
                out = []
                j = i + 2
                depth = 0
                while j < len(toks):
                    u = toks[j]
                    if depth == 0 and kw(u, "HAVING", "ORDER", "LIMIT", "OFFSET", "VALUES"):
                        break
                    if u == "(":
                        depth += 1
                    elif u == ")":
                        depth -= 1
                    elif depth == 0 and is_var(u):
                        out.append(var_name(u))
                    j += 1
                return out
        return None

    def has_aggregate(self):
        aggs = {"COUNT", "SUM", "MIN", "MAX", "AVG", "SAMPLE", "GROUP_CONCAT"}
        for item in self.projection:
            if isinstance(item, Expr) and any(kw(t, *aggs) for t in item.tokens):
                return True
        return any(kw(t, *aggs) for t in self.modifiers)


# ---------------------------------------------------------------------------------------------
# parser


class _Parser:
    def __init__(self, tokens):
        self.t = tokens
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def next(self):
        tok = self.peek()
        if tok is None:
            raise SparqlSyntaxError("unexpected end of query")
        self.i += 1
        return tok

    def expect(self, text):
        tok = self.next()
        if str.upper(tok) != text.upper():
            raise SparqlSyntaxError(f"expected {text!r}, found {tok!r}")
        return tok

    def query(self, top=True):
        prologue = []
        if top:
            while kw(self.peek(), "PREFIX", "BASE"):
                word = self.next()
                prologue.append(word)
                if str.upper(word) == "PREFIX":
                    prologue.append(self.next())
                prologue.append(self.next())
        if not kw(self.peek(), "SELECT"):
            raise SparqlSyntaxError("only SELECT queries are read")
        self.next()
        modifier = ""
        if kw(self.peek(), "DISTINCT", "REDUCED"):
            modifier = str.upper(self.next())
        projection = []
        while True:
            tok = self.peek()
            if tok is None:
                raise SparqlSyntaxError("SELECT without WHERE")
            if kw(tok, "WHERE") or tok == "{" or kw(tok, "FROM"):
                break
            if tok == "(":
                self.next()
                projection.append(Expr(self.expr_until(")")))
                self.next()
            else:
                projection.append(self.next())
        if kw(self.peek(), "FROM"):
            raise SparqlSyntaxError("FROM is not supported in a constraint")
        if kw(self.peek(), "WHERE"):
            self.next()
        where = self.group()
        modifiers = []
        depth = 0
        while self.peek() is not None:
            if depth == 0 and self.peek() == "}" and not top:
                break
            tok = self.next()
            if tok in ("(", "{"):
                depth += 1
            elif tok in (")", "}"):
                depth -= 1
            modifiers.append(tok)
        return Query(prologue, modifier, projection, where, modifiers)

    def expr_until(self, closer):
        """Tokens up to (not including) the closing token at depth 0; EXISTS groups parsed."""
        out = []
        depth = 0
        while True:
            tok = self.peek()
            if tok is None:
                raise SparqlSyntaxError("unbalanced expression")
            if depth == 0 and tok == closer:
                return out
            if kw(tok, "EXISTS"):
                out.append(self.next())
                out.append(self.group())
                continue
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            out.append(self.next())

    def bracketed(self):
        """A balanced ( ... ) as tokens (the parentheses included), EXISTS groups parsed."""
        self.expect("(")
        inner = self.expr_until(")")
        self.expect(")")
        return [Tok("(", "punct"), *inner, Tok(")", "punct")]

    def constraint(self):
        tok = self.peek()
        if tok == "(":
            return Expr(self.bracketed())
        if kw(tok, "NOT") and kw(self.peek(1), "EXISTS"):
            a, b = self.next(), self.next()
            return Expr([a, b, self.group()])
        if kw(tok, "EXISTS"):
            a = self.next()
            return Expr([a, self.group()])
        # a built-in or function call: NAME ( ... )
        name = self.next()
        if self.peek() != "(":
            raise SparqlSyntaxError(f"cannot read the constraint starting {name!r}")
        return Expr([name, *self.bracketed()])

    def group(self):
        self.expect("{")
        if kw(self.peek(), "SELECT"):
            q = self.query(top=False)
            self.expect("}")
            return _SubSelectGroup(q)
        elems = []
        triples = []

        def flush():
            if triples:
                elems.append(Triples(list(triples)))
                triples.clear()

        while True:
            tok = self.peek()
            if tok is None:
                raise SparqlSyntaxError("unbalanced braces")
            if tok == "}":
                self.next()
                flush()
                return Group(elems)
            if tok == "{":
                flush()
                first = self.group()
                branches = [first.as_branch()]
                while kw(self.peek(), "UNION"):
                    self.next()
                    branches.append(self.group().as_branch())
                if len(branches) == 1:
                    b = branches[0]
                    elems.append(b if isinstance(b, SubSelect) else _NestedGroup(b))
                else:
                    elems.append(Union(branches))
                continue
            if kw(tok, "OPTIONAL", "MINUS"):
                flush()
                word = str.upper(self.next())
                g = self.group().as_group()
                elems.append(Optional(g) if word == "OPTIONAL" else Minus(g))
                continue
            if kw(tok, "GRAPH", "SERVICE"):
                flush()
                word = str.upper(self.next())
                term = []
                if kw(self.peek(), "SILENT"):
                    term.append(self.next())
                term.append(self.next())
                elems.append(GraphElem(word, term, self.group().as_group()))
                continue
            if kw(tok, "FILTER"):
                flush()
                self.next()
                elems.append(Filter(self.constraint()))
                continue
            if kw(tok, "BIND"):
                flush()
                self.next()
                self.expect("(")
                inner = self.expr_until(")")
                self.expect(")")
                if len(inner) < 3 or not kw(inner[-2], "AS") or not is_var(inner[-1]):
                    raise SparqlSyntaxError("cannot read BIND")
                elems.append(Bind(Expr(inner[:-2]), var_name(inner[-1])))
                continue
            if kw(tok, "VALUES"):
                flush()
                self.next()
                toks = []
                while self.peek() != "{":
                    toks.append(self.next())
                depth = 0
                while True:
                    u = self.next()
                    toks.append(u)
                    if u == "{":
                        depth += 1
                    elif u == "}":
                        depth -= 1
                        if depth == 0:
                            break
                elems.append(Values(toks))
                continue
            if tok == "." and not triples:
                self.next()
                continue
            # triples: read up to a keyword / brace at depth 0
            depth = 0
            while True:
                u = self.peek()
                if u is None:
                    raise SparqlSyntaxError("unbalanced braces")
                if depth == 0 and (u in ("{", "}") or (isinstance(u, Tok) and u.kind == "word"
                                                      and str.upper(u) in KEYWORDS_PATTERN)):
                    break
                if u in ("(", "["):
                    depth += 1
                elif u in (")", "]"):
                    depth -= 1
                triples.append(self.next())
            flush()


class _SubSelectGroup(Group):
    def __init__(self, q):
        super().__init__([SubSelect(q)])
        self.q = q

    def as_branch(self):
        return SubSelect(self.q)

    def as_group(self):
        return Group([SubSelect(self.q)])


def _as_branch(self):
    return self


Group.as_branch = _as_branch
Group.as_group = _as_branch


class _NestedGroup(Node):
    """A plain nested { ... } group (a join with the group around it)."""

    def __init__(self, group):
        self.group = group

    def vars(self):
        return self.group.vars()

    def render(self):
        return self.group.render()


def parse_query(text):
    p = _Parser(tokenize(text))
    q = p.query()
    if p.peek() is not None:
        raise SparqlSyntaxError(f"unexpected {p.peek()!r} after the query")
    return q


def parse_group(text):
    p = _Parser(tokenize(text))
    g = p.group()
    if p.peek() is not None:
        raise SparqlSyntaxError(f"unexpected {p.peek()!r} after the group")
    return g


# ---------------------------------------------------------------------------------------------
# analysis


def certain(elem):
    """Variables certainly bound in every solution of an element (conservative)."""
    if isinstance(elem, Triples):
        return elem.vars()
    if isinstance(elem, Group):
        out = set()
        for e in elem.elems:
            out |= certain(e)
        return out
    if isinstance(elem, _NestedGroup):
        return certain(elem.group)
    if isinstance(elem, Union):
        sets = [certain(b) for b in elem.branches]
        return set.intersection(*sets) if sets else set()
    if isinstance(elem, SubSelect):
        q = elem.query
        proj = q.projected_vars()
        inner = certain(q.where)
        if proj is None:
            return inner
        plain = {var_name(p) for p in q.projection if is_var(p)}
        return plain & inner
    if isinstance(elem, GraphElem) and elem.keyword == "GRAPH":
        return certain(elem.group) | {var_name(t) for t in elem.term if is_var(t)}
    if isinstance(elem, Values) and not any(kw(t, "UNDEF") for t in elem.tokens):
        return elem.vars()
    return set()


def scope(elem):
    """Variables in scope after an element (those a later pattern or the projection can see)."""
    if isinstance(elem, (Filter, Minus)):
        return set()
    if isinstance(elem, Bind):
        return {elem.var}
    if isinstance(elem, SubSelect):
        proj = elem.query.projected_vars()
        return set(proj) if proj is not None else scope(elem.query.where)
    if isinstance(elem, Group):
        return set().union(set(), *(scope(e) for e in elem.elems))
    if isinstance(elem, _NestedGroup):
        return scope(elem.group)
    if isinstance(elem, Optional):
        return scope(elem.group)
    if isinstance(elem, Union):
        return set().union(*(scope(b) for b in elem.branches))
    if isinstance(elem, GraphElem):
        return scope(elem.group) | {var_name(t) for t in elem.term if is_var(t)}
    return elem.vars()


def has_bnode_labels(elem):
    if isinstance(elem, Triples):
        return elem.has_bnode_label()
    if isinstance(elem, (Group,)):
        return any(has_bnode_labels(e) for e in elem.elems)
    if isinstance(elem, (_NestedGroup, Optional, Minus, GraphElem)):
        return has_bnode_labels(elem.group)
    if isinstance(elem, Union):
        return any(has_bnode_labels(b) for b in elem.branches)
    if isinstance(elem, SubSelect):
        return has_bnode_labels(elem.query.where)
    if isinstance(elem, (Filter, Bind)):
        expr = elem.expr
        return any(has_bnode_labels(g) for g in expr.groups())
    return False


def read_only_in_joins(group, names):
    """True when the variables `names` occur in `group` only where a value from outside the group
    reaches them by join or by the merged group's filters: triples (anywhere), the group's own
    FILTER / BIND expressions and EXISTS inside them, OPTIONAL filters. False when they occur in a
    nested group's FILTER or BIND (evaluated before the join), in VALUES or a sub-SELECT."""
    return _joins_only(group, names, top=True)


def _joins_only(group, names, top):
    for e in group.elems:
        if isinstance(e, Triples):
            continue
        if isinstance(e, (Filter, Bind)):
            used = e.expr.vars() if isinstance(e, Filter) else e.expr.vars() | {e.var}
            if used & names and not top:
                return False
            if isinstance(e, Bind) and e.var in names:
                return False
            continue
        if isinstance(e, Optional):
            # the optional group's own top-level filters see the left side (LeftJoin condition)
            inner = e.group
            for x in inner.elems:
                if isinstance(x, Filter):
                    continue
                if isinstance(x, Triples):
                    continue
                if x.vars() & names and not _joins_only(Group([x]), names, top=False):
                    return False
            continue
        if isinstance(e, _NestedGroup):
            if e.vars() & names and not _joins_only(e.group, names, top=False):
                return False
            continue
        if isinstance(e, Union):
            for b in e.branches:
                if b.vars() & names:
                    if isinstance(b, SubSelect) or not _joins_only(b, names, top=False):
                        return False
            continue
        if isinstance(e, GraphElem):
            if e.vars() & names and (e.keyword != "GRAPH" or not _joins_only(e.group, names, top=False)):
                return False
            continue
        if e.vars() & names:  # Minus, Values, SubSelect
            return False
    return True


# ---------------------------------------------------------------------------------------------
# $this safety for batching


def this_is_safe(query, name="this", top=True):
    """Is it exact to bind ?name by a pattern at the start of the top-level group instead of
    pre-binding it? See the module docstring, rewrite 1. Returns (ok, reason). A top-level
    LIMIT n is allowed: the caller keeps the first n rows of each focus node, which is one of the
    answers the per-node query may give (without ORDER BY any n rows are; with it the batch query
    keeps the order)."""
    words = query.modifier_words()
    if "OFFSET" in words or ("LIMIT" in words and not top):
        return False, "LIMIT/OFFSET"
    gb = query.group_by_vars()
    if query.has_aggregate() and gb is None:
        return False, "aggregate without GROUP BY"
    for item in query.projection:
        if isinstance(item, Expr) and var_name(item.tokens[-1]) == name:
            return False, "AS $this"
    if name in _tokens_vars(query.modifiers) and not (gb and name in gb):
        return False, "$this in the solution modifiers"
    return _safe_group(query.where, name, bound=True)


def _safe_expr(expr, name, bound):
    for g in expr.groups():
        ok, why = _safe_group(g, name, bound=bound)
        if not ok:
            return ok, why
    plain = {var_name(t) for t in expr.tokens if is_var(t)}
    if name in plain and not bound:
        return False, "$this read where it is not bound"
    return True, ""


def _safe_group(group, name, bound):
    """`bound`: ?name is certainly bound in the solutions this group's filters see (from the
    enclosing solution by substitution, or by the group itself)."""
    here = bound or name in certain(group)
    for e in group.elems:
        if isinstance(e, Triples):
            continue
        if isinstance(e, Filter):
            ok, why = _safe_expr(e.expr, name, here)
            if not ok:
                return ok, why
        elif isinstance(e, Bind):
            if e.var == name:
                return False, "BIND to $this"
            ok, why = _safe_expr(e.expr, name, here)
            if not ok:
                return ok, why
        elif isinstance(e, Optional):
            inner = e.group
            ok, why = _safe_group(Group([x for x in inner.elems if not isinstance(x, Filter)]), name, False)
            if not ok:
                return ok, why
            for x in inner.elems:
                if isinstance(x, Filter):
                    ok, why = _safe_expr(x.expr, name, here or name in certain(inner))
                    if not ok:
                        return ok, why
        elif isinstance(e, (_NestedGroup, Minus)):
            ok, why = _safe_group(e.group, name, False)
            if not ok:
                return ok, why
        elif isinstance(e, Union):
            for b in e.branches:
                if isinstance(b, SubSelect):
                    ok, why = _safe_subselect(b.query, name)
                else:
                    ok, why = _safe_group(b, name, False)
                if not ok:
                    return ok, why
        elif isinstance(e, SubSelect):
            ok, why = _safe_subselect(e.query, name)
            if not ok:
                return ok, why
        elif isinstance(e, GraphElem):
            if e.keyword != "GRAPH":
                return False, "SERVICE"
            ok, why = _safe_group(e.group, name, False)
            if not ok:
                return ok, why
        elif isinstance(e, Values):
            if name in e.vars():
                return False, "$this in VALUES"
    return True, ""


def _safe_subselect(q, name):
    if name not in q.vars():
        return True, ""
    proj = q.projected_vars()
    if proj is None or name not in proj or name not in certain(q.where):
        return False, "sub-SELECT that does not project a bound $this"
    ok, why = this_is_safe(q, name, top=False)
    return ok, why


# ---------------------------------------------------------------------------------------------
# rewrites

def _copyable(elem):
    """Join elements that can be evaluated again as a generator (deterministic, no LIMIT)."""
    if isinstance(elem, Triples):
        return True
    if isinstance(elem, SubSelect):
        q = elem.query
        if q.modifier_words() & {"LIMIT", "OFFSET"}:
            return False
        if any(kw(t, "SAMPLE") for item in q.projection if isinstance(item, Expr) for t in item.tokens):
            return False
        return q.projected_vars() is not None
    return False


def _generator_copy(elem):
    """A copy of a generator element that binds only its certainly bound variables."""
    if isinstance(elem, SubSelect):
        keys = sorted(certain(elem))
        q = elem.query
        return SubSelect(Query([], q.modifier, [Tok("?" + k, "var") for k in keys], q.where, q.modifiers))
    return elem


def rewrite_group(group, own_filters=True):
    """Apply rewrites 2 and 3 to a group evaluated on its own (the WHERE of a query, or a group
    built by rewrite 2), recursively. `own_filters` is False for an OPTIONAL's group, whose
    filters see the left side too (they are not rewritten). Returns a new Group."""
    elems = _reorder_optionals(list(group.elems))
    gen = [e for e in elems if _copyable(e) and certain(e)]
    gen_certain = set()
    for e in gen:
        gen_certain |= certain(e)
    group_scope = set()
    for e in elems:
        group_scope |= scope(e)
    out = []
    tail = []
    for e in elems:
        if own_filters and isinstance(e, Filter) and e.exists() is not None and gen:
            negated, inner = e.exists()
            shared = inner.vars() & group_scope
            if (shared and shared <= gen_certain and not has_bnode_labels(inner)
                    and not any(has_bnode_labels(x) for x in gen)
                    and read_only_in_joins(inner, shared)):
                merged = rewrite_group(Group([*[_generator_copy(x) for x in gen], *inner.elems]))
                keys = [Tok("?" + k, "var") for k in sorted(gen_certain)]
                sel = SubSelect(Query([], "DISTINCT", keys, merged, []))
                tail.append(Minus(Group([sel])) if negated else sel)
                continue
        if isinstance(e, Optional):
            e = Optional(rewrite_group(e.group, own_filters=False))
        elif isinstance(e, _NestedGroup):
            e = _NestedGroup(rewrite_group(e.group))
        elif isinstance(e, Union):
            e = Union([b if isinstance(b, SubSelect) else rewrite_group(b) for b in e.branches])
        elif isinstance(e, SubSelect):
            q = e.query
            e = SubSelect(Query(q.prologue, q.modifier, q.projection, rewrite_group(q.where), q.modifiers))
        elif isinstance(e, Minus):
            e = Minus(rewrite_group(e.group))
        out.append(e)
    filters = [e for e in out if isinstance(e, Filter)]
    rest = [e for e in out if not isinstance(e, Filter)]
    return Group(rest + tail + filters)


def _reorder_optionals(elems):
    """Rewrite 3: move join elements (triples, sub-SELECTs) before an OPTIONAL that precedes them
    when every variable the OPTIONAL shares with them is certainly bound before the OPTIONAL.
    BINDs and other elements keep their place relative to the OPTIONALs; filters are group-wide."""
    out = list(elems)
    changed = True
    while changed:
        changed = False
        for i in range(len(out) - 1):
            a, b = out[i], out[i + 1]
            if isinstance(a, Optional) and _copyable(b):
                before = set()
                for x in out[:i]:
                    before |= certain(x)
                shared = a.vars() & b.vars()
                if shared <= before and not (scope(a) & b.vars() - before):
                    out[i], out[i + 1] = b, a
                    changed = True
            elif isinstance(a, Filter) and not isinstance(b, Filter):
                # filters apply to the whole group wherever they stand: keep them last
                out[i], out[i + 1] = b, a
                changed = True
    return out


# ---------------------------------------------------------------------------------------------
# pre-binding by substitution (the per-focus fallback)


_units = itertools.count()


def substitute(query, name, term_text):
    """The query with every occurrence of ?name replaced by a constant (SHACL pre-binding as
    defined in SHACL 5.3.1): in the projection it becomes (constant AS ?name)."""
    const = Tok(term_text, "iri")

    def toks(tokens, in_modifiers=False):
        out = []
        tokens = list(tokens)
        for j in range(len(tokens) - 3):
            # BOUND(?name) is true once ?name is pre-bound (and BOUND(<iri>) is not SPARQL)
            if (kw(tokens[j], "BOUND") and tokens[j + 1] == "(" and is_var(tokens[j + 2])
                    and var_name(tokens[j + 2]) == name and tokens[j + 3] == ")"):
                tokens[j:j + 4] = [Tok("(", "punct"), Tok("true", "word"), Tok(")", "punct"), None]
        tokens = [t for t in tokens if t is not None]
        for t in tokens:
            if isinstance(t, Group):
                out.append(group(t))
            elif is_var(t) and var_name(t) == name:
                if in_modifiers:
                    out.extend([Tok("(", "punct"), const, Tok(")", "punct")])
                else:
                    out.append(const)
            else:
                out.append(t)
        return out

    def elem(e):
        if isinstance(e, Triples):
            return Triples(toks(e.tokens))
        if isinstance(e, Filter):
            return Filter(Expr(toks(e.expr.tokens)))
        if isinstance(e, Bind):
            return Bind(Expr(toks(e.expr.tokens)), e.var)
        if isinstance(e, Values):
            return Values(toks(e.tokens))
        if isinstance(e, Optional):
            return Optional(group(e.group))
        if isinstance(e, Minus):
            return Minus(group(e.group))
        if isinstance(e, _NestedGroup):
            return _NestedGroup(group(e.group))
        if isinstance(e, Union):
            return Union([SubSelect(query_(b.query)) if isinstance(b, SubSelect) else group(b) for b in e.branches])
        if isinstance(e, SubSelect):
            return SubSelect(query_(e.query))
        if isinstance(e, GraphElem):
            return GraphElem(e.keyword, toks(e.term), group(e.group))
        raise SparqlSyntaxError(f"cannot substitute into {e!r}")

    def group(g):
        return Group([elem(e) for e in g.elems])

    def query_(q):
        projection = []
        for item in q.projection:
            if is_var(item) and var_name(item) == name:
                continue  # the caller knows the value; (constant AS ?name) could clash with a sub-SELECT
            elif isinstance(item, Expr):
                projection.append(Expr(toks(item.tokens[:-2]) + list(item.tokens[-2:])))
            else:
                projection.append(item)
        if not projection:
            unit = f"?_fast_unit{next(_units)}"
            projection = [Expr([Tok("1", "number"), Tok("AS", "word"), Tok(unit, "var")])]
        return Query(q.prologue, q.modifier, projection, group(q.where), toks(q.modifiers, in_modifiers=True))

    return query_(query)


def split_limit(modifiers):
    """(modifiers without a LIMIT n, n or None)."""
    out = list(modifiers)
    for i, t in enumerate(out):
        if kw(t, "LIMIT") and i + 1 < len(out) and isinstance(out[i + 1], Tok) and out[i + 1].kind == "number":
            n = int(out[i + 1])
            del out[i:i + 2]
            return out, n
    return out, None
