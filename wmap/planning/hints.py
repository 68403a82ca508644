"""Hints for matching errors: wrapper prefixes, nearest names, and who claimed what first."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from wmap.core.names import WRAPPER_PREFIXES, detect_prefix, nearest
from wmap.lang import patterns as P


def _prefix_hint(pat: P.Pattern, names: Sequence[str], option: str) -> str | None:
    """Would the pattern match if names lost (or gained) a wrapper prefix?"""
    # names grouped by their first segment once: one pass over the names, not one per prefix
    by_first: dict[str, list[str]] = {}
    for n in names:
        head, dot, tail = n.partition(".")
        if dot:
            by_first.setdefault(head + ".", []).append(tail)
    for pre in dict.fromkeys(list(WRAPPER_PREFIXES) + sorted(by_first)):
        if pre in by_first:
            stripped = by_first[pre]
        else:  # a wrapper of several segments (`module._orig_mod.`)
            stripped = [n[len(pre):] for n in by_first.get(pre.partition(".")[0] + ".", ()) and names
                        if n.startswith(pre)]
        if stripped and any(pat.compiled.fullmatch(n) for n in stripped):
            return f"names start with `{pre}`; add `option {option} = \"{pre}\"`, or write `{pre}{pat.text}`"
    for pre in WRAPPER_PREFIXES:
        if pat.text.startswith(pre):
            rest = P.parse(pat.text[len(pre):]) if len(pat.text) > len(pre) else None
            if rest is not None and any(rest.compiled.fullmatch(n) for n in names):
                return f"the names have no `{pre}` prefix; write `{pat.text[len(pre):]}`"
    return None


def no_match_hint(pat: P.Pattern, names: Sequence[str], claimed: Collection[tuple[str, str]], src: str | None,
                  what: str, claimed_by: str | None = None) -> str:
    """Why a pattern matched nothing, most likely cause first."""
    if claimed_by:
        return claimed_by + "; reorder the rules or narrow the earlier pattern"
    option = "strip_prefix" if what in ("rule", "drop") else "target_strip_prefix"
    hint = _prefix_hint(pat, names, option)
    if hint:
        return hint
    probe = pat.text.lstrip("?")
    if ":" in probe and pat.source:
        probe = probe.split(":", 1)[1]
    near = nearest(probe.replace("{", "").replace("}", "").replace("*", ""), names)
    if near:
        return "nearest names: " + ", ".join(f"`{n}`" for n in near)
    tail = " (prefix with `?` if it may match nothing)" if what != "rule" else " (mark the rule `optional` if that is expected)"
    side = "source" if what in ("rule", "drop") else "target"
    return f"no {side} tensor looks like this{tail}"


def target_missing_hint(missing: Sequence[str], targets: Sequence[str]) -> str:
    pre = detect_prefix(missing, targets)
    if pre is not None:
        kind, p = pre
        if kind == "add":
            return f"target names start with `{p}`: write it in the target template"
        return f"the target has no `{p}` prefix: remove it from the target template"
    near = nearest(missing[0], targets)
    if near:
        return f"for `{missing[0]}` the nearest target names are " + ", ".join(f"`{n}`" for n in near)
    return "check the target template against `wmap inspect TARGET`"
