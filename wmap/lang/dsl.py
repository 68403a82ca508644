"""The custom syntax (`.wmap`) -> Spec AST, via the lark grammar.

A file parses in one pass. When it has errors, each logical line is parsed on its own
so that one run reports every syntax error, not only the first.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, WmapError, did_you_mean
from wmap.lang.grammar import KEYWORDS, parser
from wmap.lang.spec import Call, Init, LrScale, Option, PatternStmt, Rule, SourceDecl, Spec, TargetDecl, Value
from wmap.lang.validate import assemble

Node = Any


def parse_wmap(text: str, path: str | None = None, *, names: bool = False) -> Spec:
    """Parse `.wmap` text into a validated Spec; raises WmapError with every problem found.

    With `names`, transform and initialiser names are resolved in the same run, so one
    report lists structural and name errors together.
    """
    bag = DiagnosticBag(sources={path or "<spec>": text})
    try:
        tree = parser().parse(text, start="file", on_error=None)
    except UnexpectedInput as e:
        _collect_line_errors(text, path, bag, getattr(e, "line", 1) or 1)
        if not bag.has_errors:  # the file fails as a whole but no single statement does
            bag.items.append(_syntax_diag(e, text, path))
        bag.raise_if_errors()
        raise AssertionError("unreachable") from None
    _check_nesting(tree, path, None, bag.sources)
    builder = _Builder(path, text=text)
    try:
        statements = builder.transform(tree)
    except VisitError as e:
        orig = e.orig_exc
        if isinstance(orig, WmapError):
            raise WmapError(orig.diagnostics, bag.sources) from None
        raise
    attached, trailing = _attach_comments(statements, scan_comments(text))
    return assemble(attached, trailing, path, text, bag, names=names, part_spans=builder.part_spans)


def parse_call(text: str, span: Span) -> Call:
    """Parse one transform/initialiser call, e.g. YAML `via: 'split(0)'`. Spans are relative to `span`."""
    try:
        tree = parser().parse(text, start="call")
    except UnexpectedInput as e:
        raise WmapError([_call_diag(e, text, span)]) from None
    _check_nesting(tree, span.path, span)
    try:
        call: Call = _Builder(span.path, base=span).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, WmapError):
            raise e.orig_exc from None
        raise
    return call


MAX_NESTING = 32  # lists inside lists in a call's arguments; real specs need one or two levels


def _check_nesting(tree: Tree[Token], path: str | None, base: Span | None,
                   sources: dict[str, str] | None = None) -> None:
    """Refuse lists nested past MAX_NESTING (WM116) before the recursive tree builder meets them:
    a hostile `[[[[...]]]]` would otherwise exhaust Python's stack."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data == "list":
            depth += 1
            if depth > MAX_NESTING:
                line, col = (1, 1) if node.meta.empty else (node.meta.line, node.meta.column)
                span = Span(path, line, col) if base is None else Span(path, base.line, base.column + col - 1)
                raise WmapError([Diagnostic("WM116", "error", f"a value is nested too deeply (lists more than "
                                            f"{MAX_NESTING} levels deep)", span,
                                            "transform parameters are numbers, strings and short lists")], sources)
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))


# ---------------------------------------------------------------------------------------------


