"""The `.wmap` parser: `grammar/wmap.lark` (shipped inside the package as `wmap/grammar/`), compiled ahead of time.

A fresh process (a `wmap check` in a pre-commit hook, a training script) would otherwise pay for
building the LALR tables (a quarter of a second) and for importing lark itself (its grammar
compiler, its Earley and CYK front ends, ~15-25 ms) before its first parse. So `python -m
wmap.lang.grammar` runs lark's own standalone generator (`lark.tools.standalone`) on the grammar
and writes the result beside this module as `_parser.py`: lark's LALR runtime (trees, tokens,
transformers, the exceptions) with the tables as data, and no import of lark. The grammar stays
the one source of truth: the module carries a stamp of the grammar text, the parser options and
the lark version that generated it, and when the grammar or the options differ from what it was
generated from, the same generator (from the installed lark) runs in memory on the grammar as it is:
slower, but the same parser and the same classes. The installed lark's version no longer matters
to the shipped module, which imports nothing of lark's. `tests/lang/test_grammar_shipped.py` fails when the shipped module is stale.

The generated module is lark's code under the licence its generator states in the file's header
(MPL-2.0); it is written only by this command, never edited by hand, and is excluded from ruff
and mypy. `wmap.lang.larkrt` is where the rest of wmap takes lark's classes from.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from lark import Lark

OPTIONS: dict[str, Any] = {"start": ["file", "statement", "call", "expr"], "parser": "lalr",
                           "propagate_positions": True, "maybe_placeholders": True}
SHIPPED = "_parser"  # wmap/lang/_parser.py
HERE = os.path.dirname(os.path.abspath(__file__))


def grammar_text() -> str:
    # Read beside the package's modules, as `_parser.py` is imported: importlib.resources is not
    # imported on the way to a parse.
    with open(os.path.join(HERE, os.pardir, "grammar", "wmap.lark"), encoding="utf-8") as f:
        return f.read()


def stamp(grammar: str, lark_version: str) -> str:
    """What a generated parser was built from: the grammar, the options and lark's version."""
    what = f"{grammar}\0{sorted(OPTIONS.items())!r}\0lark {lark_version}"
    return "wmap-lalr sha256:" + hashlib.sha256(what.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def runtime() -> ModuleType:
    """The parser module in use: the shipped one when it was generated from this grammar, else the
    same generator's output for the grammar as it is now, built in memory."""
    grammar = grammar_text()
    return shipped(grammar) or _load_source(generate(grammar), f"wmap.lang.{SHIPPED}_rebuilt")


def parser() -> Lark:
    """The parser, ready to `parse`: an instance of the generated module's copy of lark's `Lark`
    class (typed as lark's own, which it was copied from)."""
    return _cached_parser(runtime())


@functools.lru_cache(maxsize=2)
def _cached_parser(module: ModuleType) -> Lark:
    return cast("Lark", module.Lark_StandAlone())


def shipped(grammar: str) -> ModuleType | None:
    """The shipped module, or None when it is missing or was generated from anything else."""
    try:
        module = importlib.import_module(f"wmap.lang.{SHIPPED}")
    except ImportError:
        return None
    if getattr(module, "STAMP", None) != stamp(grammar, getattr(module, "__version__", "")):
        return None
    return module


def build(grammar: str) -> Lark:
    """lark's own parser for the grammar (the generator's input; tests compare against it)."""
    from lark import Lark
    return Lark(grammar, **OPTIONS, cache=False)


_OPTIONAL_REGEX = """try:
    import regex
    _has_regex = True
except ImportError:
    _has_regex = False
"""


def generate(grammar: str) -> str:
    """The standalone parser module's source for `grammar`, stamped."""
    from lark import __version__ as lark_version
    from lark.tools.standalone import gen_standalone

    buf = io.StringIO()
    gen_standalone(build(grammar), out=buf)
    body = buf.getvalue()
    # lark's generated code imports the third-party `regex` module when it is installed (transformers
    # brings it), only to size terminals that use Unicode property classes (`\p{...}`); the lexer
    # itself uses `re`. The grammar has no such class, so the shipped module drops the import: 7 ms
    # less in every process that parses a spec, and the same code path wherever it runs.
    if _OPTIONAL_REGEX not in body:
        raise RuntimeError("lark's standalone output no longer has the optional `regex` import this "
                           "generator replaces: check the new output and update _OPTIONAL_REGEX")
    body = body.replace(_OPTIONAL_REGEX, "_has_regex = False  # wmap: `re` only (see wmap/lang/grammar.py)\n")
    head = (f"# Generated by `python -m wmap.lang.grammar` from grammar/wmap.lark with lark {lark_version}'s\n"
            "# standalone generator; do not edit (see wmap/lang/grammar.py).\n"
            f"STAMP = {stamp(grammar, lark_version)!r}\n")
    return head + body


def _load_source(source: str, name: str) -> ModuleType:
    module = ModuleType(name)
    sys.modules[name] = module  # its dataclasses look their module up by name
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def write_shipped(path: str) -> None:
    """Generate the parser module from the grammar and write it to `path`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(generate(grammar_text()))


if __name__ == "__main__":  # python -m wmap.lang.grammar [PATH]: regenerate the shipped parser module
    write_shipped(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, SHIPPED + ".py"))
