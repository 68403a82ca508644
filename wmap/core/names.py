"""Helpers over tensor names: folding repeats, nearest names and wrapper-prefix detection.

Folding turns `layers.0.q`, `layers.1.q`, ... `layers.31.q` into `layers.{0..31}.q`, so a
user sees one line per cause rather than hundreds.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

FACTORY_SYNTAX = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
"""A `module:callable` reference (`pkg.models:build`, `models:Net.tiny`): dotted ASCII names on both
sides of one colon. The one spelling of the rule: the factory resolver, the formatter and the YAML
schema (`specs/wmap.schema.json`, held to it by a test) all use it."""
_FACTORY = re.compile(FACTORY_SYNTAX)


def is_factory_syntax(text: str) -> bool:
    return bool(_FACTORY.match(text))


_SPLIT_DIGITS = re.compile(r"([0-9]+)")  # ASCII digits only: an index is never `٣`
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "base_model.model.", "backbone.", "encoder.", "transformer.")


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that compares digit runs as numbers: `experts.2` < `experts.10`.

    Text and digit runs alternate in the key (`re.split` with a group always yields text
    first), so two keys compare position by position without mixing types. A digit run is
    `(value, text)`: `01` and `1` sort together but stay distinct, which is what lets a
    range check report them as a clash rather than lose one."""
    parts = _SPLIT_DIGITS.split(text)
    return tuple((int(p), p) if i % 2 else p for i, p in enumerate(parts))


def template_of(name: str) -> tuple[str, tuple[int, ...]]:
    """`layers.12.attn` -> (`layers.{}.attn`, (12,))."""
    parts = _SPLIT_DIGITS.split(name)  # one pass: [text, digits, text, digits, ..., text]
    return "{}".join(parts[0::2]), tuple(map(int, parts[1::2]))


def split_runs(names: Sequence[str]) -> tuple[str, list[str]] | None:
    """Names as (their templates joined by NUL, all their digit runs in order), from one regex pass
    over all of them: what `fold` and a plan's render need, without a call per name. None when a
    name holds NUL or a brace (then a template's `{}`s would not be exactly its digit runs)."""
    joined = "\x00".join(names)
    if joined.count("\x00") != len(names) - 1 or "{" in joined or "}" in joined:
        return None
    parts = _SPLIT_DIGITS.split(joined)
    return "{}".join(parts[0::2]), parts[1::2]


def _canonical(digits: str) -> bool:
    return digits == "0" or not digits.startswith("0")


def fold_numbers(values: Sequence[str]) -> str:
    """Digit strings as a range or a set, in numeric order, each printed exactly as it is:
    `{0..11}`, `{1,3,7}`, `{000..011}` (zero-padded indices keep their padding)."""
    vals = sorted(set(values), key=lambda v: (int(v), v))
    if len(vals) == 1:
        return vals[0]
    nums = [int(v) for v in vals]
    padded = len({len(v) for v in vals}) == 1
    if (all(map(_canonical, vals)) or padded) and len(set(nums)) == len(nums) and \
            nums == list(range(nums[0], nums[-1] + 1)):
        return f"{{{vals[0]}..{vals[-1]}}}"
    return "{" + ",".join(vals) + "}"


def ranges_text(values: Iterable[str]) -> str:
    """Digit strings as runs, without braces: `0..6, 8..11` (each printed as it is spelled)."""
    vals = sorted(set(values), key=lambda v: (int(v), v))
    runs: list[list[str]] = []
    for v in vals:
        if runs and int(v) == int(runs[-1][-1]) + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def fold(names: Iterable[str]) -> list[tuple[str, int]]:
    """Fold names that differ only in numbers: [(folded, count)], in first-seen order."""
    names = names if isinstance(names, (list, tuple)) else list(names)
    runs = split_runs(names) if len(names) > 1 else None
    if runs is not None:
        return fold_runs(*runs)
    groups: dict[str, list[list[str]]] = defaultdict(list)
    order: list[str] = []
    for n in names:
        parts = _SPLIT_DIGITS.split(n)
        t = "{}".join(parts[0::2])
        if t not in groups:
            order.append(t)
        groups[t].append(parts[1::2])
    return _fold_groups((t, len(groups[t]), list(zip(*groups[t])) if groups[t][0] else []) for t in order)


def fold_runs(templates: str, digits: Sequence[str]) -> list[tuple[str, int]]:
    """`fold` from `split_runs`' output (several calls' outputs may be concatenated, templates
    joined by NUL). One template throughout (a fan-in's experts): its columns are strided slices."""
    rows_of = templates.split("\x00")
    first, count = rows_of[0], len(rows_of)
    if rows_of.count(first) == count:
        k = first.count("{}")
        return _fold_groups([(first, count, [digits[i::k] for i in range(k)])])
    groups: dict[str, list[Sequence[str]]] = {}
    at = 0
    for t in rows_of:
        n = t.count("{}")
        rows = groups.get(t)
        if rows is None:
            rows = groups[t] = []
        rows.append(digits[at:at + n])
        at += n
    return _fold_groups((t, len(rows), list(zip(*rows)) if rows[0] else []) for t, rows in groups.items())