class _Builder(Transformer[Token, Node]):
    """Lark tree -> AST nodes, each with its span."""

    def __init__(self, path: str | None, base: Span | None = None, text: str | None = None):
        super().__init__()
        self.path = path
        self.base = base
        self.lines = text.split("\n") if text is not None else []
        # a statement's span -> its parts' spans (rule: patterns then template; option: name, value)
        self.part_spans: dict[Span, tuple[Span, ...]] = {}

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
        names = [t for t in items if t is not None and t.type == "NAME"]
        words = [str(t) for t in names]
        loc = _unquote(next(t for t in items if t is not None and t.type == "STRING"))
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
    def target(self, meta: Any, items: list[Token | None]) -> TargetDecl:
        names = [t for t in items if t is not None and t.type == "NAME"]
        loc = _unquote(next(t for t in items if t is not None and t.type == "STRING"))
        span = self._span(meta)
        if names:
            self.part_spans[span] = (self._tok_span(names[0]),)  # where the framework is written
        return TargetDecl(loc, str(names[0]) if names else None, span)

    @v_args(meta=True)
    def option(self, meta: Any, items: list[Any]) -> Option:
        span = self._span(meta)
        name = self._tok_span(items[0])
        line = self.lines[name.line - 1] if 0 < name.line <= len(self.lines) else ""
        eq = line.find("=", (name.end_column or name.column) - 1)
        if eq >= 0 and span.end_line == name.line:
            start = eq + 1 + len(line[eq + 1:]) - len(line[eq + 1:].lstrip())
            self.part_spans[span] = (name, Span(self.path, name.line, start + 1, name.line, span.end_column))
        return Option(str(items[0]), items[1], span)

    @v_args(meta=True)
    def rule(self, meta: Any, items: list[Any]) -> Rule:
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
        try:
            value = float(factor)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise WmapError([Diagnostic("WM106", "error", "the lr multiplier is too large", pats[0][1],
                                        "use a factor such as `10` or `0.1`")])
        return ("lr", [LrScale(p, value, s) for p, s in pats])

    @v_args(meta=True)
    def call(self, meta: Any, items: list[Any]) -> Call:
        name = str(items[0])
        args: list[Value] = []
        kwargs: list[tuple[str, Value]] = []
        for a in items[1:]:
            if isinstance(a, _Kwarg):
                kwargs.append((a.key, a.value))
            else:
                args.append(a)
        return Call(name, tuple(args), tuple(kwargs), self._span(meta))

    def kwarg(self, items: list[Any]) -> _Kwarg:
        return _Kwarg(str(items[0]), items[1])

    def kwkey(self, items: list[Token]) -> str:
        return str(items[0])

    def string(self, items: list[Token]) -> str:
        return _unquote(items[0])

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

    def true(self, _: list[Any]) -> bool:
        return True

    def false(self, _: list[Any]) -> bool:
        return False

    def null(self, _: list[Any]) -> None:
        return None

    def list(self, items: list[Any]) -> tuple[Value, ...]:
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


# ---------------------------------------------------------------------------------------------
# Comments: leading comment lines attach to the next statement; a same-line comment trails.
# Comments before `wmap 1` or on its line lead the first statement after it (the AST has no
# place for them on the version line), so they survive formatting.


def scan_comments(text: str) -> dict[int, tuple[str, bool]]:
    """line -> (comment text, whether code precedes it on that line). `#` inside strings is text."""
    out: dict[int, tuple[str, bool]] = {}
    for n, line in enumerate(text.split("\n"), start=1):
        if "#" not in line:
            continue
        k = _comment_start(line)
        if k is not None:
            code = line[:k].strip()
            out[n] = (line[k:].rstrip("\r"), bool(code) and code != "\\")
    return out


def _comment_start(line: str) -> int | None:
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return None


def _stmt_lines(node: Node) -> tuple[int, int]:
    if isinstance(node, tuple):
        if node[0] == "version":
            span = node[2]
        else:
            first, last = node[1][0].span, node[1][-1].span
            return first.line, (last.end_line or last.line)
    else:
        span = node.span
    return span.line, (span.end_line or span.line)


def _attach_comments(statements: list[Node], comments: dict[int, tuple[str, bool]]
                     ) -> tuple[list[tuple[Node, list[str]]], list[str]]:
    lines = sorted(comments)
    out: list[tuple[Node, list[str]]] = []
    k = 0
    carried: list[str] = []  # comments of the version line, handed to the next statement
    for st in statements:
        start, end = _stmt_lines(st)
        lead: list[str] = []
        trail: list[str] = []
        while k < len(lines) and lines[k] <= end:
            text, _ = comments[lines[k]]
            (lead if lines[k] < start else trail).append(text)
            k += 1
        if isinstance(st, tuple) and st[0] == "version":
            carried += lead + trail
            out.append((st, []))
            continue
        out.append((st, carried + lead + [" " + t for t in trail]))  # a leading space marks "same line"
        carried = []
    trailing = carried + [comments[ln][0] for ln in lines[k:]]
    return out, trailing


# ---------------------------------------------------------------------------------------------
# Syntax errors, one per logical line


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of each statement, joining `|` continuation lines (and the
    blank or comment lines between them) and backslash-continued lines."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    joined = False
    for n, line in enumerate(text.split("\n"), start=1):
        body = line.strip()
        if joined:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + line)
        elif body.startswith("|") and out:
            out[-1] = (out[-1][0], "\n".join([out[-1][1], *pending, line]))
            pending = []
        elif not body or body.startswith("#"):
            pending.append(line)
            continue
        else:
            out.append((n, line))
            pending = []
        joined = line.rstrip("\r").endswith("\\")
    return out


