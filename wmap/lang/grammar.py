"""Loads `grammar/wmap.lark` once (it ships inside the package as `wmap/grammar/`)."""

from __future__ import annotations

import functools
from importlib import resources

from lark import Lark


def grammar_text() -> str:
    return (resources.files("wmap") / "grammar" / "wmap.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark(grammar_text(), start=["file", "statement", "call", "expr"], parser="lalr",
                propagate_positions=True, maybe_placeholders=True, cache=False)
