"""The custom syntax (`.wmap`) -> Spec AST, via the lark grammar.

A file parses in one pass. When it has errors, each logical line is parsed on its own
so that one run reports every syntax error, not only the first.
"""

from __future__ import annotations

import re
from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from wmap.errors import DiagnosticBag, Span, WmapError, did_you_mean
from wmap.parse.grammar import KEYWORDS, parser
from wmap.parse.validate import assemble
from wmap.spec import Call, Init, LrScale, Option, PatternStmt, Rule, SourceDecl, Spec, TargetDecl, Value

Node = Any


def parse_wmap(text: str, path: str | None = None) -> Spec:
    """Parse `.wmap` text into a validated Spec; raises WmapError with every problem found."""
    bag = DiagnosticBag(sources={path or "<spec>": text})
    comments: list[Token] = []
    try:
        tree = parser().parse(text, start="file", on_error=None)
    except UnexpectedInput:
        _collect_line_errors(text, path, bag)
        bag.raise_if_errors()
        raise  # unreachable: a file-level error always reproduces on some line
    for tok in _comment_tokens(text):
        comments.append(tok)
    try:
        statements = _Builder(path).transform(tree)
    except VisitError as e:
        orig = e.orig_exc
        if isinstance(orig, WmapError):
            raise WmapError(orig.diagnostics, bag.sources) from None
        raise
    attached, trailing = _attach_comments(statements, comments)
    return assemble(attached, trailing, path, text, bag)


def parse_call(text: str, span: Span) -> Call:
    """Parse one transform/initialiser call, e.g. YAML `via: 'split(0)'`. Spans are relative to `span`."""
    try:
        tree = parser().parse(text, start="call")
    except UnexpectedInput as e:
        col = span.column + max(getattr(e, "column", 1) - 1, 0)
        raise WmapError([_syntax_diag(e, text, Span(span.path, span.line, col))]) from None
    call: Call = _Builder(span.path, base=span).transform(tree)
    return call


# ---------------------------------------------------------------------------------------------


class _Builder(Transformer[Token, Node]):
    """Lark tree -> AST nodes, each with its span."""

    def __init__(self, path: str | None, base: Span | None = None):
        super().__init__()
        self.path = path
        self.base = base

    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.path, 0, 0)
        if self.base is not None:  # a call parsed out of a YAML string
            return Span(self.path, self.base.line, self.base.column + meta.column - 1,
                        self.base.line, self.base.column + meta.end_column - 1)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.path, tok.line or 0, tok.column or 0, tok.end_line, tok.end_column)

    @v_args(meta=True)
    def file(self, meta: Any, items: list[Node]) -> list[Node]:
        return [i for i in items if i is not None]

    @v_args(meta=True)
    def version(self, meta: Any, items: list[Token]) -> tuple[str, int, Span]:
        return ("version", int(items[0]), self._span(meta))

    @v_args(meta=True)
    def source(self, meta: Any, items: list[Token | None]) -> SourceDecl:
        words = [str(t) for t in items if t is not None and t.type == "NAME"]
        loc = _unquote(next(t for t in items if t is not None and t.type == "STRING"))
        span = self._span(meta)
        from wmap.spec import DEFAULT_SOURCE, FRAMEWORKS
        if len(words) == 2:
            return SourceDecl(words[0], loc, words[1], span)
        if len(words) == 1:
            if words[0] in FRAMEWORKS:
                return SourceDecl(DEFAULT_SOURCE, loc, words[0], span)
            return SourceDecl(words[0], loc, None, span)
        return SourceDecl(DEFAULT_SOURCE, loc, None, span)

    @v_args(meta=True)
    def target(self, meta: Any, items: list[Token | None]) -> TargetDecl:
        words = [str(t) for t in items if t is not None and t.type == "NAME"]
        loc = _unquote(next(t for t in items if t is not None and t.type == "STRING"))
        return TargetDecl(loc, words[0] if words else None, self._span(meta))

    @v_args(meta=True)
    def option(self, meta: Any, items: list[Any]) -> Option:
        return Option(str(items[0]), items[1], self._span(meta))

    @v_args(meta=True)
    def rule(self, meta: Any, items: list[Any]) -> Rule:
        optional, sources, target, chain = items
        return Rule(tuple(p for p, _ in sources), target[0], tuple(chain), optional is not None,
                    self._span(meta))

    def chain(self, items: list[Call]) -> list[Call]:
        return items

    def patterns(self, items: list[tuple[str, Span]]) -> list[tuple[str, Span]]:
        return items

    def pattern(self, items: list[Token]) -> tuple[str, Span]:
        tok = items[0]
        text = _unquote(tok) if tok.type == "STRING" else str(tok)
        return (text, self._tok_span(tok))

    def _pattern_list(self, kind: str, items: list[Any]) -> tuple[str, list[PatternStmt]]:
        return (kind, [PatternStmt(p, s) for p, s in items[0]])

    def drop(self, items: list[Any]) -> tuple[str, list[PatternStmt]]:
        return self._pattern_list("drop", items)

    def keep(self, items: list[Any]) -> tuple[str, list[PatternStmt]]:
        return self._pattern_list("keep", items)

    def freeze(self, items: list[Any]) -> tuple[str, list[PatternStmt]]:
        return self._pattern_list("freeze", items)

    def init(self, items: list[Any]) -> tuple[str, list[Init]]:
        pats, call = items
        return ("init", [Init(p, call, s) for p, s in pats])

    def lr(self, items: list[Any]) -> tuple[str, list[LrScale]]:
        pats, factor = items
        return ("lr", [LrScale(p, float(factor), s) for p, s in pats])

    @v_args(meta=True)
    def call(self, meta: Any, items: list[Any]) -> Call:
        name = str(items[0])
        args: list[Value] = []
        kwargs: list[tuple[str, Value]] = []
        for a in items[1:]:
            if a is None:
                continue
            if isinstance(a, _Kwarg):
                kwargs.append((a.key, a.value))
            else:
                args.append(a)
        return Call(name, tuple(args), tuple(kwargs), self._span(meta))

    def kwarg(self, items: list[Any]) -> _Kwarg:
        return _Kwarg(str(items[0]), items[1])

    def string(self, items: list[Token]) -> str:
        return _unquote(items[0])

    def word(self, items: list[Token]) -> str:
        return str(items[0])

    def int(self, items: list[Token]) -> int:
        return int(items[0])

    def float(self, items: list[Token]) -> float:
        return float(items[0])

    def true(self, _: list[Any]) -> bool:
        return True

    def false(self, _: list[Any]) -> bool:
        return False

    def null(self, _: list[Any]) -> None:
        return None

    def list(self, items: list[Any]) -> tuple[Value, ...]:
        return tuple(i for i in items if i is not None) if items != [None] else ()


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