def _collect_line_errors(text: str, path: str | None, bag: DiagnosticBag, first_bad: int = 1) -> None:
    for line_no, chunk in _logical_lines(text):
        if line_no + chunk.count("\n") < first_bad:
            continue  # the whole-file parse got past this statement
        try:
            parser().parse(chunk, start="file")
        except UnexpectedInput as e:
            # parsed alone (padding each chunk to its line made error reports quadratic in the
            # file's length), then moved to where it is in the file
            bag.items.append(_shifted(_syntax_diag(e, chunk, path), line_no - 1))


def _shifted(d: Diagnostic, lines: int) -> Diagnostic:
    if d.span is None or not lines:
        return d
    s = d.span
    span = Span(s.path, s.line + lines, s.column, s.end_line + lines if s.end_line else s.end_line, s.end_column)
    return Diagnostic(d.code, d.severity, d.message, span, d.hint, d.notes)


_STATEMENTS = ("wmap", "source", "target", "option", "drop", "init", "keep", "freeze", "lr")
_USAGE = {
    "wmap": "the version line reads `wmap 1`",
    "source": 'a source reads `source [NAME] [FRAMEWORK] "location"`, e.g. `source base torch "base.safetensors"`',
    "target": 'a target reads `target [FRAMEWORK] "location"`, e.g. `target keras "pkg.models:build"`',
    "option": "an option reads `option NAME = VALUE`, e.g. `option seed = 0`",
    "rule": "a rule reads `SOURCE[, SOURCE] -> TARGET | transform | ...`",
    "drop": "`drop` takes patterns: `drop **.num_batches_tracked, aux.**`",
    "keep": "`keep` takes patterns: `keep decoder.**`",
    "freeze": "`freeze` takes patterns: `freeze conv1.**, layer1.**`",
    "init": "an init reads `init PATTERN = initialiser`, e.g. `init head.bias = zeros`",
    "lr": "an lr multiplier reads `lr PATTERN * FACTOR`, e.g. `lr head.** * 10`",
    "call": "a transform call reads `name` or `name(arg, key=value)`",
}
# After a pattern, LALR state merging lists what may follow a pattern in *any* statement;
# what may really follow depends on the statement.
_AFTER_PATTERN = {"rule": {"COMMA", "_ARROW"}, "drop": {"COMMA", "_NL", "$END"}, "keep": {"COMMA", "_NL", "$END"},
                  "freeze": {"COMMA", "_NL", "$END"}, "init": {"COMMA", "EQUAL"}, "lr": {"COMMA", "STAR"}}


def _kind(chunk: str) -> str:
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_:.*{/-])", chunk)
    word = m.group(1) if m else ""
    return word if word in _STATEMENTS else "rule"


def _code_part(line: str) -> str:
    k = _comment_start(line)
    return (line if k is None else line[:k]).rstrip()


def _in_call(before: str) -> bool:
    """Whether the text before a position is inside a transform call (after `|`, or an init's `=`)."""
    code = _code_part(before)
    depth = code.count("(") - code.count(")")
    return depth > 0 or bool(re.search(r"(\|\s*|^\s*init\b[^=]*=\s*)[A-Za-z_][A-Za-z0-9_]*\s*$", code))


