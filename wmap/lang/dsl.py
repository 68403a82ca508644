"""The custom syntax (`.wmap`) -> Spec AST: the lark tree builder and the two entry points.

A file parses in one pass. When it has errors, each logical line is parsed on its own so that
one run reports every syntax error (`syntax_errors.py`); comments are attached to statements
afterwards (`comments.py`).
"""

from __future__ import annotations

import math
import re
from typing import Union, cast

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, WmapError
from wmap.lang.comments import attach_comments, scan_comments
from wmap.lang.grammar import parser
from wmap.lang.larkrt import Meta, Token, Transformer, Tree, UnexpectedInput, VisitError, v_args
from wmap.lang.spec import (
    Ack,
    BinOp,
    Call,
    ConfigDecl,
    Expr,
    Fn,
    Init,
    Key,
    Let,
    LrScale,
    Name,
    Neg,
    Num,
    Option,
    PatternStmt,
    Ref,
    Rule,
    SourceDecl,
    Spec,
    TargetDecl,
    Text,
    Use,
    Value,
)
from wmap.lang.statements import Statement, StatementList, VersionLine
from wmap.lang.syntax_errors import call_diag, collect_line_errors, syntax_diag
from wmap.lang.validate import assemble

# What a rule of the builder hands to the rule above it: AST pieces, tokens, and the small
# intermediate values (a pattern with its span, a chain, a keyword argument) that only the builder sees.
Node = Union[Statement, StatementList, Call, Expr, Value, Token, "_Kwarg", "Patterns", list[Call], None]
Patterns = list[tuple[str, Span]]


def parse_wmap(text: str, path: str | None = None, *, names: bool = False) -> Spec:
    """Parse `.wmap` text into a validated Spec; raises WmapError with every problem found.

    With `names`, transform and initialiser names are resolved in the same run, so one
    report lists structural and name errors together.
    """
    bag = DiagnosticBag(sources={path or "<spec>": text})
    _check_chain_lengths(text, path, bag)
    try:
        tree = parser().parse(text, start="file", on_error=None)
    except UnexpectedInput as e:
        collect_line_errors(text, path, bag, getattr(e, "line", 1) or 1)
        if not bag.has_errors:  # the file fails as a whole but no single statement does
            bag.items.append(syntax_diag(e, text, path))
        bag.raise_if_errors()
        raise AssertionError("unreachable") from None
    _check_nesting(tree, path, None, bag.sources)
    builder = _Builder(path, text=text)
    statements = cast("list[Statement]", _build(builder, tree, bag.sources))  # the `file` rule's value
    attached, trailing = attach_comments(statements, scan_comments(text))
    return assemble(attached, trailing, path, text, bag, names=names, part_spans=builder.part_spans)


_PIPE = re.compile(r"\|\s*[A-Za-z_]")


def _check_chain_lengths(text: str, path: str | None, bag: DiagnosticBag) -> None:
    """WM124 for a chain of more transforms than a rule may have, before the parser spends a
    minute on 200k `| identity` (the parse is linear, but slow per token). A chain is one line
    and the lines continuing it (starting with `|`, with blank and comment lines between);
    a `|` in a comment counts too, which matters only past 256 of them."""
    from wmap.lang.validate import MAX_CHAIN
    run, start = 0, 1
    for k, line in enumerate(text.splitlines(), 1):
        body = line.lstrip()
        pipes = len(_PIPE.findall(line)) if "|" in line else 0
        if body.startswith("|") or not body or body.startswith("#"):
            run += pipes
        else:
            run, start = pipes, k
        if run > MAX_CHAIN:
            bag.add("WM124", f"the rule at line {start} chains more than {MAX_CHAIN} transforms",
                    Span(path, start, 1, start, 1), "a preset or `layout(...)` does in one step what a long "
                    "chain spells out; split the rule if it really needs more")
            bag.raise_if_errors()


def parse_call(text: str, span: Span) -> Call:
    """Parse one transform/initialiser call, e.g. YAML `via: 'split(0)'`. Spans are relative to `span`."""
    try:
        tree = parser().parse(text, start="call")
    except UnexpectedInput as e:
        raise WmapError([call_diag(e, text, span)]) from None
    _check_nesting(tree, span.path, span)
    return cast(Call, _build(_Builder(span.path, base=span), tree))  # the `call` rule's value