# ---------------------------------------------------------------------------------------------
# Comments: leading comment lines attach to the next statement; a same-line comment trails.


def _comment_tokens(text: str) -> list[Token]:
    toks = []
    for tok in parser().lex(text, dont_ignore=True):
        if tok.type == "COMMENT":
            toks.append(tok)
    return toks


def _stmt_line(node: Node) -> tuple[int, int]:
    if isinstance(node, tuple):
        if node[0] == "version":
            return node[2].line, node[2].end_line or node[2].line
        first = node[1][0]
        return first.span.line, (first.span.end_line or first.span.line)
    return node.span.line, (node.span.end_line or node.span.line)


def _attach_comments(statements: list[Node], comments: list[Token]) -> tuple[list[tuple[Node, list[str]]], list[str]]:
    by_line: dict[int, str] = {int(c.line or 0): str(c) for c in comments}
    out: list[tuple[Node, list[str]]] = []
    used: set[int] = set()
    prev_end = 0
    for st in statements:
        start, end = _stmt_line(st)
        lead = [by_line[ln] for ln in sorted(by_line) if prev_end < ln < start]
        used.update(ln for ln in by_line if prev_end < ln < start)
        trail = [by_line[ln] for ln in range(start, end + 1) if ln in by_line]
        used.update(ln for ln in range(start, end + 1) if ln in by_line)
        out.append((st, lead + [" " + t for t in trail]))  # a leading space marks "same line"
        prev_end = end
    trailing = [by_line[ln] for ln in sorted(by_line) if ln not in used]
    return out, trailing


