"""The parser tables shipped in the package (`wmap/lang/parser.lalr`) against `grammar/wmap.lark`.

The grammar is the one source of truth; the tables are built from it by `python -m wmap.lang.grammar`
so a fresh process does not rebuild them. Stale tables would be ignored at run time (the parser is
then built from the grammar, correct but slow), so staleness fails here instead.
"""

from __future__ import annotations

from typing import Any

from lark import Lark, Tree

from tests.support import paths
from wmap.lang import grammar


def _positions(tree: Tree[Any]) -> list[tuple[Any, ...]]:
    return [(t.data, t.meta.line, t.meta.column, t.meta.end_line, t.meta.end_column)
            for t in tree.iter_subtrees() if not t.meta.empty]


def test_the_shipped_tables_were_built_from_this_grammar() -> None:
    text = (paths.ROOT / "grammar" / "wmap.lark").read_text(encoding="utf-8")
    assert grammar.load_shipped(text) is not None, \
        "wmap/lang/parser.lalr is stale: run `python -m wmap.lang.grammar` after editing grammar/wmap.lark"


def test_the_parser_in_use_is_the_shipped_one() -> None:
    """The fast path is taken: the cached parser is the deserialised one, not a rebuild."""
    assert grammar.parser().source_path == "<deserialized>"


def test_shipped_and_freshly_built_parsers_give_the_same_trees_and_positions() -> None:
    text = grammar.grammar_text()
    shipped, built = grammar.load_shipped(text), grammar.build(text)
    assert isinstance(shipped, Lark)
    specs = sorted(paths.EXAMPLES.glob("*.wmap")) + sorted((paths.ROOT / "wmap" / "recipes").glob("*/*.wmap"))
    assert len(specs) >= 10
    for spec in specs:
        src = spec.read_text(encoding="utf-8")
        a, b = shipped.parse(src, start="file"), built.parse(src, start="file")
        assert a == b and _positions(a) == _positions(b), spec.name
    for start, src in (("call", "split(0, sizes=[1, 2])"), ("expr", "config.a ?? 3 * (2 + 1)")):
        assert shipped.parse(src, start=start) == built.parse(src, start=start)


def test_edited_grammar_or_another_lark_is_not_served_from_the_shipped_tables() -> None:
    text = grammar.grammar_text()
    assert grammar.load_shipped(text + "\n// edited\n") is None
    assert grammar.stamp(text) != grammar.stamp(text + " ")