def parse_expr(text: str, span: Span) -> Expr:
    """Parse one `let` expression, e.g. YAML `let: {heads: config.num_attention_heads}`."""
    try:
        tree = parser().parse(text, start="expr")
    except UnexpectedInput as e:
        raise WmapError([call_diag(e, text, span, what="expression")]) from None
    _check_nesting(tree, span.path, span)
    return cast(Expr, _build(_Builder(span.path, base=span), tree))  # the `expr` rule's value


def _build(builder: _Builder, tree: Tree[Token], sources: dict[str, str] | None = None) -> Node:
    """Run the builder; a WmapError it raised inside lark comes out as itself, with the spec's text."""
    try:
        return builder.transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, WmapError):
            raise WmapError(e.orig_exc.diagnostics, sources or e.orig_exc.sources) from None
        raise


MAX_NESTING = 32  # lists inside lists in a call's arguments; real specs need one or two levels
MAX_EXPR_DEPTH = 64  # operations inside operations in a `let`; `a + b + c` is already two deep
_EXPR_NODES = frozenset({"default", "add", "sub", "mul", "div", "floordiv", "mod", "neg", "fn"})


def _check_nesting(tree: Tree[Token], path: str | None, base: Span | None,
                   sources: dict[str, str] | None = None) -> None:
    """Refuse lists nested past MAX_NESTING and expressions past MAX_EXPR_DEPTH (WM116) before the
    recursive tree builder meets them: a hostile `[[[[...]]]]` or `1+1+1+...` would otherwise
    exhaust Python's stack."""
    stack: list[tuple[Tree[Token], int, int]] = [(tree, 0, 0)]
    while stack:
        node, depth, ops = stack.pop()
        if node.data == "list":
            depth += 1
        elif node.data in _EXPR_NODES:
            ops += 1
        if depth > MAX_NESTING or ops > MAX_EXPR_DEPTH:
            line, col = (1, 1) if node.meta.empty else (node.meta.line, node.meta.column)
            span = Span(path, line, col) if base is None else Span(path, base.line, base.column + col - 1)
            if depth > MAX_NESTING:
                what, hint = (f"lists more than {MAX_NESTING} levels deep",
                              "transform parameters are numbers, strings and short lists")
            else:
                what, hint = (f"an expression more than {MAX_EXPR_DEPTH} operations deep",
                              "a `let` computes a size from a few config values")
            raise WmapError([Diagnostic("WM116", "error", f"a value is nested too deeply ({what})", span, hint)],
                            sources)
        stack.extend((c, depth, ops) for c in node.children if isinstance(c, Tree))


