"""Anchored segment-glob patterns with captures, compiled once to regexes.

Source patterns:  `*` (within one segment), `**` (zero or more whole segments),
`{x}` (captures one segment or part of one), `{x:int}` (digits), `{x:**}` (one or
more whole segments), `{a,b,c}` (alternation), and an optional `name:` source prefix.
Target templates use the same pieces plus integer arithmetic in captures (`{i+1}`,
`{i*2}`, `{i-1}`, `{i//2}`, `{i%2}`). Unnamed wildcards (`*`, `**`) carry over by
position; target alternations pair with source alternations in order (a rename), and
an unpaired target alternation fans out (one source, several targets).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

PieceKind = Literal["lit", "star", "dstar", "cap", "int", "path", "alt", "expr"]
CaptureValue = str | int | None

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPR = re.compile(rf"^\s*({_NAME})\s*(\+|-|\*|//|%)\s*([0-9]+|\${_NAME})\s*$")
_REF_IN_BRACES = re.compile(rf"(\{{[^{{}}]*?)\$({_NAME})([^{{}}]*\}})")
_SOURCE_PREFIX = re.compile(rf"^({_NAME}):")
_SEG = r"[^.]+"
_SEGS = r"[^.]+(?:\.[^.]+)*"


class PatternError(ValueError):
    """A malformed pattern; the message says what and where (0-based offset)."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Piece:
    """One piece of a name pattern's segment: a literal, a wildcard, a capture, an alternation or arithmetic."""

    kind: PieceKind
    text: str = ""                      # literal text, or capture name
    options: tuple[str, ...] = ()       # alternation options
    op: str | None = None               # arithmetic operator for `expr`
    operand: int = 0
    ref: str | None = None              # `{i+$first}`: the operand is a `let`, bound at plan time


Segment = tuple[Piece, ...]