def _syntax_diag(e: UnexpectedInput, text: str, path: str | None) -> Diagnostic:
    lines = text.split("\n")
    line = getattr(e, "line", 1) or 1
    col = getattr(e, "column", 1) or 1
    src_line = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    first = next((ln for ln in lines if ln.strip()), "")
    kind = _kind(first)
    if isinstance(e, UnexpectedCharacters):
        return _char_diag(src_line, line, col, path)
    if not isinstance(e, UnexpectedToken):
        return Diagnostic("WM100", "error", str(e).splitlines()[0], Span(path, line, col), _USAGE[kind])
    tok = e.token
    expected = {str(x) for x in e.expected}
    if tok.type == "$END":
        last = max((i for i, ln in enumerate(lines) if _code_part(ln).strip()), default=0)
        code = _code_part(lines[last])
        end_col = len(code) + 1
        word = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*", code) if last == lines.index(first) else None
        if word and word.group(1) not in KEYWORDS and did_you_mean(word.group(1), _STATEMENTS):
            return _unknown_statement(word.group(1), code, last + 1, path)
        if kind in _AFTER_PATTERN and {"COMMA", "STAR", "EQUAL"} <= expected:
            expected = _AFTER_PATTERN[kind]
        return Diagnostic("WM100", "error", "the statement ends too early: " + _expected(expected),
                          Span(path, last + 1, end_col), _end_hint(code, kind))
    span = Span(path, line, col, line, col + max(len(str(tok.value).split("\n")[0]), 1))
    # `word word ...` where the first word is no keyword: a misspelt statement
    second = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)([ \t]+)\S", src_line)
    first_word = second.group(2) if second else ""
    if (second and line == lines.index(first) + 1 and col == second.end() and first_word not in KEYWORDS
            and (did_you_mean(first_word, _STATEMENTS) or "->" not in src_line)):
        return _unknown_statement(first_word, src_line, line, path)
    if tok.type == "VBAR" and not src_line[:col - 1].strip():
        return Diagnostic("WM100", "error", "this `|` line continues a transform chain, but the statement "
                          "above is not a rule", span, "a `|` line continues the rule on the line above it; "
                          "put the chain on a rule")
    if kind in _AFTER_PATTERN and {"COMMA", "STAR", "EQUAL"} <= expected:
        expected = _AFTER_PATTERN[kind]
    expected = _inside_call(expected, src_line[:col - 1])
    shown = str(tok.value).replace("\n", "\\n") or tok.type
    message = f"unexpected `{shown}`: {_expected(expected)}"
    return Diagnostic("WM100", "error", message, span, _token_hint(tok, expected, src_line[:col - 1], kind))


def _inside_call(expected: set[str], before: str) -> set[str]:
    """Inside `name(...)` a line cannot end, and `]` only closes an open list (merged LALR states)."""
    code = _code_part(before)
    if code.count("(") <= code.count(")"):
        return expected
    out = expected - {"_NL", "$END", "VBAR"}
    if code.count("[") <= code.count("]"):
        out -= {"RSQB"}
    return out or expected


def _unknown_statement(word: str, line_text: str, line: int, path: str | None) -> Diagnostic:
    start = line_text.index(word) + 1
    rest = line_text[start - 1 + len(word):].lstrip()
    hint = did_you_mean(word, _STATEMENTS)
    if hint is None and rest.startswith("="):
        hint = f"an option reads `option {word} = VALUE`"
    if hint is None:
        hint = ("a statement starts with a keyword (source, target, option, drop, init, keep, freeze, lr) "
                "or is a rule `SOURCE -> TARGET`")
    return Diagnostic("WM101", "error", f"unknown statement `{word}`",
                      Span(path, line, start, line, start + len(word)), hint)


def _char_diag(src_line: str, line: int, col: int, path: str | None) -> Diagnostic:
    ch = src_line[col - 1:col]
    if ch in ("\"", "'"):
        return Diagnostic("WM114", "error", "unterminated string", Span(path, line, col, line, len(src_line) + 1),
                          f"close the string with `{ch}` on the same line")
    if ch in ("{", "}"):
        diag = _brace_diag(src_line, col, line, path)
        if diag is not None:
            return diag
    visible = ch.isprintable() and not ch.isspace()
    shown = f"`{ch}`" if visible else _codepoint(ch)
    if not visible:
        hint = "delete this invisible character (copy and paste often leaves them)"
    elif _in_call(src_line[:col - 1]):
        hint = 'quote text arguments: `name("a b")`'
    else:
        hint = 'names and patterns use letters, digits, `_ - / . *` and `{...}`; quote anything else: `"odd$name"`'

    return Diagnostic("WM100", "error", f"unexpected character {shown}", Span(path, line, col, line, col + 1), hint)


def _codepoint(ch: str) -> str:
    import unicodedata
    return f"U+{ord(ch):04X} ({unicodedata.name(ch, 'control character').lower()})" if ch else "end of line"


def _brace_diag(src_line: str, col: int, line: int, path: str | None) -> Diagnostic | None:
    """An unbalanced or nested brace: report it as the pattern error it is (as a quoted pattern would)."""
    from wmap.lang import patterns as P

    i = col - 1
    start = i
    while start > 0 and not src_line[start - 1].isspace():
        start -= 1
    end = i
    while end < len(src_line) and not src_line[end].isspace():
        end += 1
    word = src_line[start:end].split("->")[0].rstrip(",")
    if i - start >= len(word):
        return None
    try:
        P.parse(word)
    except P.PatternError as err:
        at = start + err.offset + 1
        return Diagnostic("WM108", "error", f"bad pattern `{word}`: {err}", Span(path, line, at, line, at + 1),
                          _PATTERN_HINT)
    return None