class _Builder(Transformer[Token, Node]):
    """Lark tree -> AST nodes, each with its span."""

    def __init__(self, path: str | None, base: Span | None = None, text: str | None = None):
        super().__init__()
        self.path = path
        self.base = base
        self.lines = text.split("\n") if text is not None else []
        # a statement's span -> its parts' spans (rule: patterns then template; option: name, value)
        self.part_spans: dict[Span, tuple[Span, ...]] = {}

    def _span(self, meta: Meta) -> Span:
        if meta.empty:
            return Span(self.path, 0, 0)
        if self.base is not None:  # a call parsed out of a YAML string
            return Span(self.path, self.base.line, self.base.column + meta.column - 1,
                        self.base.line, self.base.column + meta.end_column - 1)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.path, tok.line or 0, tok.column or 0, tok.end_line, tok.end_column)

    @v_args(meta=True)
    def file(self, meta: Meta, items: list[Statement | None]) -> list[Statement]:
        return [i for i in items if i is not None]

    @v_args(meta=True)
    def version(self, meta: Meta, items: list[Token]) -> VersionLine:
        return VersionLine(int(items[0]), self._span(meta))

    @v_args(meta=True)
    def use(self, meta: Meta, items: tuple[Token, list[Call]]) -> Use:
        return Use(_unquote(items[0]), tuple(items[1]), self._span(meta))

    @v_args(meta=True)
    def source(self, meta: Meta, items: list[Token | None]) -> SourceDecl:
        names = [t for t in items if t is not None and t.type == "NAME"]
        words = [str(t) for t in names]
        loc = next((_unquote(t) for t in items if t is not None and t.type == "STRING"), "")
        span = self._span(meta)
        from wmap.core.frameworks import FRAMEWORKS
        from wmap.lang.spec import DEFAULT_SOURCE
        if names:
            self.part_spans[span] = (self._tok_span(names[-1]),)  # where the framework is written
        if len(words) == 2:
            return SourceDecl(words[0], loc, words[1], span)
        if len(words) == 1:
            if words[0] in FRAMEWORKS:
                return SourceDecl(DEFAULT_SOURCE, loc, words[0], span)
            return SourceDecl(words[0], loc, None, span)
        return SourceDecl(DEFAULT_SOURCE, loc, None, span)

    @v_args(meta=True)
    def target(self, meta: Meta, items: list[Token | None]) -> TargetDecl:
        names = [t for t in items if t is not None and t.type == "NAME"]
        loc = next((_unquote(t) for t in items if t is not None and t.type == "STRING"), "")
        span = self._span(meta)
        if names:
            self.part_spans[span] = (self._tok_span(names[0]),)  # where the framework is written
        return TargetDecl(loc, str(names[0]) if names else None, span)

    @v_args(meta=True)
    def option(self, meta: Meta, items: tuple[Token, Value]) -> Option:
        span = self._span(meta)
        name = self._tok_span(items[0])
        line = self.lines[name.line - 1] if 0 < name.line <= len(self.lines) else ""
        eq = line.find("=", (name.end_column or name.column) - 1)
        if eq >= 0 and span.end_line == name.line:
            start = eq + 1 + len(line[eq + 1:]) - len(line[eq + 1:].lstrip())
            self.part_spans[span] = (name, Span(self.path, name.line, start + 1, name.line, span.end_column))
        return Option(str(items[0]), items[1], span)

    @v_args(meta=True)
    def rule(self, meta: Meta, items: tuple[Token | None, Patterns, tuple[str, Span], list[Call]]) -> Rule:
        optional, sources, target, chain = items
        span = self._span(meta)
        self.part_spans[span] = tuple(s for _, s in sources) + (target[1],)
        return Rule(tuple(p for p, _ in sources), target[0], tuple(chain), optional is not None, span)

    def chain(self, items: list[Call]) -> list[Call]:
        return items

    def patterns(self, items: list[tuple[str, Span]]) -> list[tuple[str, Span]]:
        return items

    def pattern(self, items: list[Token]) -> tuple[str, Span]:
        tok = items[0]
        span = self._tok_span(tok)
        if tok.type == "STRING":  # point inside the quotes, where pattern offsets count from
            span = Span(span.path, span.line, span.column + 1, span.end_line,
                        (span.end_column or span.column + 2) - 1)
            return (_unquote(tok), span)
        return (str(tok), span)

    def drop(self, items: tuple[Patterns]) -> StatementList:
        return StatementList("drop", tuple(PatternStmt(p, s) for p, s in items[0]))

    def keep(self, items: tuple[Patterns]) -> StatementList:
        return StatementList("keep", tuple(PatternStmt(p, s) for p, s in items[0]))

    def freeze(self, items: tuple[Patterns]) -> StatementList:
        return StatementList("freeze", tuple(PatternStmt(p, s) for p, s in items[0]))

    def init(self, items: tuple[Patterns, Call]) -> StatementList:
        pats, call = items
        return StatementList("init", tuple(Init(p, call, s) for p, s in pats))

    def lr(self, items: tuple[Patterns, Token]) -> StatementList:
        pats, factor = items
        try:
            value = float(factor)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise WmapError([Diagnostic("WM106", "error", "the lr multiplier is too large", pats[0][1],
                                        "use a factor such as `10` or `0.1`")])
        return StatementList("lr", tuple(LrScale(p, value, s) for p, s in pats))

    def ack(self, items: tuple[Token, Patterns]) -> StatementList:
        code, pats = items
        return StatementList("ack", tuple(Ack(str(code), p, s) for p, s in pats))

    @v_args(meta=True)
    def call(self, meta: Meta, items: list[Token | Value | _Kwarg]) -> Call:
        name = str(items[0])
        args: list[Value] = []
        kwargs: list[tuple[str, Value]] = []
        for a in items[1:]:
            if isinstance(a, _Kwarg):
                kwargs.append((a.key, a.value))
            else:
                args.append(a)
        return Call(name, tuple(args), tuple(kwargs), self._span(meta))

    def kwarg(self, items: tuple[str, Value]) -> _Kwarg:
        return _Kwarg(str(items[0]), items[1])

    def kwkey(self, items: list[Token]) -> str:
        return str(items[0])

    def string(self, items: list[Token]) -> str:
        return _unquote(items[0])

    def ref(self, items: list[Token]) -> Ref:
        return Ref(str(items[0])[1:], self._at(items[0]))

    # -- config and let --------------------------------------------------------------------

    def _at(self, tok: Token) -> Span:
        """A token's span, inside a YAML string too."""
        if self.base is not None:
            col = self.base.column + (tok.column or 1) - 1
            return Span(self.path, self.base.line, col, self.base.line, col + len(tok))
        return self._tok_span(tok)

    @v_args(meta=True)
    def config(self, meta: Meta, items: list[Token]) -> ConfigDecl:
        tok = items[0]
        if tok.type == "STRING":
            return ConfigDecl(path=_unquote(tok), span=self._span(meta))
        return ConfigDecl(endpoint=str(tok), span=self._span(meta))

    @v_args(meta=True)
    def let(self, meta: Meta, items: tuple[Token, Expr]) -> Let:
        return Let(str(items[0]), items[1], self._span(meta))

    def num_int(self, items: list[Token]) -> Num:
        return Num(self.int(items))

    def num_float(self, items: list[Token]) -> Num:
        return Num(self.float(items))

    def text(self, items: list[Token]) -> Text:
        return Text(_unquote(items[0]))

    def key(self, items: list[Token]) -> Key:
        return Key(tuple(str(items[0]).split(".")[1:]), self._at(items[0]))

    def name(self, items: list[Token]) -> Name:
        return Name(str(items[0]), self._at(items[0]))

    @v_args(meta=True)
    def fn(self, meta: Meta, items: list[Token | Expr]) -> Fn:
        name, *args = items
        return Fn(str(name), tuple(a for a in args if not isinstance(a, Token)), self._span(meta))

    def neg(self, items: list[Expr]) -> Expr:
        inner = items[0]
        if isinstance(inner, Num):  # `-1` is a number, not an operation
            return Num(-inner.value)
        return Neg(inner)

    def _binop(self, op: str, meta: Meta, items: list[Expr]) -> BinOp:
        return BinOp(op, items[0], items[1], self._span(meta))

    @v_args(meta=True)
    def default(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("??", meta, items)

    @v_args(meta=True)
    def add(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("+", meta, items)

    @v_args(meta=True)
    def sub(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("-", meta, items)

    @v_args(meta=True)
    def mul(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("*", meta, items)

    @v_args(meta=True)
    def div(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("/", meta, items)

    @v_args(meta=True)
    def floordiv(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("//", meta, items)

    @v_args(meta=True)
    def mod(self, meta: Meta, items: list[Expr]) -> BinOp:
        return self._binop("%", meta, items)

    def word(self, items: list[Token]) -> str:
        return str(items[0])

    def int(self, items: list[Token]) -> int:
        try:
            return int(items[0])
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise self._number_error(items[0]) from None

    def float(self, items: list[Token]) -> float:
        value = float(items[0])
        if not math.isfinite(value):
            raise self._number_error(items[0])
        return value

    def _number_error(self, tok: Token) -> WmapError:
        span = self._tok_span(tok)
        if self.base is not None:
            col = self.base.column + (tok.column or 1) - 1
            span = Span(self.path, self.base.line, col, self.base.line, col + len(tok))
        text = str(tok) if len(tok) <= 20 else str(tok)[:17] + "..."
        return WmapError([Diagnostic("WM100", "error", f"the number `{text}` is too large", span,
                                     "numbers in a spec are ordinary integers and floats")])

    def true(self, _: list[Token]) -> bool:
        return True

    def false(self, _: list[Token]) -> bool:
        return False

    def null(self, _: list[Token]) -> None:
        return None

    def list(self, items: list[Value]) -> tuple[Value, ...]:
        return tuple(items)


class _Kwarg:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Value):
        self.key = key
        self.value = value


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unquote(tok: Token | str) -> str:
    s = str(tok)
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