@dataclass(frozen=True)
class Pattern:
    """A parsed pattern: optional source prefix, segments, and its wildcard bookkeeping."""

    text: str
    source: str | None
    segments: tuple[Segment, ...]
    optional: bool = False

    @functools.cached_property
    def pieces(self) -> tuple[Piece, ...]:
        return tuple(p for seg in self.segments for p in seg)

    @functools.cached_property
    def captures(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for p in self.pieces:
            if p.kind in ("cap", "int", "path", "expr"):
                seen.setdefault(p.text, None)
        return tuple(seen)

    @functools.cached_property
    def int_captures(self) -> frozenset[str]:
        return frozenset(p.text for p in self.pieces if p.kind == "int")

    @functools.cached_property
    def wildcards(self) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.kind in ("star", "dstar"))

    @functools.cached_property
    def alternations(self) -> tuple[Piece, ...]:
        return tuple(p for p in self.pieces if p.kind == "alt")

    @functools.cached_property
    def is_literal(self) -> bool:
        return all(p.kind == "lit" for p in self.pieces)

    def regex(self, prefix: str = "") -> str:
        return _to_regex(self, prefix)

    @functools.cached_property
    def compiled(self) -> NameMatcher:
        """`compiled.fullmatch(name)`, in time linear in the name for any pattern (names are untrusted)."""
        return NameMatcher(self)

    def match(self, name: str) -> Match | None:
        m = self.compiled.fullmatch(name)
        return None if m is None else _extract(self, m, "")

    def extract(self, m: NameMatch) -> Match:
        """Captures of a regex match of this pattern's own `compiled`."""
        return _extract(self, m, "")

    @functools.cached_property
    def _groups(self) -> tuple[tuple[tuple[str, str, bool], ...], tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
        caps: dict[str, tuple[str, str, bool]] = {}
        for p in self.pieces:
            if p.kind in ("cap", "int", "path") and p.text not in caps:
                caps[p.text] = (p.text, f"c_{p.text}", p.kind == "int")
        wild = tuple(f"u{k}" for k in range(len(self.wildcards)))
        alts = tuple((f"a{k}", a.options) for k, a in enumerate(self.alternations))
        return tuple(caps.values()), wild, alts


class Match(NamedTuple):
    """What a source pattern bound: named captures, unnamed wildcards and alternation picks.

    A NamedTuple rather than a dataclass: one is built per matched tensor name, and this is
    the hot path of planning against 100k-tensor checkpoints."""

    captures: tuple[tuple[str, CaptureValue], ...]
    wildcards: tuple[str | None, ...]
    alternations: tuple[int, ...]   # index of the option chosen, per alternation in order

    def capture(self, name: str) -> CaptureValue:
        return dict(self.captures)[name]


@functools.lru_cache(maxsize=4096)
def parse(text: str, *, template: bool = False) -> Pattern:
    """Parse a pattern (or, with template=True, a target template). Cached: patterns compile once."""
    body = text
    optional = False
    if body.startswith("?"):
        optional, body = True, body[1:]
    source = None
    m = _SOURCE_PREFIX.match(body)
    if m and not template:
        source, body = m.group(1), body[m.end():]
    offset = len(text) - len(body)
    if not body:
        raise PatternError("empty pattern", offset)
    split = _split_segments(body, offset)
    segments = tuple(_parse_segment(s, off, template) for s, off in split)
    pat = Pattern(text, source, segments, optional)
    _check(pat, template, [off for _, off in split])
    return pat


def _split_segments(body: str, offset: int) -> list[tuple[str, int]]:
    segs: list[tuple[str, int]] = []
    depth, start, opened = 0, 0, 0
    for i, ch in enumerate(body):
        if ch == "{":
            if depth and "." in body[opened:i]:  # `layer{i.{j}`: the first brace was never closed
                raise PatternError("`{` is not closed before the next `{`", offset + opened)
            if depth:
                raise PatternError("nested `{` in pattern", offset + i)
            depth, opened = 1, i
        elif ch == "}":
            if not depth:
                raise PatternError("`}` without a matching `{`", offset + i)
            depth = 0
        elif ch == "." and not depth:
            segs.append((body[start:i], offset + start))
            start = i + 1
    if depth:
        raise PatternError("`{` is never closed", offset + body.rfind("{"))
    segs.append((body[start:], offset + start))
    for s, off in segs:
        if not s:
            raise PatternError("empty segment (two dots in a row, or a leading/trailing dot)", off)
    return segs


def _parse_segment(seg: str, offset: int, template: bool) -> Segment:
    if seg == "**":
        return (Piece("dstar"),)
    pieces: list[Piece] = []
    starts: list[int] = []
    i = 0
    while i < len(seg):
        ch = seg[i]
        starts.append(offset + i)
        if ch == "{":
            j = seg.index("}", i)
            pieces.append(_parse_brace(seg[i + 1:j], offset + i, template))
            i = j + 1
        elif ch == "*":
            if seg.startswith("**", i):
                raise PatternError("`**` must be a whole segment (write `a.**.b`)", offset + i)
            pieces.append(Piece("star"))
            i += 1
        else:
            j = i
            while j < len(seg) and seg[j] not in "{*":
                j += 1
            lit = seg[i:j]
            bad = re.search(r"[\s{},]", lit)
            if bad:
                raise PatternError(f"unexpected {'space' if bad.group().isspace() else f'`{bad.group()}`'} "
                                   f"in `{lit}`", offset + i + bad.start())
            pieces.append(Piece("lit", lit))
            i = j
    for k, (a, b) in enumerate(zip(pieces, pieces[1:], strict=False)):
        if a.kind != "lit" and b.kind != "lit":
            raise PatternError("two wildcards or captures side by side are ambiguous; put text between them",
                               starts[k + 1])
    if any(p.kind == "path" for p in pieces) and len(pieces) > 1:
        k = next(k for k, p in enumerate(pieces) if p.kind == "path")
        raise PatternError("`{x:**}` must be a whole segment", starts[k])
    return tuple(pieces)


def _parse_brace(inner: str, offset: int, template: bool) -> Piece:
    s = inner.strip()
    if not s:
        raise PatternError("empty `{}`", offset)
    if "," in s:
        opts = tuple(o.strip() for o in s.split(","))
        if any(not re.fullmatch(r"[A-Za-z0-9_\-./]+", o) for o in opts):
            raise PatternError(f"bad alternation `{{{inner}}}`: options are plain names separated by commas",
                               offset)
        if len(set(opts)) != len(opts):
            raise PatternError(f"alternation `{{{inner}}}` repeats an option", offset)
        return Piece("alt", options=opts)
    m = re.fullmatch(rf"({_NAME})(?::(int|\*\*))?", s)
    if m:
        kinds: dict[str | None, PieceKind] = {None: "cap", "int": "int", "**": "path"}
        kind = kinds[m.group(2)]
        return Piece(kind, m.group(1))
    if template:
        e = _EXPR.match(s)
        if e:
            if e.group(3).startswith("$"):
                return Piece("expr", e.group(1), op=e.group(2), ref=e.group(3)[1:])
            if len(e.group(3)) > 18:  # int() refuses 4300+ digits; no tensor index needs more than 18
                raise PatternError(f"the number in `{{{inner}}}` has {len(e.group(3)):,} digits; index "
                                   "arithmetic takes at most 18", offset)
            if e.group(2) in ("//", "%") and int(e.group(3)) == 0:
                raise PatternError(f"division by zero in `{{{inner}}}`", offset)
            return Piece("expr", e.group(1), op=e.group(2), operand=int(e.group(3)))
    raise PatternError(f"cannot read `{{{inner}}}`: expected `{{name}}`, `{{name:int}}`, `{{name:**}}`, "
                       "`{a,b,c}`" + (" or `{name+1}`" if template else ""), offset)


def _check(pat: Pattern, template: bool, offsets: list[int]) -> None:
    segs = pat.segments
    for k, (a, b) in enumerate(zip(segs, segs[1:], strict=False)):
        if a == (Piece("dstar"),) and b == (Piece("dstar"),):
            raise PatternError("`**.**` is the same as `**`", offsets[k + 1])
    if not template:
        kinds: dict[str, str] = {}
        for p in pat.pieces:
            if p.kind in ("cap", "int", "path") and kinds.setdefault(p.text, p.kind) != p.kind:
                found = [m.start() for m in re.finditer(r"\{\s*" + re.escape(p.text) + r"\s*[:}]", pat.text)]
                raise PatternError(f"capture `{p.text}` is used with two different types",
                                   found[1] if len(found) > 1 else 0)


# ---------------------------------------------------------------------------------------------
# Source side: regex compilation and capture extraction


def _to_regex(pat: Pattern, prefix: str) -> str:
    counters = {"u": 0, "a": 0}
    seen: set[str] = set()

    def piece_re(p: Piece) -> str:
        if p.kind == "lit":
            return re.escape(p.text)
        if p.kind == "star":
            g = f"{prefix}u{counters['u']}"
            counters["u"] += 1
            return f"(?P<{g}>[^.]*)"
        if p.kind == "alt":
            g = f"{prefix}a{counters['a']}"
            counters["a"] += 1
            opts = sorted(p.options, key=len, reverse=True)
            return f"(?P<{g}>" + "|".join(re.escape(o) for o in opts) + ")"
        g = f"{prefix}c_{p.text}"
        if p.text in seen:
            return f"(?P={g})"
        seen.add(p.text)
        body = {"cap": _SEG, "int": "[0-9]+", "path": _SEGS}[p.kind]  # ASCII digits: `\\d` takes `٣`
        return f"(?P<{g}>{body})"

    parts: list[str] = []
    segs = pat.segments
    for i, seg in enumerate(segs):
        if seg == (Piece("dstar"),):
            g = f"{prefix}u{counters['u']}"
            counters["u"] += 1
            if len(segs) == 1:
                parts.append(f"(?P<{g}>{_SEGS})")
            elif i == 0:
                parts.append(f"(?:(?P<{g}>{_SEGS})\\.)?")
            else:
                parts.append(f"(?:\\.(?P<{g}>{_SEGS}))?")
            continue
        lead = "" if i == 0 or (i == 1 and segs[0] == (Piece("dstar"),)) else r"\."
        parts.append(lead + "".join(piece_re(p) for p in seg))
    return "".join(parts)


def _extract(pat: Pattern, m: NameMatch, prefix: str) -> Match:
    caps_g, wild_g, alt_g = pat._groups
    gd: dict[str, str | None] = m.groupdict()
    if prefix:
        gd = {k[len(prefix):]: v for k, v in gd.items() if k.startswith(prefix)}
    caps = tuple([(name, _digits(gd[g]) if is_int else gd[g]) for name, g, is_int in caps_g])
    wild = tuple([gd[g] for g in wild_g]) if wild_g else ()
    alts = tuple([opts.index(gd[g]) for g, opts in alt_g]) if alt_g else ()
    return Match(caps, wild, alts)


def _digits(v: str | None) -> CaptureValue:
    return None if v is None else Digits(v)


# ---------------------------------------------------------------------------------------------
# Target side: substitution


class TemplateError(ValueError):
    pass


class Digits(int):
    """An `{x:int}` capture: an int for arithmetic that prints as the digits it matched, so
    `{x}` in a template reproduces `007` (as the fast paths, which copy the matched text, do)."""

    text: str

    def __new__(cls, text: str) -> Digits:
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        return self.text if not spec else super().__format__(spec)


def _arith_text(v: int, op: str, k: int) -> str:
    r = {"+": v + k, "-": v - k, "*": v * k, "//": v // k if k else 0, "%": v % k if k else 0}[op]
    text = getattr(v, "text", "")
    if len(text) > 1 and text.startswith("0") and r >= 0:  # zero-padded indices stay padded: 07 + 1 = 08
        return str(r).zfill(len(text))
    return str(r)


def fanout_count(template: Pattern, source: Pattern) -> int:
    """How many targets one source group produces (product of the unpaired target alternations)."""
    n = 1
    for alt in template.alternations[len(source.alternations):]:
        n *= len(alt.options)
    return n


def substitute(template: Pattern, source: Pattern, match: Match) -> tuple[str, ...]:
    """Render a target template with a source match; several names when the template fans out."""
    fast = _simple_template(template)
    if fast is not None:
        caps = dict(match.captures)
        try:
            return (fast.format_map(caps),)
        except KeyError as e:
            raise TemplateError(f"capture `{e.args[0]}` is not bound by the source pattern") from None
    return _substitute(template, source, match)


def render_match(template: Pattern, source: Pattern, m: NameMatch) -> tuple[str, ...]:
    """`substitute` straight from a regex match: the hot path when planning large checkpoints."""
    fast = _group_template(template)
    if fast is not None:
        try:
            return (fast.format_map(m.groupdict()),)
        except KeyError as e:
            raise TemplateError(f"capture `{e.args[0][2:]}` is not bound by the source pattern") from None
    return substitute(template, source, _extract(source, m, ""))


def match_renderer(template: Pattern, source: Pattern) -> Callable[[NameMatch], tuple[str, ...]]:
    """`render_match` for one (template, source) pair, resolved once: planning renders every
    tensor a rule claims, and looking the template up per tensor hashes the whole Pattern."""
    fast = _group_template(template)
    if fast is None:
        return lambda m: substitute(template, source, _extract(source, m, ""))
    fmt = fast.format_map

    def render(m: NameMatch) -> tuple[str, ...]:
        try:
            return (fmt(m.groupdict()),)
        except KeyError as e:
            raise TemplateError(f"capture `{e.args[0][2:]}` is not bound by the source pattern") from None
    return render


@functools.lru_cache(maxsize=1024)
def _group_template(template: Pattern) -> str | None:
    """Like `_simple_template`, but naming the regex groups (`c_x`) instead of captures."""
    if any(p.kind not in ("lit", "cap", "path") for p in template.pieces):
        return None  # `{x:int}` renders via int() (no leading zeros), and arithmetic needs values
    return ".".join("".join(p.text.replace("{", "{{").replace("}", "}}") if p.kind == "lit" else "{c_" + p.text + "}"
                            for p in seg) for seg in template.segments)


@functools.lru_cache(maxsize=1024)
def _simple_template(template: Pattern) -> str | None:
    """A str.format string for templates made of literals and plain captures (the common case)."""
    if any(p.kind not in ("lit", "cap", "int", "path") for p in template.pieces):
        return None
    segs = []
    for seg in template.segments:
        segs.append("".join(p.text.replace("{", "{{").replace("}", "}}") if p.kind == "lit" else "{" + p.text + "}"
                            for p in seg))
    return ".".join(segs)


def _substitute(template: Pattern, source: Pattern, match: Match) -> tuple[str, ...]:
    paired = len(source.alternations)
    results: list[list[str]] = [[]]
    wild = iter(match.wildcards)
    alt_k = 0
    caps: Mapping[str, CaptureValue] = dict(match.captures)
    for seg in template.segments:
        if seg == (Piece("dstar"),):
            v = next(wild, None)
            if v is not None:
                for r in results:
                    r.append(v)
            continue
        variants = [""]
        for p in seg:
            if p.kind == "lit":
                variants = [v + p.text for v in variants]
            elif p.kind == "star":
                w = next(wild, None)
                variants = [v + (w or "") for v in variants]
            elif p.kind == "alt":
                if alt_k < paired and alt_k < len(match.alternations):
                    opt = p.options[match.alternations[alt_k]]
                    variants = [v + opt for v in variants]
                else:
                    variants = [v + o for v in variants for o in p.options]
                alt_k += 1
            else:
                variants = [v + _render_capture(p, caps) for v in variants]
        if len(variants) == 1:
            for r in results:
                r.append(variants[0])
        else:
            results = [r + [v] for r in results for v in variants]
    return tuple(".".join(r) for r in results)


def _render_capture(p: Piece, caps: Mapping[str, CaptureValue]) -> str:
    if p.text not in caps:
        raise TemplateError(f"capture `{p.text}` is not bound by the source pattern")
    v = caps[p.text]
    if p.kind != "expr":
        return "" if v is None else str(v)
    if p.ref is not None:  # bound by planning (`bind_template`) before any name is rendered
        raise TemplateError(f"`${p.ref}` in `{{{p.text}{p.op}${p.ref}}}` has no value")
    if not isinstance(v, int):
        raise TemplateError(f"`{{{p.text}{p.op}{p.operand}}}` needs an integer capture: write `{{{p.text}:int}}`")
    return _arith_text(v, p.op or "+", p.operand)


def template_refs(text: str) -> list[str]:
    """The `let` names a target template computes with (`{i+$first}` -> `first`)."""
    return [m.group(2) for m in _REF_IN_BRACES.finditer(text)]


def bind_template(text: str, values: Mapping[str, object]) -> str:
    """`{i+$first}` with `first = 2` -> `{i+2}`; each referenced value must be a whole number >= 0."""
    def sub(m: re.Match[str]) -> str:
        v = values[m.group(2)]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise TemplateError(f"`${m.group(2)}` is {v!r}; index arithmetic needs a whole number >= 0")
        return f"{m.group(1)}{v}{m.group(3)}"
    return _REF_IN_BRACES.sub(sub, text)


def check_template(template: Pattern, sources: tuple[Pattern, ...]) -> list[str]:
    """Problems with a target template given its source patterns (unbound captures, wildcard counts)."""
    return [message for message, _ in template_problems(template, sources)]


def template_problems(template: Pattern, sources: tuple[Pattern, ...], fans_out: bool = False
                      ) -> list[tuple[str, str]]:
    """Like `check_template`, each problem with a hint saying what to write: (message, hint).

    `fans_out`: the rule's chain has a fan-out transform (`unstack`, `split`, ...), so a capture
    that no source binds is an index the target names enumerate (`w1 -> experts.{e}.w | unstack`),
    not a mistake; arithmetic on such an index, or using it twice, still is."""
    problems: list[tuple[str, str]] = []
    free = set(free_captures(template, sources)) if fans_out else set()
    for name in free:
        uses = [p for p in template.pieces if p.kind in ("cap", "int", "path", "expr") and p.text == name]
        if any(p.kind == "expr" for p in uses):
            problems.append((f"`{{{name}}}` is enumerated from the target names, so it cannot be computed with",
                             f"capture it in the source pattern to compute with it, or write `{{{name}}}` alone"))
        elif len(uses) > 1:
            problems.append((f"the fan-out index `{{{name}}}` appears twice in the target template",
                             "an index the target names enumerate may appear once"))
    for src in sources:
        caps = src.captures
        for p in template.pieces:
            if p.text in free:
                continue
            if p.kind in ("cap", "int", "path", "expr") and p.text not in caps:
                hint = (did_you_mean_capture(p.text, caps) or
                        (f"`{src.text}` captures " + ", ".join(f"`{{{c}}}`" for c in caps) if caps else
                         f"capture it in the source pattern, e.g. `layer{{{p.text}}}.weight`"))
                problems.append((f"target uses `{{{p.text}}}`, which `{src.text}` does not capture", hint))
            if p.kind == "expr" and p.text in caps and p.text not in src.int_captures:
                problems.append((f"`{{{p.text}{p.op}{p.operand}}}` does arithmetic on `{{{p.text}}}`, "
                                 f"which `{src.text}` does not capture as an integer",
                                 f"capture digits with `{{{p.text}:int}}` in the source pattern"))
        if len(template.wildcards) > len(src.wildcards):
            problems.append((f"target has {len(template.wildcards)} unnamed wildcard(s) but `{src.text}` "
                             f"has {len(src.wildcards)}",
                             "unnamed wildcards carry over by position; name them with captures: `{x}` for "
                             "one segment, `{x:**}` for several"))
        for t_alt, s_alt in zip(template.alternations, src.alternations, strict=False):
            if len(t_alt.options) != len(s_alt.options):
                problems.append((f"alternation `{{{','.join(t_alt.options)}}}` pairs with "
                                 f"`{{{','.join(s_alt.options)}}}` but they have different lengths",
                                 "a target alternation renames the source alternation option by option: give "
                                 "both the same number of options"))
    seen: set[str] = set()
    out = []
    for message, hint in problems:
        if message not in seen:
            seen.add(message)
            out.append((message, hint))
    return out


@dataclass(frozen=True)
class OrderPiece:
    """A piece of a source pattern that the target template does not bind: the members of a
    fan-in group differ in it, so it decides their order (`stack`, `concat`, `average`...)."""

    label: str                       # how the plan names it: `{e}`, `*`, `**`, `{q,k,v}`
    slot: Literal["cap", "wild", "alt"]
    index: int | str                 # capture name, or position among wildcards / alternations
    options: tuple[str, ...] = ()    # an alternation's options, in written order


@functools.lru_cache(maxsize=1024)
def order_pieces(template: Pattern, source: Pattern) -> tuple[OrderPiece, ...]:
    """The pieces of `source` that `template` leaves unbound, in the order they appear.

    Named captures the template uses are bound; unnamed wildcards carry over by position, so
    the first `len(template.wildcards)` are bound; target alternations pair with the source's
    by position. Everything else varies within a fan-in group."""
    bound_caps = set(template.captures)
    n_wild, n_alt = len(template.wildcards), len(template.alternations)
    free_wild = [p for p in source.wildcards[n_wild:]]
    out: list[OrderPiece] = []
    w = a = 0
    seen: set[str] = set()
    for p in source.pieces:
        if p.kind in ("star", "dstar"):
            if w >= n_wild:
                label = "*" if p.kind == "star" else "**"
                out.append(OrderPiece(label if len(free_wild) == 1 else f"{label}#{w - n_wild + 1}", "wild", w))
            w += 1
        elif p.kind == "alt":
            if a >= n_alt:
                out.append(OrderPiece("{" + ",".join(p.options) + "}", "alt", a, p.options))
            a += 1
        elif p.kind in ("cap", "int", "path") and p.text not in bound_caps and p.text not in seen:
            seen.add(p.text)
            out.append(OrderPiece("{" + p.text + "}", "cap", p.text))
    return tuple(out)


def order_values(pieces: tuple[OrderPiece, ...], m: Match, source: Pattern) -> tuple[str | int, ...]:
    """What `m` bound for each order piece: the matched text, or an alternation's option index."""
    caps = dict(m.captures)
    out: list[str | int] = []
    for p in pieces:
        if p.slot == "alt":
            out.append(m.alternations[int(p.index)])
        elif p.slot == "wild":
            out.append(m.wildcards[int(p.index)] or "")
        else:
            v = caps[str(p.index)]
            out.append("" if v is None else str(v))
    return tuple(out)


def order_reader(pieces: tuple[OrderPiece, ...], source: Pattern) -> Callable[[NameMatch], tuple[str | int, ...]]:
    """`order_values` read straight from a regex match of `source.compiled`, without building the
    Match: what a fan-in of 256 experts in 61 layers does once per tensor."""
    caps_g, wild_g, alt_g = source._groups
    cap_group = {name: g for name, g, _ in caps_g}
    plan: list[tuple[str, tuple[str, ...] | None]] = []
    for p in pieces:
        if p.slot == "alt":
            plan.append(alt_g[int(p.index)])
        elif p.slot == "wild":
            plan.append((wild_g[int(p.index)], None))
        else:
            plan.append((cap_group[str(p.index)], None))

    def read(m: NameMatch) -> tuple[str | int, ...]:
        return tuple([(m.group(g) or "") if opts is None else opts.index(m.group(g)) for g, opts in plan])
    return read


def free_captures(template: Pattern, sources: Sequence[Pattern]) -> tuple[str, ...]:
    """Captures of a target template that no source pattern binds: fan-out indices, whose values
    come from the target names that match (`w1 -> experts.{e:int}.weight | unstack(0)`)."""
    bound: set[str] = set()
    for s in sources:
        bound.update(s.captures)
    return tuple(c for c in template.captures if c not in bound)


FREE_MARK = "\x00"  # never in a tensor name: stands for a fan-out index in an enumeration key


@functools.lru_cache(maxsize=256)
def fan_out_key_template(template: Pattern, free: tuple[str, ...]) -> Pattern:
    """`template` with each fan-out index replaced by FREE_MARK: rendered from a source match, it
    gives the key under which `enumerate_targets` files the target names that index covers."""
    segs = tuple(tuple(Piece("lit", FREE_MARK) if p.kind in ("cap", "int", "path") and p.text in free else p
                       for p in seg) for seg in template.segments)
    return Pattern(template.text, None, segs)


def enumerate_targets(template: Pattern, free: tuple[str, ...], names: Iterable[str]
                      ) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """The target names a template with fan-out indices can render to, filed by key (the name
    with each index replaced by FREE_MARK), each with the index values it binds, in order.

    One pass over the names for a whole rule: a rule that unstacks 256 experts in 61 layers
    matches the target inventory once, not once per source tensor."""
    k = 0
    segs = []
    for seg in template.segments:
        new: list[Piece] = []
        for p in seg:
            if p.kind in ("cap", "int", "path") and p.text in free:
                new.append(p)
            elif p.kind in ("cap", "path"):
                new.append(Piece(p.kind, f"_bound{k}"))
                k += 1
            elif p.kind in ("int", "expr"):
                new.append(Piece("int", f"_bound{k}"))
                k += 1
            else:
                new.append(p)
        segs.append(tuple(new))
    rx = Pattern(template.text, None, tuple(segs)).compiled
    out: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    groups = [f"c_{f}" for f in free]
    for name in names:
        m = rx.fullmatch(name)
        if m is None:
            continue
        spans = sorted(m.span(g) for g in groups)
        key, at = [], 0
        for a, b in spans:
            key += [name[at:a], FREE_MARK]
            at = b
        key.append(name[at:])
        out.setdefault("".join(key), []).append((tuple(str(m.group(g)) for g in groups), name))
    return out


def did_you_mean_capture(name: str, captures: tuple[str, ...]) -> str | None:
    import difflib
    close = difflib.get_close_matches(name, captures, n=1, cutoff=0.5)
    return f"did you mean `{{{close[0]}}}`?" if close else None


# A dot and a whole segment of digits after it: what MultiMatcher masks in its cache key (a leading
# digit segment stays unmasked: a finer key, still sound; no look-behind keeps the scan fast).
_DIGIT_SEGMENT = re.compile(r"\.\d+(?=\.|\Z)")


class MultiMatcher:
    """Match many names against many patterns in order; the first pattern that matches wins.

    Each pattern is indexed under its most selective literal segment, by position from the
    start (before any `**`) or from the end (after the last one). A name is then regex-checked
    only against the patterns whose anchor it carries (plus those with no anchor), in order:
    about one regex match per name instead of one per rule.
    """

    def __init__(self, patterns: tuple[Pattern, ...]):
        self.patterns = patterns
        anchors = [_anchors(p) for p in patterns]
        counts: dict[tuple[int, str], int] = {}
        for a in anchors:
            for key in a:
                counts[key] = counts.get(key, 0) + 1
        self._index: dict[tuple[int, str], list[int]] = {}
        self._always: list[int] = []
        for i, a in enumerate(anchors):
            if not a:
                self._always.append(i)
                continue
            best = min(a, key=lambda k: (counts[k], -abs(k[0])))
            self._index.setdefault(best, []).append(i)
        # masking digit segments in the cache key is sound only if no anchor is itself all digits
        # (and a literal `#` segment would share a key with the digits it stands for)
        self._mask_digits = not any(seg.isdigit() or seg == "#" for _, seg in self._index)
        self._cache: dict[str, list[tuple[int, Callable[[str], NameMatch | None]]]] = {}
        # each pattern's `compiled.fullmatch`, or its regex's own where that is what it would call
        # (no ambiguous piece: any length is safe), one Python call less per name
        self._fullmatch = [p.compiled.regex.fullmatch if p.compiled.limit is None else p.compiled.fullmatch
                           for p in patterns]

    def first_match(self, name: str) -> tuple[int, NameMatch] | None:
        """(index, regex match) of the first pattern matching `name`, or None (see `Pattern.extract`)."""
        if self._mask_digits:  # layers repeat: `layers.7.q` and `layers.8.q` share candidates
            # (one C call per name; `\d+` masks no more than the isdigit() test above allows)
            key = _DIGIT_SEGMENT.sub(".#", name)
            cands = self._cache.get(key)
            if cands is None:
                cands = self._cache[key] = [(k, self._fullmatch[k]) for k in self._candidates(name.split("."))]
        else:
            cands = [(k, self._fullmatch[k]) for k in self._candidates(name.split("."))]
        for k, fullmatch in cands:
            m = fullmatch(name)
            if m is not None:
                return k, m
        return None

    def _candidates(self, parts: list[str]) -> list[int]:
        n = len(parts)
        cands = list(self._always)
        index = self._index
        for i, seg in enumerate(parts):
            hit = index.get((i, seg))
            if hit:
                cands.extend(hit)
            hit = index.get((i - n, seg))
            if hit:
                cands.extend(hit)
        return sorted(set(cands)) if len(cands) > 1 else cands

    def first(self, name: str) -> int | None:
        """Index of the first pattern that matches `name`, or None."""
        hit = self.first_match(name)
        return None if hit is None else hit[0]


_DSTAR = (Piece("dstar"),)


def _anchors(pat: Pattern) -> list[tuple[int, str]]:
    """(position, literal) for whole-literal segments at a fixed position from the start or end."""
    segs = pat.segments
    # `**`, `{x:**}` and an alternation with a dotted option (`{q,k.proj}`) span a varying number of
    # name segments: literals are anchored only from the side that does not cross them
    flexible = [i for i, s in enumerate(segs) if s == _DSTAR or any(
        p.kind == "path" or (p.kind == "alt" and any("." in o for o in p.options)) for p in s)]
    out: list[tuple[int, str]] = []
    first_flex = flexible[0] if flexible else len(segs)
    last_flex = flexible[-1] if flexible else -1
    for i, seg in enumerate(segs):
        if len(seg) == 1 and seg[0].kind == "lit":
            if i < first_flex:
                out.append((i, seg[0].text))
            if i > last_flex:
                out.append((i - len(segs), seg[0].text))
    return out


# ---------------------------------------------------------------------------------------------
# Linear-time matching for untrusted names
#
# Names come from checkpoints, so a name is hostile input: Python's backtracking `re` takes time
# polynomial in the name's length to the number of ambiguous pieces (`*a*a*a*a*a*b` against 3000
# `a`s, `{a}_{b}_{c}_x` against 2000 `_`s, two `**` around a literal against 20k segments). A
# pattern with at most one ambiguous piece matches short names with `re` (fast, and at worst
# quadratic in a short name); anything else goes through `_linear_match`, which gives the same
# answer as `re` (the same groups: greedy, leftmost choices first) in O(pieces x length): a
# table of "the rest of the pattern matches from here" per piece, then one greedy walk that
# consults it instead of backtracking.

# `re` backtracks through at most ~len(name) ** (ambiguous pieces + 1) steps: it is used while that
# stays under this budget (a 1400-character name with one ambiguous piece, 100 with two, 37 with
# three), the linear matcher beyond
REGEX_STEP_BUDGET = 2_000_000

# token kinds: literal, `[^.]*`, `[^.]+`, `[0-9]+`, several segments, alternation, back-reference,
# and `**` leading / in the middle or at the end (an optional segment run with its dot)
_Tok = tuple[str, str, str | None, tuple[str, ...]]  # kind, literal text, group, alternation options


class LinearMatch:
    """The part of `re.Match` the planner reads, for a match made by `_linear_match`."""

    __slots__ = ("string", "_spans")

    def __init__(self, string: str, spans: dict[str, tuple[int, int] | None]):
        self.string = string
        self._spans = spans

    def groupdict(self) -> dict[str, str | None]:
        s = self.string
        return {g: None if sp is None else s[sp[0]:sp[1]] for g, sp in self._spans.items()}

    def group(self, g: str) -> str | None:
        sp = self._spans[g]
        return None if sp is None else self.string[sp[0]:sp[1]]

    def span(self, g: str) -> tuple[int, int]:
        sp = self._spans[g]
        return (-1, -1) if sp is None else sp


NameMatch = re.Match[str] | LinearMatch


class NameMatcher:
    """`fullmatch(name)` for one pattern: `re` where that is safe, the linear matcher otherwise."""

    __slots__ = ("regex", "tokens", "limit")

    def __init__(self, pat: Pattern, prefix: str = ""):
        self.regex = re.compile(_to_regex(pat, prefix))
        self.tokens = _tokens(pat, prefix)
        ambiguous = _ambiguity(self.tokens)
        # no ambiguous piece: `re` never backtracks far, whatever the length
        self.limit = int(REGEX_STEP_BUDGET ** (1 / (ambiguous + 1))) if ambiguous else None

    def fullmatch(self, name: str) -> NameMatch | None:
        if self.limit is None or len(name) <= self.limit:
            return self.regex.fullmatch(name)
        return _linear_match(self.tokens, name)


def _tokens(pat: Pattern, prefix: str) -> list[_Tok]:
    """The pattern as `_to_regex` writes it, piece by piece (the same group names)."""
    toks: list[_Tok] = []
    counters = {"u": 0, "a": 0}
    seen: set[str] = set()

    def lit(text: str) -> None:
        if toks and toks[-1][0] == "lit":
            toks[-1] = ("lit", toks[-1][1] + text, None, ())
        else:
            toks.append(("lit", text, None, ()))

    def group(kind: str) -> str:
        g = f"{prefix}{kind}{counters[kind]}"
        counters[kind] += 1
        return g

    segs = pat.segments
    for i, seg in enumerate(segs):
        if seg == (Piece("dstar"),):
            kind = "segs" if len(segs) == 1 else "lead" if i == 0 else "mid"
            toks.append((kind, "", group("u"), ()))
            continue
        if not (i == 0 or (i == 1 and segs[0] == (Piece("dstar"),))):
            lit(".")
        for p in seg:
            if p.kind == "lit":
                lit(p.text)
            elif p.kind == "star":
                toks.append(("star", "", group("u"), ()))
            elif p.kind == "alt":
                toks.append(("alt", "", group("a"), tuple(sorted(p.options, key=len, reverse=True))))
            else:
                g = f"{prefix}c_{p.text}"
                if p.text in seen:
                    toks.append(("ref", "", g, ()))
                    continue
                seen.add(p.text)
                toks.append(({"cap": "cap", "int": "int", "path": "segs"}[p.kind], "", g, ()))
    return toks


def _ambiguity(toks: list[_Tok]) -> int:
    """How many variable-width pieces could give back text to what follows them. A piece that
    stops where what follows must start (`{x}` before `.`, `{i:int}` before a non-digit) cannot."""
    n = 0
    for k, (kind, _, _, _) in enumerate(toks):
        if kind in ("lit", "alt", "ref"):
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        if nxt is None:
            continue
        head = nxt[1][:1] if nxt[0] == "lit" else ""
        if kind in ("star", "cap") and head == ".":
            continue
        if kind == "int" and head and not head.isdigit():
            continue
        n += 1
    return n


def _linear_match(toks: list[_Tok], name: str) -> LinearMatch | None:
    n = len(name)
    nd = [n] * (n + 1)       # next `.` at or after i
    ndig = [n] * (n + 1)     # next non-ASCII-digit at or after i
    bad = [n] * (n + 1)      # next `.` that ends the name or is followed by another `.`
    for i in range(n - 1, -1, -1):
        c = name[i]
        nd[i] = i if c == "." else nd[i + 1]
        ndig[i] = ndig[i + 1] if "0" <= c <= "9" else i
        bad[i] = i if c == "." and (i + 1 == n or name[i + 1] == ".") else bad[i + 1]
    ctx = (name, n, nd, ndig, bad)
    spans: dict[str, tuple[int, int] | None] = {}
    if not _solve(toks, 0, 0, {}, ctx, spans):
        return None
    for kind, _, g, _ in toks:  # every group, as `re` reports them
        if g is not None and kind != "ref":
            spans.setdefault(g, None)
    return LinearMatch(name, spans)


_Ctx = tuple[str, int, list[int], list[int], list[int]]


def _solve(toks: list[_Tok], j0: int, i0: int, bound: dict[str, str], ctx: _Ctx,
           spans: dict[str, tuple[int, int] | None]) -> bool:
    """Match toks[j0:] against name[i0:] to the end, choosing as `re` would; fills `spans`."""
    name, n, _, _, _ = ctx
    tables = _tables(toks, j0, bound, ctx)
    later_refs = {t[2] for t in toks[j0:] if t[0] == "ref"}
    i = i0
    for j in range(j0, len(toks)):
        kind, text, g, opts = toks[j]
        ok = tables[j + 1 - j0]
        if kind == "ref":
            v = bound[str(g)]
            if not name.startswith(v, i):
                return False
            i += len(v)
            continue
        choices = _choices(kind, text, opts, i, ctx)
        if g is not None and g in later_refs and kind in ("cap", "int", "segs"):
            for s, ge, e in choices:  # the value decides what the back-reference must read: try each in order
                if ok[e] and _solve(toks, j + 1, e, {**bound, g: name[s:ge]}, ctx, spans):
                    spans[g] = (s, ge)
                    return True
            return False
        for s, ge, e in choices:
            if ok[e]:
                if g is not None:
                    spans[g] = None if s < 0 else (s, ge)
                i = e
                break
        else:
            return False
    return i == n


def _choices(kind: str, text: str, opts: tuple[str, ...], i: int, ctx: _Ctx
             ) -> Iterable[tuple[int, int, int]]:
    """(group start, group end, end) of each way the token can match at i, in the order `re` tries
    them (longest first; an optional `**` that takes nothing last, its group start -1)."""
    name, n, nd, ndig, bad = ctx
    if kind == "lit":
        return [(i, i + len(text), i + len(text))] if name.startswith(text, i) else []
    if kind == "alt":
        return [(i, i + len(o), i + len(o)) for o in opts if name.startswith(o, i)]
    if kind == "star":
        return ((i, e, e) for e in range(nd[i], i - 1, -1))
    if kind == "cap":
        return ((i, e, e) for e in range(nd[i], i, -1))
    if kind == "int":
        return ((i, e, e) for e in range(ndig[i], i, -1))
    if kind == "segs":
        return ((i, e, e) for e in _segs_ends(i, ctx))
    if kind == "lead":  # `(?:(SEGS)\.)?`: the run and its dot, longest first, else nothing
        return itertools.chain(((i, e, e + 1) for e in _segs_ends(i, ctx) if e < n and name[e] == "."),
                               [(-1, -1, i)])
    # mid: `(?:\.(SEGS))?`
    present = ((i + 1, e, e) for e in _segs_ends(i + 1, ctx)) if i < n and name[i] == "." else iter(())
    return itertools.chain(present, [(-1, -1, i)])


def _segs_ends(i: int, ctx: _Ctx) -> Iterator[int]:
    """Where `[^.]+(?:\\.[^.]+)*` from i can end, longest first (the order `re` tries them)."""
    name, n, _nd, _ndig, bad = ctx
    if i >= n or name[i] == ".":
        return
    for e in range(bad[i], i, -1):
        if name[e - 1] != ".":
            yield e


def _tables(toks: list[_Tok], j0: int, bound: dict[str, str], ctx: _Ctx) -> list[bytearray]:
    """tables[k][i]: toks[j0 + k:] match name[i:] to the end (a back-reference not yet bound counts
    as the piece it repeats, so the table may say yes too often there, never no too often)."""
    name, n, nd, ndig, bad = ctx
    last = bytearray(n + 1)
    last[n] = 1
    out = [last]
    kinds = {t[2]: t[0] for t in toks if t[2] is not None and t[0] != "ref"}
    for kind, text, g, opts in reversed(toks[j0:]):
        nxt = out[-1]
        cur = bytearray(n + 1)
        if kind == "ref":
            if g in bound:
                kind, text = "lit", bound[str(g)]
            else:
                kind = kinds[str(g)]
        if kind == "lit":
            at = name.find(text)
            while at >= 0:
                if nxt[at + len(text)]:
                    cur[at] = 1
                at = name.find(text, at + 1) if text else (at + 1 if at < n else -1)
        elif kind == "alt":
            for o in opts:
                at = name.find(o)
                while at >= 0:
                    if nxt[at + len(o)]:
                        cur[at] = 1
                    at = name.find(o, at + 1)
        else:
            # first[e]: the first position >= e where the rest can start (and the piece may end)
            good = nxt
            if kind in ("segs", "lead", "mid"):
                good = bytearray(n + 1)
                for e in range(1, n + 1):
                    if kind == "lead":
                        good[e] = nxt[e] and name[e - 1] == "." and e >= 2 and name[e - 2] != "."
                    else:
                        good[e] = nxt[e] and name[e - 1] != "."
            first = [n + 1] * (n + 2)
            for e in range(n, -1, -1):
                first[e] = e if good[e] else first[e + 1]
            for i in range(n + 1):
                if kind == "star":
                    cur[i] = first[i] <= nd[i]
                elif kind == "cap":
                    cur[i] = i < n and first[i + 1] <= nd[i]
                elif kind == "int":
                    cur[i] = i < n and first[i + 1] <= ndig[i]
                elif kind == "segs":
                    cur[i] = i < n and name[i] != "." and first[i + 1] <= bad[i]
                elif kind == "lead":
                    cur[i] = nxt[i] or (i < n and name[i] != "." and first[i + 2 if i + 2 <= n else n + 1]
                                        <= min(bad[i] + 1, n))
                else:  # mid
                    cur[i] = nxt[i] or (i + 1 < n and name[i] == "." and name[i + 1] != "."
                                        and first[i + 2] <= bad[i + 1])
        out.append(cur)
    out.reverse()
    return out
