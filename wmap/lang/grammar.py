"""The `.wmap` parser: `grammar/wmap.lark` (shipped inside the package as `wmap/grammar/`), compiled once.

Building the LALR tables from the grammar takes a quarter of a second, which every fresh process (a `wmap
check` in a pre-commit hook, a training script) would pay before its first parse. So the tables
are built ahead of time and shipped beside this module (`parser.lalr`, written by `python -m
wmap.lang.grammar`): loading them takes a few milliseconds and writes nothing, so it works the
same from a read-only install. The grammar stays the one source of truth: the file starts with a
stamp of the grammar text, the parser options and lark's version, and when any of them differs
(the grammar was edited, another lark is installed) the parser is built from the grammar as
before. `tests/lang/test_grammar_shipped.py` fails when the shipped tables are stale.

The file is a pickle (lark's own `Lark.save` format); it is read only from this package's folder,
which is trusted like the package's code, never from a shared or writable cache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import sys
from importlib import resources
from typing import Any

from lark import Lark
from lark import __version__ as LARK_VERSION

OPTIONS: dict[str, Any] = {"start": ["file", "statement", "call", "expr"], "parser": "lalr",
                           "propagate_positions": True, "maybe_placeholders": True}
SHIPPED = "parser.lalr"


def grammar_text() -> str:
    return (resources.files("wmap") / "grammar" / "wmap.lark").read_text(encoding="utf-8")


def stamp(grammar: str) -> bytes:
    """What the shipped tables were built from: the grammar, the options and lark's version."""
    what = f"{grammar}\0{sorted(OPTIONS.items())!r}\0lark {LARK_VERSION}"
    return b"wmap-lalr sha256:" + hashlib.sha256(what.encode()).hexdigest().encode()


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    grammar = grammar_text()
    return load_shipped(grammar) or build(grammar)


def build(grammar: str) -> Lark:
    return Lark(grammar, **OPTIONS, cache=False)


def load_shipped(grammar: str) -> Lark | None:
    """The shipped tables, or None when they are missing or were built from anything else."""
    try:
        data = (resources.files("wmap.lang") / SHIPPED).read_bytes()
    except OSError:
        return None
    head, _, body = data.partition(b"\n")
    if head != stamp(grammar):
        return None
    return Lark.load(io.BytesIO(body))


def write_shipped(path: str) -> None:
    """Build the parser from the grammar and save it, stamped, to `path`."""
    grammar = grammar_text()
    buf = io.BytesIO()
    build(grammar).save(buf)
    with open(path, "wb") as f:
        f.write(stamp(grammar) + b"\n" + buf.getvalue())


if __name__ == "__main__":  # python -m wmap.lang.grammar [PATH]: regenerate the shipped tables
    write_shipped(sys.argv[1] if len(sys.argv) > 1 else str(resources.files("wmap.lang") / SHIPPED))
