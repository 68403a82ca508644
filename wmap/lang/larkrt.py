"""lark's classes as the parser in use defines them (see `wmap/lang/grammar.py`).

The generated parser module carries its own copy of lark's runtime, so its trees, tokens and
exceptions are its classes, not the installed lark's: the tree builder must subclass its
`Transformer` and catch its `UnexpectedInput`. Type checkers see the installed lark's declarations,
which the generator copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lark import Token, Transformer, Tree, v_args
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
    from lark.tree import Meta
else:
    from wmap.lang.grammar import runtime

    _rt = runtime()
    Meta, Token, Transformer, Tree, v_args = _rt.Meta, _rt.Token, _rt.Transformer, _rt.Tree, _rt.v_args
    UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError = (
        _rt.UnexpectedCharacters, _rt.UnexpectedInput, _rt.UnexpectedToken, _rt.VisitError)

__all__ = ["Meta", "Token", "Transformer", "Tree", "UnexpectedCharacters", "UnexpectedInput", "UnexpectedToken",
           "VisitError", "v_args"]
