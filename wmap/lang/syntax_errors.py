"""Syntax-error messages for the `.wmap` syntax: one diagnostic per logical line, each with what
was expected in words, where, and a hint that fits the statement it is in.

A file that fails to parse as a whole is parsed again one logical line at a time (a line plus its
`|` continuations), so one run reports every syntax error. LALR state merging makes lark's list
of expected tokens too wide in places; the helpers here narrow it to what the statement allows.
"""

from __future__ import annotations

import re

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, did_you_mean
from wmap.lang.comments import comment_start
from wmap.lang.grammar import parser
from wmap.lang.larkrt import Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from wmap.lang.statements import KEYWORDS, STATEMENTS, USAGE


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


def collect_line_errors(text: str, path: str | None, bag: DiagnosticBag, first_bad: int = 1) -> None:
    for line_no, chunk in _logical_lines(text):
        if line_no + chunk.count("\n") < first_bad:
            continue  # the whole-file parse got past this statement
        try:
            parser().parse(chunk, start="file")
        except UnexpectedInput as e:
            # parsed alone (padding each chunk to its line made error reports quadratic in the
            # file's length), then moved to where it is in the file
            bag.items.append(_shifted(syntax_diag(e, chunk, path), line_no - 1))


def _shifted(d: Diagnostic, lines: int) -> Diagnostic:
    if d.span is None or not lines:
        return d
    s = d.span
    span = Span(s.path, s.line + lines, s.column, s.end_line + lines if s.end_line else s.end_line, s.end_column)
    return Diagnostic(d.code, d.severity, d.message, span, d.hint, d.notes)


# After a pattern, LALR state merging lists what may follow a pattern in *any* statement;
# what may really follow depends on the statement.
_AFTER_PATTERN = {"rule": {"COMMA", "_ARROW"}, "drop": {"COMMA", "_NL", "$END"}, "keep": {"COMMA", "_NL", "$END"},
                  "freeze": {"COMMA", "_NL", "$END"}, "init": {"COMMA", "EQUAL"}, "lr": {"COMMA", "STAR"}}


def _kind(chunk: str) -> str:
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_:.*{/-])", chunk)
    word = m.group(1) if m else ""
    return word if word in STATEMENTS else "rule"


def _code_part(line: str) -> str:
    k = comment_start(line)
    return (line if k is None else line[:k]).rstrip()


def _in_call(before: str) -> bool:
    """Whether the text before a position is inside a transform call (after `|`, or an init's `=`)."""
    code = _code_part(before)
    depth = code.count("(") - code.count(")")
    return depth > 0 or bool(re.search(r"(\|\s*|^\s*init\b[^=]*=\s*)[A-Za-z_][A-Za-z0-9_]*\s*$", code))


def syntax_diag(e: UnexpectedInput, text: str, path: str | None) -> Diagnostic:
    lines = text.split("\n")
    line = getattr(e, "line", 1) or 1
    col = getattr(e, "column", 1) or 1
    src_line = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    first = next((ln for ln in lines if ln.strip()), "")
    kind = _kind(first)
    if isinstance(e, UnexpectedCharacters):
        return _char_diag(src_line, line, col, path)
    if not isinstance(e, UnexpectedToken):
        return Diagnostic("WM100", "error", str(e).splitlines()[0], Span(path, line, col), USAGE[kind])
    tok = e.token
    expected = {str(x) for x in e.expected}
    if tok.type == "$END":
        last = max((i for i, ln in enumerate(lines) if _code_part(ln).strip()), default=0)
        code = _code_part(lines[last])
        end_col = len(code) + 1
        word = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*", code) if last == lines.index(first) else None
        if word and word.group(1) not in KEYWORDS and did_you_mean(word.group(1), STATEMENTS):
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
            and (did_you_mean(first_word, STATEMENTS) or "->" not in src_line)):
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
    hint = did_you_mean(word, STATEMENTS)
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


def call_diag(e: UnexpectedInput, text: str, base: Span, what: str = "call") -> Diagnostic:
    """A YAML `via:`/`init:` string that does not parse as one call (or a `let:` value that does not
    parse as one expression: `what="expression"`)."""
    usage = USAGE["call" if what == "call" else "expr"]
    col = getattr(e, "column", 1) or 1
    at = base.column + col - 1 if base.line else 0
    if isinstance(e, UnexpectedCharacters):
        d = _char_diag(text.split("\n")[0], 1, col, None)
        return Diagnostic(d.code, "error", f"{d.message} in the {what} `{text}`",
                          Span(base.path, base.line, at, base.line, at + 1), d.hint)
    tok = getattr(e, "token", None)
    if tok is None or tok.type == "$END":
        expected = {str(x) for x in getattr(e, "expected", ())}
        hint = "close it with `)`" if text.count("(") > text.count(")") else usage
        return Diagnostic("WM100", "error", f"the {what} `{text}` ends too early: {_expected(expected)}",
                          Span(base.path, base.line, base.column + len(text.rstrip()) if base.line else 0), hint)
    if "|" in text and what == "call":
        hint = "write a chain as a list: `via: [transpose, split(0)]`"
    elif what == "call":
        hint = _token_hint(tok, {str(x) for x in getattr(e, "expected", ())}, text[:col - 1], "call") or usage
    else:
        hint = usage
    width = max(len(str(tok.value)), 1)
    return Diagnostic("WM100", "error", f"unexpected `{tok.value}` in the {what} `{text}`",
                      Span(base.path, base.line, at, base.line, at + width), hint)


_TERMINAL_NAMES = {
    "PATTERN": "a pattern", "STRING": "a quoted string", "NAME": "a name", "_ARROW": "`->`",
    "MINUS": "`-`", "VBAR": "`|`", "COMMA": "`,`", "EQUAL": "`=`", "STAR": "`*`", "LPAR": "`(`",
    "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "SIGNED_INT": "a number", "SIGNED_FLOAT": "a number",
    "INT": "a whole number", "_NL": "the end of the line", "$END": "the end of the line",
    "TRUE": "`true`", "FALSE": "`false`", "NULL": "`null`", "VALUE": "a value", "REF": "a `$name`",
    "UFLOAT": "a number", "CONFIG_KEY": "`config.KEY`",
}


_VALUE_STARTS = {"STRING", "SIGNED_INT", "SIGNED_FLOAT", "TRUE", "FALSE", "NULL", "LSQB", "NAME", "REF"}


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
            return USAGE["rule"] + "; is `->` missing?"
    if tok.type == "RPAR" and code.endswith(","):
        return "remove the trailing `,`"
    key = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*=$", code)
    if key and _in_call(before):
        return f"give `{key.group(1)}` a value, e.g. `{key.group(1)}=0`"
    if code.endswith(","):
        return "a `,` needs another item after it"
    if _in_call(before) or tok.type in ("LPAR", "RPAR") or expected & {"LPAR", "RPAR"}:
        return USAGE["call"]
    return USAGE[kind]


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
    return USAGE[kind]