# ---------------------------------------------------------------------------------------------
# Syntax errors, one per logical line


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(0-based start offset, text) of each statement, joining `|` continuation lines."""
    out: list[tuple[int, str]] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("|") and out:
            start, body = out[-1]
            out[-1] = (start, body + line)
        else:
            out.append((offset, line))
        offset += len(line)
    return out


def _collect_line_errors(text: str, path: str | None, bag: DiagnosticBag) -> None:
    for start, chunk in _logical_lines(text):
        if not chunk.strip() or chunk.lstrip().startswith("#"):
            continue
        line_no = text.count("\n", 0, start) + 1
        padded = "\n" * (line_no - 1) + chunk.rstrip("\r\n")
        try:
            parser().parse(padded, start="file")
        except UnexpectedInput as e:
            bag.items.append(_syntax_diag(e, padded, None, path))


def _syntax_diag(e: UnexpectedInput, text: str, span: Span | None, path: str | None = None):  # type: ignore[no-untyped-def]
    from wmap.errors import Diagnostic

    line = getattr(e, "line", 1) or 1
    col = getattr(e, "column", 1) or 1
    if span is None:
        span = Span(path, line, col, line, col + 1)
    src_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    if isinstance(e, UnexpectedCharacters):
        ch = src_line[col - 1:col] if col - 1 < len(src_line) else ""
        if ch in "\"'":
            return Diagnostic("WM114", "error", "unterminated string", span, "close the string on the same line")
        return Diagnostic("WM100", "error", f"unexpected character `{ch}`", span,
                          "patterns use letters, digits, `_ - / . *` and `{...}`; quote other names")
    if isinstance(e, UnexpectedToken):
        tok = e.token
        first_word = src_line.strip().split(" ")[0] if src_line.strip() else ""
        expected = {str(x) for x in e.expected}
        if tok.type == "$END":
            return Diagnostic("WM100", "error", "the statement ends too early: " + _expected(expected),
                              Span(span.path, span.line, len(src_line) + 1), _end_hint(src_line))
        second = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(\s+)\S", src_line)
        at_second = bool(second) and col == second.end()  # type: ignore[union-attr]
        if at_second and first_word not in KEYWORDS and "->" not in src_line:
            hint = did_you_mean(first_word, KEYWORDS) or \
                "a statement starts with a keyword (source, target, option, drop, init, keep, freeze, lr) " \
                "or is a rule `SOURCE -> TARGET`"
            start = src_line.index(first_word) + 1
            return Diagnostic("WM101", "error", f"unknown statement `{first_word}`",
                              Span(span.path, span.line, start, span.line, start + len(first_word)), hint)
        shown = str(tok.value).replace("\n", "\\n") or tok.type
        return Diagnostic("WM100", "error", f"unexpected `{shown}`: {_expected(expected)}", span,
                          _token_hint(str(tok.value), expected, src_line))
    if isinstance(e, UnexpectedEOF):
        return Diagnostic("WM100", "error", "unexpected end of file", span, None)
    return Diagnostic("WM100", "error", str(e).splitlines()[0], span, None)


_TERMINAL_NAMES = {
    "PATTERN": "a pattern", "STRING": "a quoted string", "NAME": "a name", "__ANON_0": "`->`",
    "MINUS": "`-`", "VBAR": "`|`", "COMMA": "`,`", "EQUAL": "`=`", "STAR": "`*`", "LPAR": "`(`",
    "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "SIGNED_INT": "a number", "SIGNED_FLOAT": "a number",
    "INT": "a whole number", "_NL": "a new line", "$END": "end of line",
}


def _expected(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(x, f"`{x.lower()}`") for x in expected if not x.startswith("__ANON") or x in _TERMINAL_NAMES})
    if any(x.startswith("__ANON") for x in expected) and "`->`" not in names:
        names.append("`->`")
    if not names:
        return "this does not fit here"
    if len(names) > 6:
        return "this does not fit here"
    return "expected " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def _token_hint(value: str, expected: set[str], line: str) -> str | None:
    if "->" not in line and any(x.startswith("__ANON") for x in expected):
        return "a rule reads `SOURCE -> TARGET | transform ...`"
    if value == "=" and "STAR" in expected:
        return "an lr multiplier reads `lr PATTERN * FACTOR`"
    if value.startswith("(") or "LPAR" in expected:
        return "a transform call reads `name(arg, key=value)`"
    return None


def _end_hint(line: str) -> str | None:
    s = line.strip()
    if s.startswith("source") or s.startswith("target"):
        return f'give the location in quotes: `{s.split()[0]} torch "model.safetensors"`'
    if s.startswith("option"):
        return "options read `option NAME = VALUE`"
    if s.endswith("->"):
        return "a rule needs a target after `->`"
    if s.endswith("|"):
        return "a `|` needs a transform after it"
    return None


def tree_is(node: object, name: str) -> bool:
    return isinstance(node, Tree) and node.data == name