_PATTERN_HINT = "patterns are dotted names with `*`, `**`, `{x}`, `{x:int}`, `{x:**}` and `{a,b,c}`"


def _call_diag(e: UnexpectedInput, text: str, base: Span) -> Diagnostic:
    """A YAML `via:`/`init:` string that does not parse as one call."""
    col = getattr(e, "column", 1) or 1
    at = base.column + col - 1 if base.line else 0
    if isinstance(e, UnexpectedCharacters):
        d = _char_diag(text.split("\n")[0], 1, col, None)
        return Diagnostic(d.code, "error", f"{d.message} in the call `{text}`",
                          Span(base.path, base.line, at, base.line, at + 1), d.hint)
    tok = getattr(e, "token", None)
    if tok is None or tok.type == "$END":
        expected = {str(x) for x in getattr(e, "expected", ())}
        hint = "close the call with `)`" if text.count("(") > text.count(")") else _USAGE["call"]
        return Diagnostic("WM100", "error", f"the call `{text}` ends too early: {_expected(expected)}",
                          Span(base.path, base.line, base.column + len(text.rstrip()) if base.line else 0), hint)
    if "|" in text:
        hint = "write a chain as a list: `via: [transpose, split(0)]`"
    else:
        hint = _token_hint(tok, {str(x) for x in getattr(e, "expected", ())}, text[:col - 1], "call") or _USAGE["call"]
    width = max(len(str(tok.value)), 1)
    return Diagnostic("WM100", "error", f"unexpected `{tok.value}` in the call `{text}`",
                      Span(base.path, base.line, at, base.line, at + width), hint)


_TERMINAL_NAMES = {
    "PATTERN": "a pattern", "STRING": "a quoted string", "NAME": "a name", "_ARROW": "`->`",
    "MINUS": "`-`", "VBAR": "`|`", "COMMA": "`,`", "EQUAL": "`=`", "STAR": "`*`", "LPAR": "`(`",
    "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "SIGNED_INT": "a number", "SIGNED_FLOAT": "a number",
    "INT": "a whole number", "_NL": "the end of the line", "$END": "the end of the line",
    "TRUE": "`true`", "FALSE": "`false`", "NULL": "`null`", "VALUE": "a value",
}


_VALUE_STARTS = {"STRING", "SIGNED_INT", "SIGNED_FLOAT", "TRUE", "FALSE", "NULL", "LSQB", "NAME"}


def _expected(expected: set[str]) -> str:
    if {"STRING", "SIGNED_INT", "LSQB"} <= expected:  # anything a value can start with
        expected = (expected - _VALUE_STARTS) | {"VALUE"}
    names = sorted({_TERMINAL_NAMES.get(x, f"`{x.lower()}`") for x in expected})
    if not names or len(names) > 6:
        return "this does not fit here"
    return "expected " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def _token_hint(tok: Token, expected: set[str], before: str, kind: str) -> str | None:
    value = str(tok.value)
    code = _code_part(before).rstrip()
    if kind == "rule":
        if code.endswith("->"):
            return "a rule needs a target after `->`"
        if value == "," and "->" in code and not _in_call(before):
            return "a rule has one target template; an alternation fans out: `attn.{q,k,v}.weight`"
        if "_ARROW" in expected and "->" not in code:
            return _USAGE["rule"] + "; is `->` missing?"
    if tok.type == "RPAR" and code.endswith(","):
        return "remove the trailing `,`"
    key = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*=$", code)
    if key and _in_call(before):
        return f"give `{key.group(1)}` a value, e.g. `{key.group(1)}=0`"
    if code.endswith(","):
        return "a `,` needs another item after it"
    if _in_call(before) or tok.type in ("LPAR", "RPAR") or expected & {"LPAR", "RPAR"}:
        return _USAGE["call"]
    return _USAGE[kind]


def _end_hint(code: str, kind: str) -> str | None:
    s = code.strip()
    if s.endswith("->"):
        return "a rule needs a target after `->`"
    if s.endswith("|"):
        return "a `|` needs a transform after it"
    if s.endswith(","):
        return "a `,` needs another item after it"
    if code.count("(") > code.count(")"):
        return "close the call with `)`"
    return _USAGE[kind]


def tree_is(node: object, name: str) -> bool:
    return isinstance(node, Tree) and node.data == name
