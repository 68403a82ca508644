"""The parser module shipped in the package (`wmap/lang/_parser.py`) against `grammar/wmap.lark`.

The grammar is the one source of truth; the module is generated from it by `python -m wmap.lang.grammar`
(lark's standalone generator) so a fresh process neither builds the tables nor imports lark. A stale
module would be ignored at run time (the parser is then generated in memory, correct but slow), so
staleness fails here instead.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from lark import Lark

from tests.support import paths
from wmap.lang import grammar


def _dump(node: Any) -> Any:
    """A tree as plain data, positions and token types included (the generated module's Tree and Token
    are its own classes, so trees from it and from lark are compared through this)."""
    if hasattr(node, "data"):
        m = node.meta
        where = None if m.empty else (m.line, m.column, m.end_line, m.end_column)
        return (str(node.data), where, [_dump(c) for c in node.children])
    if node is None:
        return None
    return (node.type, str(node), node.line, node.column, node.end_line, node.end_column)


def test_the_shipped_module_was_generated_from_this_grammar() -> None:
    text = (paths.ROOT / "grammar" / "wmap.lark").read_text(encoding="utf-8")
    assert grammar.shipped(text) is not None, \
        "wmap/lang/_parser.py is stale: run `python -m wmap.lang.grammar` after editing grammar/wmap.lark"


def test_the_parser_in_use_is_the_shipped_one() -> None:
    """The fast path is taken: the module in use is the shipped one, not one generated in memory."""
    assert grammar.runtime().__name__ == "wmap.lang._parser"
    assert type(grammar.parser()).__module__ == "wmap.lang._parser"


def test_shipped_and_lark_built_parsers_give_the_same_trees_and_positions() -> None:
    """Against lark itself (the parser the generator was given), on every example and recipe."""
    text = grammar.grammar_text()
    shipped, built = grammar.parser(), grammar.build(text)
    assert isinstance(built, Lark) and not isinstance(shipped, Lark)
    specs = sorted(paths.EXAMPLES.glob("*.wmap")) + sorted((paths.ROOT / "wmap" / "recipes").glob("*/*.wmap"))
    assert len(specs) >= 10
    for spec in specs:
        src = spec.read_text(encoding="utf-8")
        assert _dump(shipped.parse(src, start="file")) == _dump(built.parse(src, start="file")), spec.name
    for start, src in (("call", "split(0, sizes=[1, 2])"), ("expr", "config.a ?? 3 * (2 + 1)")):
        assert _dump(shipped.parse(src, start=start)) == _dump(built.parse(src, start=start))


def test_an_edited_grammar_is_not_served_from_the_shipped_module() -> None:
    text = grammar.grammar_text()
    assert grammar.shipped(text + "\n// edited\n") is None
    assert grammar.stamp(text, "1.3.1") != grammar.stamp(text + " ", "1.3.1")


def test_a_stale_module_falls_back_to_a_parser_generated_from_the_grammar(tmp_path: Any) -> None:
    """In a fresh process whose shipped module is stale (here: a stamp that matches no grammar), the
    parser is generated in memory from the grammar, and specs still parse and fail the same way."""
    code = (
        "import sys, wmap.lang._parser as m\n"
        "m.STAMP = 'wmap-lalr sha256:stale'\n"
        "import wmap\n"
        "from wmap.lang import grammar\n"
        "assert grammar.runtime().__name__ == 'wmap.lang._parser_rebuilt', grammar.runtime().__name__\n"
        "print(len(wmap.parse_spec(sys.argv[1]).rules))\n"
        "try:\n"
        "    wmap.parse_spec('wmap 1\\na -> b |\\n')\n"
        "except wmap.WmapError as e:\n"
        "    print(e.diagnostics[0].code, e.diagnostics[0].span.line, e.diagnostics[0].span.column)\n")
    src = (paths.EXAMPLES / "torch_to_keras_cnn.wmap").read_text(encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", code, src], capture_output=True, text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["19", "WM100", "2", "9"]


def test_the_command_writes_a_current_module(tmp_path: Any) -> None:
    """`python -m wmap.lang.grammar PATH` writes a module stamped like the shipped one that parses the
    same trees (lark's generator orders its tables differently from run to run, so not byte for byte)."""
    out = tmp_path / "_parser.py"
    run = subprocess.run([sys.executable, "-m", "wmap.lang.grammar", str(out)], capture_output=True, text=True,
                         cwd=paths.ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = grammar._load_source(out.read_text(encoding="utf-8"), "wmap_test_fresh_parser")
    try:
        assert fresh.STAMP == grammar.runtime().STAMP
        src = (paths.EXAMPLES / "torch_to_keras_cnn.wmap").read_text(encoding="utf-8")
        assert _dump(fresh.Lark_StandAlone().parse(src, start="file")) == _dump(grammar.parser().parse(src, start="file"))
    finally:
        sys.modules.pop("wmap_test_fresh_parser", None)
