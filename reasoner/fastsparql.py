"""A small structural SPARQL reader and the query rewrites of the fast validator and deriver.

It reads SELECT queries (and the WHERE group of CONSTRUCT queries) into a tree of group graph
patterns (triples blocks, FILTER, OPTIONAL, UNION, MINUS, BIND, VALUES, GRAPH, sub-SELECT) whose
leaves keep the original tokens, so a query comes back out as the same text apart from what a
rewrite changed. The rewrites, each applied
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

The derivation rules (CONSTRUCT queries, reasoner/fastderive.py) use `rewrite_construct`: the WHERE
group is rewritten by 2b, 3, 4 and 5 below and spliced back, the prologue, template and modifiers
kept verbatim; where no condition holds the text is returned as it is.

2b. Rewrite 2 with a chosen G' and stricter conditions on P (`rewrite_where`). G is the group, P
   the EXISTS pattern, S = vars(P) & scope(G) the shared variables. G' is any set of generators of
   G: triple patterns of its triples blocks, copyable sub-SELECTs (projected on their certainly
   bound variables), UNIONs of triples-only branches that all mention the same variables. M is
   the merged group { G' P } (P's elements appended to G'). Conditions: S is not empty and
   certainly bound by G's join elements (so it is in dom(mu) for every solution mu G's filters
   see); S is certainly bound in M; P is `substitution_safe` for S (each occurrence of a variable
   of S is in a triple pattern, in a FILTER of a group certainly binding it (for an OPTIONAL's own
   filters: or its left side), in a BIND after an element binding it, in an OPTIONAL whose left
   side certainly binds it, or in a nested group / UNION branch safe in turn; never in MINUS,
   VALUES, a sub-SELECT or SERVICE); no blank node labels, no path that can have zero length.
   (a) Substitution lemma: then the solutions of M with S replaced by constants c are, less S,
   the solutions of M that bind S to c: every occurrence either is matched by value or reads a
   variable bound to the same value in both. (b) EXISTS { P } is true for mu iff some solution of
   M agrees with mu on S: a solution nu of P[mu] joins mu|G' (a solution of G', which is part of
   G's join; compatible with nu, whose other variables are P's own); conversely a solution of M
   agreeing with mu on S holds a solution of P[mu|S] = P[mu] by (a). (c) NOT EXISTS { P } becomes
   MINUS { M }: a solution of M is compatible with mu and shares a variable with it iff it agrees
   with mu on S and vars(G') (all in dom(mu), and the only variables of M in dom(mu)); one exists
   iff one agrees on S alone (by (b) and mu|G'). EXISTS { P } becomes a join with
   { SELECT DISTINCT S WHERE { M } }: at most one row, mu|S, joins each mu, so multiplicities are
   kept. Both are placed at the end of G, as in rewrite 2. Any G' satisfying the conditions is
   exact; `_cover` picks a small connected one (none when a single shared variable is bound by P
   itself), plus the knowledge-graph patterns on its variables that only batch patterns bind
   (`?code cptkg:criteria ?crit` beside `?crit cptkg:kind ?kind`, which every act of that kind
   matches too), and by default an EXISTS of one triple pattern is left as written (oxigraph
   runs it as one index lookup per row, cheaper than the join).

4. An EXISTS inside a larger filter expression, as in FILTER (NOT EXISTS { ?crit p ?x } ||
   EXISTS { ?crit p ?r . ?act p ?r }): each [NOT] EXISTS { P } meeting 2b's conditions becomes
   BOUND(?f) (NOT EXISTS: (!BOUND(?f))) with a fresh variable ?f, and
   OPTIONAL { SELECT DISTINCT S (true AS ?f) WHERE { M } } is appended to the group after all its
   other elements (its filters still apply to the whole group). Equivalence: let X be the group
   without its filters and R the sub-SELECT. Every row of R binds all of S (certain in M) and ?f,
   and R has at most one row per value of S (DISTINCT, ?f constant); every solution mu of X binds
   S. So LeftJoin(X, R) extends each mu by exactly one row, mu|S with ?f = true, when R has it, and
   keeps mu alone with ?f unbound otherwise: multiplicities are unchanged, and BOUND(?f) has the
   value of EXISTS { P } for mu by 2b (b). Neither BOUND nor EXISTS raises an error, so the filter
   has the same value for every mu. ?f occurs nowhere else, so nothing else reads it. Applied
   only where the extra variable cannot be seen: the WHERE of a CONSTRUCT (the template cannot
   name it) and the groups 2b builds (inside SELECT DISTINCT S, which does not project it, or
   MINUS, which compares only variables its left side binds).

5. Join order within a group (`_kb_first`, only when the caller says which predicates only the
   knowledge graph holds): in a run of consecutive join elements (triples, UNION, nested groups,
   sub-SELECTs), when two triple patterns join two subjects through a shared value
   (`?act cptkg:kind ?kind . ?crit cptkg:kind ?kind`) and a knowledge-graph pattern binds one of
   them (`?code cptkg:criteria ?crit`), that pattern is written first. Join is commutative and
   associative: the solutions are the same. oxigraph's planner has no statistics (it estimates a
   pattern by which of its terms are bound) and starts from the first of its equal candidates;
   from the act it would look up every node of the batch with the same kind (quadratic), from
   the criterion only the acts of its kind.

6. A large star of the knowledge graph as a sub-SELECT (`wrap_large_stars`, applied by the engines
   after loading the knowledge graph, which count each star's solutions there): in a run of
   consecutive join elements, the plain triple patterns sharing a variable subject
   (`?e a cptkg:BundlingEdit ; cptkg:column1 ?c1 ; cptkg:column2 ?c2`) become
   `{ SELECT vars WHERE { star } }` when the star has many solutions. Exact: a join is
   commutative and associative, and a sub-SELECT projecting every variable of a basic graph
   pattern without blank nodes has that pattern's solutions. oxigraph evaluates the sub-SELECT
   once and joins it by hash on all shared variables, instead of walking from each pair of the
   batch's codes through tens of thousands of edits one index lookup at a time.

`pattern_reads` / `pattern_dependencies` give what a rule's pattern can match (its predicates and
rdf:type classes, with the sign of each: can more such triples add solutions, or only remove
them), so the fast deriver can skip a rule when nothing that can add to it changed since it ran.
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
    return [tok for tok, _, _ in _token_spans(text)]


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


class _GroupNode(Node):
    """An element made of one group after a keyword (OPTIONAL, MINUS, or none)."""

    KEYWORD = ""

    def __init__(self, group):
        self.group = group

    def vars(self):
        return self.group.vars()

    def render(self):
        return self.KEYWORD + self.group.render()


class Optional(_GroupNode):
    KEYWORD = "OPTIONAL "


class Minus(_GroupNode):
    KEYWORD = "MINUS "


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


class _NestedGroup(_GroupNode):
    """A plain nested { ... } group (a join with the group around it)."""


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


def any_triples(elem, test):
    """True when `test` holds for some triples block anywhere in elem (nested groups, OPTIONAL,
    MINUS, GRAPH, UNION branches, sub-SELECTs, EXISTS inside FILTER and BIND)."""
    if isinstance(elem, Triples):
        return test(elem)
    if isinstance(elem, Group):
        return any(any_triples(e, test) for e in elem.elems)
    if isinstance(elem, (_NestedGroup, Optional, Minus, GraphElem)):
        return any_triples(elem.group, test)
    if isinstance(elem, Union):
        return any(any_triples(b, test) for b in elem.branches)
    if isinstance(elem, SubSelect):
        return any_triples(elem.query.where, test)
    if isinstance(elem, (Filter, Bind)):
        return any(any_triples(g, test) for g in elem.expr.groups())
    return False


def has_bnode_labels(elem):
    return any_triples(elem, lambda t: t.has_bnode_label())


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
                    and read_only_in_joins(inner, shared)
                    and substitution_safe(Group([*[_generator_copy(x) for x in gen], *inner.elems]), shared,
                                          prefix=len(gen))):
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


# ---------------------------------------------------------------------------------------------
# CONSTRUCT rules: rewrites 2b and 4 (see the module docstring)


def _token_spans(text):
    """(token, start, end) for every token of text."""
    out = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SparqlSyntaxError(f"cannot read the query at {text[pos:pos + 30]!r}")
        kind = m.lastgroup
        if kind != "ws":
            out.append((Tok(m.group(kind), kind), m.start(), m.end()))
        pos = m.end()
    return out


def construct_where_span(text):
    """(start, end) of the WHERE group of a CONSTRUCT query in text (the braces included), or
    None when the text is not a CONSTRUCT with a template (the short form CONSTRUCT WHERE, whose
    pattern is its template, and a dataset clause are not handled)."""
    spans = _token_spans(text)
    i = 0
    while i < len(spans) and kw(spans[i][0], "PREFIX", "BASE"):
        i += 3 if kw(spans[i][0], "PREFIX") else 2
    if i >= len(spans) or not kw(spans[i][0], "CONSTRUCT"):
        return None
    i += 1

    def close(j):
        """Index of the token closing the brace opened at j."""
        depth = 0
        for k in range(j, len(spans)):
            t = spans[k][0]
            if t.kind == "punct" and t == "{":
                depth += 1
            elif t.kind == "punct" and t == "}":
                depth -= 1
                if depth == 0:
                    return k
        raise SparqlSyntaxError("unbalanced braces")

    if i >= len(spans) or spans[i][0] != "{":
        return None
    i = close(i) + 1
    if i < len(spans) and kw(spans[i][0], "WHERE"):
        i += 1
    if i >= len(spans) or spans[i][0] != "{":
        return None
    j = close(i)
    return spans[i][1], spans[j][2]


def rewrite_construct(text, cover=True, lookups=False, bounded=None):
    """The CONSTRUCT query text with its WHERE pattern rewritten by rewrites 2b, 3, 4 and 5 (module
    docstring); the prologue, the template and the solution modifiers are kept verbatim. The
    text comes back unchanged when it cannot be read or when no rewrite applies.

    `cover`: re-state a small connected part of the enclosing group inside a rewritten EXISTS
    (False: all of its join elements, as rewrite 2 does). `lookups`: rewrite an EXISTS of a single
    triple pattern too; by default it stays as written, since oxigraph evaluates it as one index
    lookup per row, which is cheaper than a join with its rewritten form. `bounded`: a function
    telling, for a key of pattern_reads, whether only the knowledge graph holds such triples
    (rewrite 5 and the choice of G'); None: unknown."""
    try:
        span = construct_where_span(text)
        if span is None:
            return text
        a, b = span
        group = parse_group(text[a:b])
        tokens = tokenize(text)
        used = {var_name(t) for t in tokens if is_var(t)}
    except SparqlSyntaxError:
        return text
    new = rewrite_where(group, _Rewriter(used, cover=cover, lookups=lookups, bounded=bounded,
                                         prefixes=_prologue_prefixes(tokens)))
    if new.render() == group.render():
        return text
    return text[:a] + new.render() + text[b:]


def rewrite_select(text, cover=True, lookups=False, bounded=None):
    """A SELECT query with its WHERE group rewritten by 2b, 3, 4 and 5 (4 only when the projection
    is explicit, so that the flag variables are not projected); unchanged when it cannot be read
    or nothing applies. The form the unit tests compare as bags of rows."""
    try:
        q = parse_query(text)
        tokens = tokenize(text)
        used = {var_name(t) for t in tokens if is_var(t)}
    except SparqlSyntaxError:
        return text
    rw = _Rewriter(used, cover=cover, lookups=lookups, bounded=bounded, prefixes=_prologue_prefixes(tokens))
    where = rewrite_where(q.where, rw, flags=q.projected_vars() is not None)
    if where.render() == q.where.render():
        return text
    return Query(q.prologue, q.modifier, q.projection, where, q.modifiers).render()


def _prologue_prefixes(tokens):
    """The PREFIX declarations at the start of a token list (None after a BASE)."""
    prefixes = {}
    i = 0
    while i + 2 < len(tokens) and kw(tokens[i], "PREFIX", "BASE"):
        if kw(tokens[i], "BASE"):
            return None
        prefixes[str(tokens[i + 1])[:-1]] = str(tokens[i + 2])[1:-1]
        i += 3
    return prefixes


class _Rewriter:
    """Options of one rewrite, and fresh variable names (names that occur nowhere in the query)."""

    def __init__(self, used, cover=True, lookups=False, bounded=None, prefixes=None):
        self.used = set(used)
        self.cover, self.lookups = cover, lookups
        self.bounded = bounded if prefixes is not None else None
        self.prefixes = prefixes
        self.n = 0

    def is_bounded(self, elem):
        """A triples element whose every triple pattern names only keys the knowledge graph alone
        holds (so its solutions do not grow with the batch)."""
        if self.bounded is None or not isinstance(elem, Triples):
            return False
        keys = set()
        try:
            _reads_triples(elem.tokens, self.prefixes, keys)
        except (_Anything, KeyError, IndexError):
            return False
        return bool(keys) and all(self.bounded(k) for k in keys)

    def fresh(self, stem="fx"):
        while True:
            self.n += 1
            name = f"_{stem}{self.n}"
            if name not in self.used:
                self.used.add(name)
                return name


def _whole_exists(tokens):
    """(negated, group) when an expression is [NOT] EXISTS { ... } alone, in any number of
    enclosing parentheses; else None."""
    t = list(tokens)
    while len(t) >= 2 and t[0] == "(" and t[-1] == ")" and _matching(t, 0) == len(t) - 1:
        t = t[1:-1]
    if len(t) == 3 and kw(t[0], "NOT") and kw(t[1], "EXISTS") and isinstance(t[2], Group):
        return True, t[2]
    if len(t) == 2 and kw(t[0], "EXISTS") and isinstance(t[1], Group):
        return False, t[1]
    return None


def _matching(tokens, i):
    depth = 0
    for j in range(i, len(tokens)):
        u = tokens[j]
        if isinstance(u, Tok) and u == "(":
            depth += 1
        elif isinstance(u, Tok) and u == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def _plain_vars(tokens):
    """Variables of an expression outside its EXISTS groups."""
    return {var_name(t) for t in tokens if is_var(t)}


def _split_triples(elem):
    """A triples block as one Triples per triple pattern (subject, predicate or path, object), so
    that a generator can be re-stated in part. A statement with a blank node property list or a
    collection ([ ] or ( ), whose blank nodes would no longer be shared) is kept whole."""
    statements, cur, depth = [], [], 0
    for t in elem.tokens:
        if isinstance(t, Tok) and t.kind == "punct" and t in ("(", "["):
            depth += 1
        elif isinstance(t, Tok) and t.kind == "punct" and t in (")", "]"):
            depth -= 1
        if depth == 0 and isinstance(t, Tok) and t.kind == "punct" and t == ".":
            if cur:
                statements.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        statements.append(cur)
    out = []
    for st in statements:
        if any(isinstance(t, Tok) and t.kind == "punct" and t in ("(", "[") for t in st) or len(st) < 3:
            out.append(Triples(st))
            continue
        subject, rest = st[0], st[1:]
        pairs = [p for p in _split_at(rest, ";") if p]
        for pair in pairs:
            # predicate (a path of tokens) then objects separated by ","; the predicate ends
            # before the first object: split at the commas, the last token group of each part
            # after the first is an object
            parts = _split_at(pair, ",")
            simple = all(t.kind in ("var", "iri", "pname") or (t.kind == "word" and t == "a")
                         or (t.kind == "punct" and t in ("/", "|", "^", ",")) for t in pair)
            if len(parts) == 1 or not simple:
                out.append(Triples([subject, *pair]))
                continue
            first = parts[0]
            pred, objs = first[:-1], [first[-1]] + [p[0] if len(p) == 1 else None for p in parts[1:]]
            if not pred or None in objs:
                out.append(Triples([subject, *pair]))
                continue
            for o in objs:
                out.append(Triples([subject, *pred, o]))
    return out


def _split_at(tokens, sep):
    """The runs of tokens between the punctuation tokens `sep` (empty runs kept)."""
    parts, cur = [], []
    for t in tokens:
        if isinstance(t, Tok) and t.kind == "punct" and t == sep:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


def _generator(elem):
    """A join element that can be evaluated again on its own and whose every solution binds
    exactly its certainly bound variables after _generator_copy: triples, a copyable sub-SELECT,
    or a UNION of triples-only groups that all mention the same variables."""
    if has_bnode_labels(elem):
        return False
    if isinstance(elem, Union):
        if not all(isinstance(b, Group) and b.elems and all(isinstance(x, Triples) for x in b.elems)
                   for b in elem.branches):
            return False
        names = [b.vars() for b in elem.branches]
        return bool(names[0]) and all(v == names[0] for v in names)
    return _copyable(elem) and bool(certain(elem))


def _has_zero_length_path(group):
    """A property path with * or ? (a zero-length path matches a constant that is not in the
    data, so a substituted value and a joined one can differ)."""
    return any_triples(group, lambda t: any(isinstance(x, Tok) and x.kind == "punct" and x in ("*", "?")
                                            for x in t.tokens))


def substitution_safe(group, names, see=frozenset(), prefix=0):
    """True when replacing the variables `names` of `group` by constants gives the solutions of
    `group` in which they are bound to those constants (the substitution lemma of rewrite 2b).
    Holds when every occurrence is: in a triple pattern; in a FILTER (or an EXISTS inside it) of a
    group that certainly binds it (or sees it bound: `see`, the left side for an OPTIONAL's own
    filters); in a BIND after a join element binding it; in an OPTIONAL whose left side certainly
    binds it; in a nested group or UNION branch that is safe in turn. Never in MINUS, VALUES, a
    sub-SELECT, SERVICE, or as a BIND target. The first `prefix` elements are trusted join
    elements (the generator copies)."""
    here = certain(group) | set(see)
    so_far = set()
    for i, e in enumerate(group.elems):
        if i < prefix or isinstance(e, Triples):
            so_far |= certain(e)
            continue
        if isinstance(e, Filter):
            if (_plain_vars(e.expr.tokens) & names) - here:
                return False
            if any((g.vars() & names) - here for g in e.expr.groups()):
                return False
            continue
        if isinstance(e, Bind):
            if e.var in names or (e.expr.vars() & names) - so_far:
                return False
            continue
        mention = e.vars() & names
        if not mention:
            so_far |= certain(e)
            continue
        if isinstance(e, Optional):
            if mention - so_far or not substitution_safe(e.group, names, see=so_far):
                return False
            continue
        if isinstance(e, _NestedGroup) or (isinstance(e, GraphElem) and e.keyword == "GRAPH"):
            if not substitution_safe(e.group, names):
                return False
        elif isinstance(e, Union):
            for b in e.branches:
                if b.vars() & names and (isinstance(b, SubSelect) or not substitution_safe(b, names)):
                    return False
        else:
            return False
        so_far |= certain(e)
    return True


def _connected(parts):
    """Are the variable sets `parts` connected through shared variables (one or none: yes)?"""
    parts = [set(p) for p in parts]
    if len(parts) <= 1:
        return True
    reached = set(parts[0])
    left = parts[1:]
    grew = True
    while grew and left:
        grew = False
        for p in list(left):
            if p & reached:
                reached |= p
                left.remove(p)
                grew = True
    return not left


def _cover(gens, shared, inner_certain, cover=True, restricts=None):
    """The generators G' re-stated inside a rewritten EXISTS: all of them (cover=False, as rewrite
    2 does), or a small subset found by pruning. With one shared variable that the EXISTS pattern
    binds itself, none. Otherwise a connected subset that by itself certainly binds every shared
    variable, so that the rewritten pattern is limited to the combinations of shared values the
    group can produce (the EXISTS pattern alone may relate them far more widely: every criterion
    with every act of the same modality); failing that, a subset that does so together with the
    EXISTS pattern. None when neither exists. Any subset is exact (rewrite 2b); this only chooses
    a cheap one."""

    def ok(sel, alone):
        bound = set() if alone else set(inner_certain)
        for g in sel:
            bound |= certain(g)
        parts = [certain(g) for g in sel]
        if not alone:
            parts.append(inner_certain or shared)
        return shared <= bound and _connected(parts)

    def prune(alone):
        chosen = list(gens)
        if not ok(chosen, alone):
            return None
        if not cover:
            return chosen
        changed = True
        while changed:
            changed = False
            for g in reversed(list(chosen)):
                trial = [x for x in chosen if x is not g]
                if ok(trial, alone):
                    chosen = trial
                    changed = True
        return chosen

    if cover and len(shared) == 1 and shared <= inner_certain:
        return []
    sel = prune(alone=True)
    sel = sel if sel is not None else prune(alone=False)
    if sel and cover and restricts is not None:
        # a variable of the subset bound only by patterns the batch can match (?crit by
        # `?crit cptkg:kind ?kind`: every act of that kind too) is limited to the knowledge
        # graph's nodes by a knowledge-graph pattern on it: keep such patterns, one step out
        loose = set()
        for g in sel:
            loose |= certain(g)
        for g in sel:
            if restricts(g):
                loose -= certain(g)
        sel = sel + [g for g in gens if not any(g is x for x in sel) and restricts(g) and certain(g) & loose]
    return sel


def is_lookup(group):
    """A group of one triple pattern and nothing else."""
    return (len(group.elems) == 1 and isinstance(group.elems[0], Triples)
            and len(_split_triples(group.elems[0])) == 1)


def _correlated(inner, gens, bound, group_scope, rw):
    """Rewrite 2b's conditions for [NOT] EXISTS { inner } in a group: returns (merged group
    { G' inner }, already rewritten, and the shared variables V) or None when they do not hold."""
    shared = inner.vars() & group_scope
    if not shared or not shared <= bound:
        return None
    if not rw.lookups and is_lookup(inner):
        return None
    if has_bnode_labels(inner) or _has_zero_length_path(inner):
        return None
    inner_elems = list(inner.elems)
    inner_certain = certain(Group(inner_elems))
    sel = _cover(gens, shared, inner_certain, cover=rw.cover,
                 restricts=rw.is_bounded if rw.bounded is not None else None)
    if sel is None:
        return None
    copies = [g if isinstance(g, Union) else _generator_copy(g) for g in sel]
    merged = Group(copies + inner_elems)
    if not shared <= certain(merged) or not substitution_safe(merged, shared, prefix=len(copies)):
        return None
    return rewrite_where(merged, rw), shared


def _var(name):
    return Tok("?" + name, "var")


_JOIN_ELEMENTS = (Triples, Union, _NestedGroup, SubSelect)


def _spo(part):
    """(subject var, predicate text, object var) of a single triple pattern with variables at both
    ends, else None."""
    if not isinstance(part, Triples) or len(part.tokens) < 3:
        return None
    t = part.tokens
    if not (is_var(t[0]) and is_var(t[-1])) or any(u in (";", ",", ".", "[", "(") for u in t):
        return None
    return var_name(t[0]), " ".join(t[1:-1]), var_name(t[-1])


def _kb_first(elems, rw):
    """Rewrite 5: in a run of consecutive join elements of a group (triples, UNION, nested groups,
    sub-SELECTs; FILTERs apply to the whole group and do not end a run), when two triple patterns
    join two subjects through a shared value (`?act cptkg:kind ?kind . ?crit cptkg:kind ?kind`)
    and a pattern only the knowledge graph can match binds one of the subjects
    (`?code cptkg:criteria ?crit`), that pattern goes first. A join is commutative and
    associative, so any order of a run has the same solutions. oxigraph's planner starts from the
    first of its equally estimated candidates; started from the batch it would look up, for each
    act, every node of the batch with the same value (quadratic), started from the knowledge
    graph it looks up the few criteria of each kind."""
    if rw.bounded is None:
        return elems

    def reorder(run):
        out = []
        parts = []
        for e in run:
            if not isinstance(e, Filter):
                parts.extend(_split_triples(e) if isinstance(e, Triples) else [e])
        spo = [_spo(p) for p in parts]
        subjects = set()
        for i, x in enumerate(spo):
            for j in range(i + 1, len(spo)):
                y = spo[j]
                if x and y and x[1] == y[1] and x[2] == y[2] and x[0] != y[0] and not rw.is_bounded(parts[i]):
                    subjects.update((x[0], y[0]))
        first = [p for p in parts if rw.is_bounded(p) and certain(p) & subjects]
        if first and not all(a is b for a, b in zip(first, parts)):
            rest = [p for p in parts if not any(p is f for f in first)]
            out.extend(_merge_adjacent(first + rest))
        else:
            out.extend(e for e in run if not isinstance(e, Filter))
        out.extend(e for e in run if isinstance(e, Filter))
        return out

    return _by_runs(elems, reorder)


def _merge_adjacent(parts):
    """Join elements with adjacent triple patterns back into one triples block."""
    merged = []
    for p in parts:
        if isinstance(p, Triples) and merged and isinstance(merged[-1], Triples):
            merged[-1] = Triples(merged[-1].tokens + [Tok(".", "punct")] + p.tokens)
        else:
            merged.append(p)
    return merged


def _by_runs(elems, change):
    """The elements of a group with each run of consecutive join elements (FILTERs among them:
    a filter applies to the whole group) replaced by change(run), a list."""
    out, run = [], []
    for e in elems + [None]:
        if e is not None and (isinstance(e, _JOIN_ELEMENTS) or isinstance(e, Filter)):
            run.append(e)
            continue
        if run:
            out.extend(change(run))
            run = []
        if e is not None:
            out.append(e)
    return out


def rewrite_where(group, rw, own_filters=True, flags=True):
    """Rewrites 2b, 3 and 4 on a group evaluated on its own (the WHERE of a CONSTRUCT, or a group
    built by 2b), recursively. `rw`: a _Rewriter. `own_filters` is False for an OPTIONAL's group
    (its filters see the left side too; they are not rewritten). `flags` allows rewrite 4, whose
    fresh flag variables appear in the group's solutions: allowed where no one sees them (the
    WHERE of a CONSTRUCT whose template cannot name them, a group inside a sub-SELECT that does
    not project them). Returns a new Group."""
    elems = _kb_first(_reorder_optionals(list(group.elems)), rw)
    gens = []
    for e in elems:
        if _generator(e):
            gens.extend(_split_triples(e) if isinstance(e, Triples) else [e])
    bound = certain(Group(elems))
    group_scope = set()
    for e in elems:
        group_scope |= scope(e)
    out, tail, flagged = [], [], []
    for e in elems:
        if own_filters and isinstance(e, Filter):
            whole = _whole_exists(e.expr.tokens)
            if whole is not None:
                # rewrite 2b: the filter is [NOT] EXISTS { P } alone
                negated, inner = whole
                done = _correlated(inner, gens, bound, group_scope, rw)
                if done is not None:
                    merged, shared = done
                    if negated:
                        tail.append(Minus(merged))
                    else:
                        keys = [_var(k) for k in sorted(shared)]
                        tail.append(SubSelect(Query([], "DISTINCT", keys, merged, [])))
                    continue
            elif flags:
                # rewrite 4: [NOT] EXISTS { P } inside a larger expression
                toks = list(e.expr.tokens)
                new = []
                changed = False
                j = 0
                while j < len(toks):
                    t = toks[j]
                    negated = (kw(t, "NOT") and j + 2 < len(toks) and kw(toks[j + 1], "EXISTS")
                               and isinstance(toks[j + 2], Group))
                    plain = kw(t, "EXISTS") and j + 1 < len(toks) and isinstance(toks[j + 1], Group)
                    if negated or plain:
                        inner = toks[j + 2] if negated else toks[j + 1]
                        done = _correlated(inner, gens, bound, group_scope, rw)
                        if done is not None:
                            merged, shared = done
                            flag = rw.fresh()
                            keys = [_var(k) for k in sorted(shared)]
                            keys.append(Expr([Tok("true", "word"), Tok("AS", "word"), _var(flag)]))
                            flagged.append(Optional(Group([SubSelect(Query([], "DISTINCT", keys, merged, []))])))
                            test = [Tok("BOUND", "word"), Tok("(", "punct"), _var(flag), Tok(")", "punct")]
                            if negated:
                                test = [Tok("(", "punct"), Tok("!", "punct"), *test, Tok(")", "punct")]
                            new.extend(test)
                            changed = True
                            j += 3 if negated else 2
                            continue
                    new.append(t)
                    j += 1
                if changed:
                    e = Filter(Expr(new))
        if isinstance(e, Optional):
            e = Optional(rewrite_where(e.group, rw, own_filters=False, flags=False))
        elif isinstance(e, _NestedGroup):
            e = _NestedGroup(rewrite_where(e.group, rw, flags=False))
        elif isinstance(e, Union):
            e = Union([b if isinstance(b, SubSelect) else rewrite_where(b, rw, flags=False) for b in e.branches])
        elif isinstance(e, SubSelect):
            q = e.query
            e = SubSelect(Query(q.prologue, q.modifier, q.projection,
                                rewrite_where(q.where, rw, flags=q.projected_vars() is not None), q.modifiers))
        elif isinstance(e, Minus):
            e = Minus(rewrite_where(e.group, rw, flags=False))
        out.append(e)
    filters = [e for e in out if isinstance(e, Filter)]
    rest = [e for e in out if not isinstance(e, Filter)]
    return Group(rest + tail + flagged + filters)


# ---------------------------------------------------------------------------------------------
# rewrite 6: a large star of the knowledge graph as a sub-SELECT


_OBJECT_KINDS = ("var", "iri", "pname", "string", "number", "lang")


def _star_subject(part):
    """The subject variable of a plain triple pattern (`?s pred object`, the predicate an IRI or
    `a`, the object a variable, an IRI or a literal, no blank node), else None."""
    t = part.tokens if isinstance(part, Triples) else ()
    if len(t) < 3 or not is_var(t[0]):
        return None
    if not (t[1].kind in ("iri", "pname") or (t[1].kind == "word" and t[1] == "a")):
        return None
    obj = t[2:]
    if len(obj) == 1 and obj[0].kind == "word" and obj[0].lower() in ("true", "false"):
        return var_name(t[0])
    if obj[0].kind not in ("var", "iri", "pname", "string", "number"):
        return None
    if not all(x.kind in _OBJECT_KINDS or (x.kind == "punct" and x == "^^") for x in obj):
        return None
    return var_name(t[0])


def _wrap_run(run, large, prologue):
    """One run of consecutive join elements (FILTERs among them): the stars that `large` names
    become sub-SELECTs; None when there is none."""
    parts = []
    for e in run:
        if isinstance(e, Triples):
            parts.extend(_split_triples(e))
        elif not isinstance(e, Filter):
            parts.append(e)
    stars = {}
    for i, p in enumerate(parts):
        s = _star_subject(p)
        if s is not None:
            stars.setdefault(s, []).append(i)
    wrapped = {}
    for s, idx in stars.items():
        if len(idx) < 2:
            continue
        star = Group([parts[i] for i in idx])
        if not large(prologue, star.render()):
            continue
        names = [Tok("?" + v, "var") for v in sorted(star.vars())]
        wrapped[idx[0]] = SubSelect(Query([], "", names, star, []))
        for i in idx[1:]:
            wrapped[i] = None
    if not wrapped:
        return None
    kept = [wrapped.get(i, p) for i, p in enumerate(parts)]
    return _merge_adjacent([p for p in kept if p is not None]) + [e for e in run if isinstance(e, Filter)]


def _wrap_group(group, large, prologue):
    elems = []
    for e in group.elems:
        if isinstance(e, Optional):
            e = Optional(_wrap_group(e.group, large, prologue))
        elif isinstance(e, Minus):
            e = Minus(_wrap_group(e.group, large, prologue))
        elif isinstance(e, _NestedGroup):
            e = _NestedGroup(_wrap_group(e.group, large, prologue))
        elif isinstance(e, GraphElem):
            e = GraphElem(e.keyword, e.term, _wrap_group(e.group, large, prologue))
        elif isinstance(e, Union):
            e = Union([b if isinstance(b, SubSelect) else _wrap_group(b, large, prologue) for b in e.branches])
        elif isinstance(e, SubSelect):
            q = e.query
            e = SubSelect(Query(q.prologue, q.modifier, q.projection, _wrap_group(q.where, large, prologue),
                                q.modifiers))
        elems.append(e)
    return Group(_by_runs(elems, lambda run: _wrap_run(run, large, prologue) or run))


def wrap_large_stars(text, large):
    """Rewrite 6 on a SELECT or CONSTRUCT query: in every run of consecutive join elements of
    every group (FILTERs do not end a run; OPTIONAL, MINUS, BIND and VALUES do; the inside of an
    EXISTS is left alone), the plain triple patterns that share a variable subject (a star, two
    patterns or more) for which `large(prologue, star_text)` is true become one element
    `{ SELECT vars WHERE { star } }`, in place of the first of them. Exact: a join is
    commutative and associative, and a sub-SELECT projecting every variable of a basic graph
    pattern has that pattern's solutions (no blank node, whose scope the sub-SELECT would end,
    is allowed in a star). The plan is oxigraph's reason: it evaluates the sub-SELECT once and
    joins it by hash on the shared variables; given the patterns one by one, it walks from the
    batch's codes through a large relation of the knowledge graph (an imported edit table of
    tens of thousands of edits) one index lookup at a time. `large` is asked by the engine,
    which counts the star's solutions in the knowledge graph (Engine.load_base). The text comes
    back unchanged when nothing is large or it cannot be read."""
    try:
        tokens = tokenize(text)
        prefixes = _prologue_prefixes(tokens)
        if prefixes is None:
            return text
        prologue = "".join(f"PREFIX {k}: <{v}>\n" for k, v in prefixes.items())
        span = construct_where_span(text)
        if span is not None:
            a, b = span
            group = parse_group(text[a:b])
            new = _wrap_group(group, large, prologue)
            return text if new.render() == group.render() else text[:a] + new.render() + text[b:]
        q = parse_query(text)
    except SparqlSyntaxError:
        return text
    where = _wrap_group(q.where, large, prologue)
    if where.render() == q.where.render():
        return text
    return Query(q.prologue, q.modifier, q.projection, where, q.modifiers).render()


# ---------------------------------------------------------------------------------------------
# what a rule reads


RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
_RDF_FIRST = "http://www.w3.org/1999/02/22-rdf-syntax-ns#first"
_RDF_REST = "http://www.w3.org/1999/02/22-rdf-syntax-ns#rest"


class _Anything(Exception):
    pass


def pattern_reads(text):
    """The triples the WHERE pattern of a query can match, as a set of keys: a predicate IRI (any
    triple with that predicate), or ("type", C) for rdf:type triples with the class C when the
    pattern names the class. None when the pattern may depend on any triple: a variable or a
    negated property set in predicate position, a path that can have zero length (* or ?),
    GRAPH, SERVICE, BASE or relative IRIs, or anything this reader does not understand.

    The solutions of a pattern are a function of the triples it can match (every triple pattern
    and path step names its predicate), so a rule whose keys meet none of the triples added since
    it last ran gives what it gave then."""
    deps = pattern_dependencies(text)
    return None if deps is None else set(deps)


def pattern_dependencies(text):
    """pattern_reads with a sign for each key: "-" when the pattern reads the key only where more
    such triples can only remove solutions, "+" where they can only add solutions, "±" otherwise
    (or both). None: anything.

    A key is "-" when every triple pattern naming it sits under an odd number of negations
    (NOT EXISTS, MINUS) and nowhere else. Monotone parts: triple patterns, joins, UNION, nested
    groups, a sub-SELECT without aggregate, modifier or LIMIT, FILTER expressions whose EXISTS
    operands are combined only by && and || (both are monotone in each operand's truth value, and
    EXISTS never raises an error). Not monotone (keys "±"): the right side of OPTIONAL (a new match
    replaces a row), EXISTS under ! or inside a function or comparison, EXISTS in BIND, sub-SELECTs
    with aggregates or modifiers, solution modifiers of the query. So a rule whose changed keys are
    all "-" for it can only lose solutions when run again: it adds nothing new."""
    try:
        tokens = tokenize(text)
        prefixes = {}
        i = 0
        while i < len(tokens) and kw(tokens[i], "PREFIX", "BASE"):
            if kw(tokens[i], "BASE"):
                return None
            prefixes[str(tokens[i + 1])[:-1]] = str(tokens[i + 2])[1:-1]
            i += 3
        if kw(tokens[i], "CONSTRUCT"):
            span = construct_where_span(text)
            if span is None:
                return None
            group = parse_group(text[span[0]:span[1]])
            pol = 0 if tokenize(text[span[1]:]) else 1
        else:
            q = parse_query(text)
            group = q.where
            pol = 0 if (q.has_aggregate() or q.modifier_words()) else 1
        out = {}
        _reads_group(group, prefixes, out, pol)
        return out
    except (_Anything, SparqlSyntaxError, IndexError, KeyError):
        return None


_SIGN = {1: "+", -1: "-", 0: "±"}


def _reads_group(node, prefixes, out, pol):
    if isinstance(node, Triples):
        keys = set()
        _reads_triples(node.tokens, prefixes, keys)
        for k in keys:
            sign = _SIGN[pol]
            out[k] = sign if out.get(k, sign) == sign else "±"
    elif isinstance(node, Group):
        for e in node.elems:
            _reads_group(e, prefixes, out, pol)
    elif isinstance(node, _NestedGroup):
        _reads_group(node.group, prefixes, out, pol)
    elif isinstance(node, Optional):
        _reads_group(node.group, prefixes, out, 0)
    elif isinstance(node, Minus):
        _reads_group(node.group, prefixes, out, -pol)
    elif isinstance(node, GraphElem):
        raise _Anything()
    elif isinstance(node, Union):
        for b in node.branches:
            _reads_group(b, prefixes, out, pol)
    elif isinstance(node, SubSelect):
        q = node.query
        _reads_group(q.where, prefixes, out, 0 if (q.has_aggregate() or q.modifier_words()) else pol)
    elif isinstance(node, Filter):
        _reads_expr(node.expr.tokens, prefixes, out, pol)
    elif isinstance(node, Bind):
        for g in node.expr.groups():
            _reads_group(g, prefixes, out, 0)
    elif isinstance(node, Values):
        pass
    else:
        raise _Anything()


def _reads_expr(tokens, prefixes, out, pol):
    """The EXISTS groups of a filter expression, with their polarity (see pattern_dependencies)."""
    t = list(tokens)
    while len(t) >= 2 and t[0] == "(" and t[-1] == ")" and _matching(t, 0) == len(t) - 1:
        t = t[1:-1]
    if len(t) == 3 and kw(t[0], "NOT") and kw(t[1], "EXISTS") and isinstance(t[2], Group):
        _reads_group(t[2], prefixes, out, -pol)
        return
    if len(t) == 2 and kw(t[0], "EXISTS") and isinstance(t[1], Group):
        _reads_group(t[1], prefixes, out, pol)
        return
    operands, cur, depth = [], [], 0
    for u in t:
        if isinstance(u, Tok) and u.kind == "punct" and u == "(":
            depth += 1
        elif isinstance(u, Tok) and u.kind == "punct" and u == ")":
            depth -= 1
        if depth == 0 and isinstance(u, Tok) and u.kind == "punct" and u in ("||", "&&"):
            operands.append(cur)
            cur = []
        else:
            cur.append(u)
    operands.append(cur)
    if len(operands) > 1:
        for op in operands:
            _reads_expr(op, prefixes, out, pol)
        return
    for u in t:
        if isinstance(u, Group):
            _reads_group(u, prefixes, out, 0)


def _iri(tok, prefixes):
    if tok.kind == "iri":
        iri = str(tok)[1:-1]
        if ":" not in iri:
            raise _Anything()  # relative
        return iri
    if tok.kind == "pname":
        prefix, local = str(tok).split(":", 1)
        return prefixes[prefix] + local.replace("\\", "")
    if tok.kind == "word" and tok == "a":
        return RDF_TYPE
    raise _Anything()


def _reads_triples(tokens, prefixes, keys):
    """Read the triples block grammar (subject, verb-object lists, blank node property lists,
    collections) for the predicates in verb position."""
    n = len(tokens)

    def tok(i):
        if i >= n:
            raise _Anything()
        return tokens[i]

    def term(i):
        t = tok(i)
        if t == "[" and t.kind == "punct":
            if tok(i + 1) == "]":
                return i + 2, False
            j = verb_objects(i + 1)
            if tok(j) != "]":
                raise _Anything()
            return j + 1, False
        if t == "(" and t.kind == "punct":
            keys.update((_RDF_FIRST, _RDF_REST))
            j = i + 1
            while tok(j) != ")":
                j, _ = term(j)
            return j + 1, False
        if t.kind in ("var", "bnode"):
            return i + 1, False
        if t.kind in ("iri", "pname"):
            return i + 1, True
        if t.kind in ("string", "number") or (t.kind == "word" and str.lower(t) in ("true", "false")):
            j = i + 1
            if j < n and tokens[j].kind == "lang":
                j += 1
            elif j < n and tokens[j] == "^^":
                j += 2
            return j, False
        raise _Anything()

    def path(i, found):
        while True:
            t = tok(i)
            if t == "^":
                i += 1
                t = tok(i)
            if t == "!":
                raise _Anything()
            if t == "(" and t.kind == "punct":
                i = path(i + 1, found)
                if tok(i) != ")":
                    raise _Anything()
                i += 1
            else:
                found.append(_iri(t, prefixes))
                i += 1
            if i < n and tokens[i].kind == "punct" and tokens[i] in ("*", "?"):
                raise _Anything()
            if i < n and tokens[i].kind == "punct" and tokens[i] == "+":
                i += 1
            if i < n and tokens[i].kind == "punct" and tokens[i] in ("/", "|"):
                i += 1
                continue
            return i

    def verb_objects(i):
        while True:
            t = tok(i)
            if t.kind == "var":
                raise _Anything()
            found = []
            start = i
            i = path(i, found)
            simple_type = i == start + 1 and found == [RDF_TYPE]
            while True:
                j, constant = term(i)
                if simple_type and constant:
                    keys.add(("type", _iri(tokens[i], prefixes)))
                elif found:
                    keys.update(found)
                i = j
                if i < n and tokens[i] == ",":
                    i += 1
                    continue
                break
            if not simple_type:
                keys.update(found)
            while i < n and tokens[i] == ";":
                i += 1
            if i >= n or tokens[i] in (".", "]"):
                return i
            if tokens[i - 1] != ";":
                raise _Anything()

    i = 0
    while i < n:
        if tokens[i] == ".":
            i += 1
            continue
        bracketed = tokens[i] in ("[", "(") and tokens[i].kind == "punct"
        i, _ = term(i)
        if bracketed and (i >= n or tokens[i] in (".",)):
            continue  # a blank node property list alone is a statement
        i = verb_objects(i)