def _fold_groups(groups: Iterable[tuple[str, int, Sequence[Sequence[str]]]]) -> list[tuple[str, int]]:
    """(template, count, digit columns) -> (folded, count)."""
    out: list[tuple[str, int]] = []
    for t, count, cols in groups:
        parts = t.split("{}")
        text = parts[0]
        for i, col in enumerate(cols):
            text += fold_numbers(col) + parts[i + 1]
        out.append((text, count))
    return out


def fold_text(names: Iterable[str], limit: int = 6) -> str:
    folded = fold(names)
    shown = ", ".join(f"`{f}`" + (f" ({n})" if n > 1 else "") for f, n in folded[:limit])
    if len(folded) > limit:
        shown += f", and {len(folded) - limit} more group(s)"
    return shown


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    cands = list(candidates)
    if len(cands) > 5000:  # keep hints cheap on huge inventories: compare within the same template first
        t, _ = template_of(name)
        same = [c for c in cands if template_of(c)[0] == t]
        cands = same or cands[:5000]
    import difflib  # for a hint: imported when one is made

    return difflib.get_close_matches(name, cands, n=n, cutoff=0.5)


def detect_prefix(unmatched: Sequence[str], wanted: Sequence[str]) -> tuple[str, str] | None:
    """A wrapper prefix explaining why names do not line up: ('strip', 'module.') or ('add', 'model.').

    Looks for a prefix that, removed from (or added to) the unmatched names, makes most of them
    hit the wanted set. Works for stacked wrappers such as `module._orig_mod.` too.
    """
    want = set(wanted)
    if not unmatched or not want:
        return None
    sample = list(unmatched)[:200]
    candidates: dict[str, int] = defaultdict(int)
    for n in sample:
        parts = n.split(".")
        for k in range(1, min(len(parts), 4)):
            pre = ".".join(parts[:k]) + "."
            if n[len(pre):] in want:
                candidates[pre] += 1
    if candidates:
        pre, hits = max(candidates.items(), key=lambda kv: (kv[1], -len(kv[0])))
        if hits >= max(1, len(sample) // 3):
            return ("strip", pre)
    for pre in WRAPPER_PREFIXES:
        hits = sum(1 for n in sample if pre + n in want)
        if hits >= max(1, len(sample) // 3):
            return ("add", pre)
    # the wanted side may carry a prefix the unmatched side lacks, in a less common form
    wanted_prefixes: dict[str, int] = defaultdict(int)
    for w in list(want)[:500]:
        parts = w.split(".")
        for k in range(1, min(len(parts), 4)):
            wanted_prefixes[".".join(parts[:k]) + "."] += 1
    for pre, _ in sorted(wanted_prefixes.items(), key=lambda kv: -kv[1])[:20]:
        hits = sum(1 for n in sample if pre + n in want)
        if hits >= max(1, len(sample) // 3):
            return ("add", pre)
    return None


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` safe to show on a terminal: every character that is not printable (control
    characters such as ESC and BEL, lone surrogates, bidi overrides) as a Python-style escape
    (`\\x1b`, `\\ud800`, `\\u202e`); printable Unicode is kept as it is. With `keep_newlines`,
    line breaks stay line breaks (for whole reports and diagnostics)."""
    if keep_newlines and "\n" in text:
        return "\n".join(printable(line) for line in text.split("\n"))
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


_ASCII_DIGITS = frozenset("0123456789")


def successor_split(a: str, b: str) -> tuple[str, int, str] | None:
    """(prefix, n, suffix) when `a` is `prefix + str(n) + suffix` and `b` is `prefix + str(n + 1) +
    suffix`: `experts.9.w`, `experts.10.w` -> (`experts.`, 9, `.w`). The number is the whole ASCII
    digit run (the prefix never ends in a digit, the suffix never starts with one) and spelled as
    `str` spells it (no leading zeros); None otherwise."""
    end = min(len(a), len(b))
    p = 0
    while p < end and a[p] == b[p]:
        p += 1
    while p > 0 and a[p - 1] in _ASCII_DIGITS:  # back to the start of the number that differs
        p -= 1
    q = p
    while q < len(a) and a[q] in _ASCII_DIGITS:
        q += 1
    digits = a[p:q]
    if not digits or q - p > 18 or str(int(digits)) != digits:  # none, huge, or leading zeros
        return None
    n = int(digits)
    return (a[:p], n, a[q:]) if b == f"{a[:p]}{n + 1}{a[q:]}" else None


def numbered_run(names: Sequence[str]) -> tuple[str, int, str] | None:
    """(prefix, first, suffix) when the names are `prefix + str(first + k) + suffix` for k = 0, 1, ...
    (at least two of them): a fan-in's experts, in order."""
    if len(names) < 2:
        return None
    split = successor_split(names[0], names[1])
    if split is None:
        return None
    prefix, first, suffix = split
    return split if [f"{prefix}{k}{suffix}" for k in range(first, first + len(names))] == names else None
