"""Diagnostics: every user-facing failure is a Diagnostic with a stable WMxxx code.

Deep code raises `WmapError` with one or more diagnostics; the public boundary
(CLI, API) renders them. Nothing user-facing should ever surface as a traceback.

Code ranges, by stage:
  WM1xx syntax and spec structure     WM4xx coverage (exactly-once accounting)
  WM2xx matching                      WM5xx backends, files and I/O
  WM3xx shapes and dtypes             WM6xx execution
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from wmap.core.names import printable
from wmap.core.record import Record

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Span:
    """A place in a spec file. Lines and columns are 1-based; `end_*` may be unknown."""

    path: str | None
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.path or '<spec>'}:{self.line}:{self.column}"


@dataclass(frozen=True, eq=False, repr=False)
class Diagnostic(Record):
    """One problem or warning: a stable code (WMxxx), where it is (file, line, column), what and a hint."""

    code: str
    severity: Severity
    message: str
    span: Span | None = None
    hint: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> str | None:
        return self.span.path if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
            "notes": list(self.notes),
        }

    def render(self, sources: Mapping[str, str] | None = None) -> str:
        """Compiler-style text: location, message, the source line with an underline, notes, hint.

        Names from checkpoints end up in messages; anything unprintable in them (terminal control
        sequences, lone surrogates) is shown escaped, never sent raw to the terminal."""
        where = f"{self.span}: " if self.span else ""
        out = [printable(f"{where}{self.severity}[{self.code}]: {self.message}", keep_newlines=True)]
        excerpt = _excerpt(self.span, sources)
        if excerpt:
            out.extend(excerpt)
        out.extend(printable(f"  note: {n}", keep_newlines=True) for n in self.notes)
        if self.hint:
            out.append(printable(f"  hint: {self.hint}", keep_newlines=True))
        return "\n".join(out)


def _excerpt(span: Span | None, sources: Mapping[str, str] | None) -> list[str]:
    if span is None or not sources or span.path not in sources:
        return []
    lines = sources[span.path or ""].split("\n")  # as the parsers count lines: only "\n" ends one
    if not 1 <= span.line <= len(lines):
        return []
    text = _visible(lines[span.line - 1].rstrip("\r").expandtabs(1))
    if not text.strip():  # a caret under nothing says nothing
        return []
    start = max(span.column, 1)
    if span.end_line == span.line and span.end_column and span.end_column > start:
        width = span.end_column - start
    else:
        width = 1
    if len(text) > EXCERPT_WIDTH:  # show a window around the span, not a whole minified line
        left = max(0, min(start - 1 - EXCERPT_WIDTH // 3, len(text) - EXCERPT_WIDTH))
        shown = text[left:left + EXCERPT_WIDTH]
        prefix = "..." if left else ""
        suffix = "..." if left + EXCERPT_WIDTH < len(text) else ""
        start = start - left + len(prefix)
        width = max(1, min(width, len(prefix) + len(shown) - start + 1))
        text = prefix + shown + suffix
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * (start - 1) + "^" * width]


EXCERPT_WIDTH = 100


def _visible(text: str) -> str:
    """Control characters as one visible column each (NUL -> U+2400 `␀`), so carets still line up
    and nothing is sent raw to the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else chr(0x2400 + ord(c)) if ord(c) < 0x20 else
                   "\u2421" if c == "\x7f" else "\ufffd" for c in text)


class WmapError(Exception):
    """One or more diagnostics, raised once after collection ("... and N more" when rendered)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None):
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__(self.render(limit=1) if self.diagnostics else "wmap error")

    def __reduce__(self) -> tuple[type[WmapError], tuple[tuple[Diagnostic, ...], dict[str, str]]]:
        # rebuilt from its diagnostics, not its rendered text (`args`), so it survives being pickled
        # to another process (multiprocessing, torch.distributed.checkpoint's exchange of failures)
        return (WmapError, (self.diagnostics, self.sources))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    def render(self, limit: int | None = None) -> str:
        shown = self.diagnostics if limit is None else self.diagnostics[:limit]
        text = "\n".join(d.render(self.sources) for d in shown)
        rest = len(self.diagnostics) - len(shown)
        if rest > 0:
            text += f"\n... and {rest} more"
        return text


def error(code: str, message: str, span: Span | None = None, hint: str | None = None,
          notes: Sequence[str] = ()) -> WmapError:
    """Shorthand for raising a single-diagnostic error."""
    return WmapError([Diagnostic(code, "error", message, span, hint, tuple(notes))])


@dataclass
class DiagnosticBag:
    """Collects diagnostics across a stage so users see every problem in one run."""

    items: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, message: str, span: Span | None = None, hint: str | None = None,
            severity: Severity = "error", notes: Sequence[str] = ()) -> None:
        self.items.append(Diagnostic(code, severity, message, span, hint, tuple(notes)))

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.items.extend(diags)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise WmapError(self.items, self.sources)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.items if d.severity == "warning")


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean' hint, or None when nothing is close."""
    import difflib  # a hint is made when something is wrong: not imported on the way to a clean answer

    close = difflib.get_close_matches(word, list(dict.fromkeys(choices)), n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
