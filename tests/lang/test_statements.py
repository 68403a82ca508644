"""The grammar, the tree builder and the usage text agree on the statements.

The keywords are written in `grammar/wmap.lark` (the syntax's single source of truth) and in
`lang/statements.py` (with the usage line every error shows): this test holds them together, so
a statement added to one and not the other fails here, not in a user's error message.
"""

from __future__ import annotations

import re

from lark import Transformer

from tests.support import paths
from wmap.lang.dsl import _Builder
from wmap.lang.statements import KEYWORDS, STATEMENTS, USAGE

GRAMMAR = (paths.ROOT / "grammar" / "wmap.lark").read_text(encoding="utf-8")
LITERALS = {"true", "false", "null"}  # values, not statements


def grammar_keywords() -> set[str]:
    code = "\n".join(line.split("//")[0] for line in GRAMMAR.splitlines())
    return set(re.findall(r'"([a-z]+)"', code)) - LITERALS


def grammar_statements() -> set[str]:
    body = re.search(r"\?statement:(.*?)\n\n", GRAMMAR, re.S)
    assert body is not None
    return set(re.findall(r"[a-z]+", body.group(1)))


def test_the_grammar_and_the_statement_table_name_the_same_keywords() -> None:
    assert grammar_keywords() == set(KEYWORDS)
    # the grammar calls the `wmap 1` line `version`; a rule has no keyword
    assert grammar_statements() - {"rule", "version"} == set(STATEMENTS) - {"wmap"}


def test_every_statement_has_a_usage_line_and_a_builder() -> None:
    assert set(USAGE) == set(STATEMENTS) | {"rule", "call", "expr"}
    for rule in grammar_statements():
        assert callable(getattr(_Builder, rule, None)) and getattr(_Builder, rule) is not getattr(Transformer, rule, None), rule
