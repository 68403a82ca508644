"""Helpers over tensor names: folding repeats, nearest names and wrapper-prefix detection.

Folding turns `layers.0.q`, `layers.1.q`, ... `layers.31.q` into `layers.{0..31}.q`, so a
user sees one line per cause rather than hundreds.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

_DIGITS = re.compile(r"\d+")
_SPLIT_DIGITS = re.compile(r"(\d+)")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "base_model.model.", "backbone.", "encoder.", "transformer.")


def template_of(name: str) -> tuple[str, tuple[int, ...]]:
    """`layers.12.attn` -> (`layers.{}.attn`, (12,))."""
    parts = _SPLIT_DIGITS.split(name)  # one pass: [text, digits, text, digits, ..., text]
    return "{}".join(parts[0::2]), tuple(map(int, parts[1::2]))


def _fold_numbers(values: Sequence[int]) -> str:
    vals = sorted(set(values))
    if len(vals) == 1:
        return str(vals[0])
    if vals == list(range(vals[0], vals[-1] + 1)):
        return f"{{{vals[0]}..{vals[-1]}}}"
    return "{" + ",".join(str(v) for v in vals) + "}"


def fold(names: Iterable[str]) -> list[tuple[str, int]]:
    """Fold names that differ only in numbers: [(folded, count)], in first-seen order."""
    groups: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    order: list[str] = []
    for n in names:
        t, nums = template_of(n)
        if t not in groups:
            order.append(t)
        groups[t].append(nums)
    out: list[tuple[str, int]] = []
    for t in order:
        rows = groups[t]
        cols = list(zip(*rows)) if rows and rows[0] else []
        parts = t.split("{}")
        text = parts[0]
        for i, col in enumerate(cols):
            text += _fold_numbers(col) + parts[i + 1]
        out.append((text, len(rows)))
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
