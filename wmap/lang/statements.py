"""The statements of the `.wmap` syntax, and what a front end hands to `assemble`.

`STATEMENTS` is the one table of statement keywords with the usage line each error message
shows; the grammar (`grammar/wmap.lark`) spells the same keywords, and a test holds the two
to each other. The front ends (the `.wmap` tree builder, the YAML reader) turn text into a
list of `Statement`s in file order; `validate.assemble` turns that list into a Spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from wmap.core.errors import Span
from wmap.core.record import Record
from wmap.lang.spec import (
    Ack,
    ConfigDecl,
    Init,
    Let,
    LrScale,
    Option,
    PatternStmt,
    Rule,
    SourceDecl,
    TargetDecl,
    Use,
)

STATEMENTS: dict[str, str] = {
    "wmap": "the version line reads `wmap 1`",
    "use": 'a use reads `use "other.wmap"` (a file beside this one) or `use "hf_to_keras_hub/llama3"` (a recipe), '
           'optionally with steps for every rule it brings: `use "llama3.wmap" | cast("float16")`',
    "source": 'a source reads `source [NAME] [FRAMEWORK] "location"`, e.g. `source base torch "base.safetensors"`',
    "target": 'a target reads `target [FRAMEWORK] "location"`, e.g. `target keras "pkg.models:build"`',
    "option": "an option reads `option NAME = VALUE`, e.g. `option seed = 0`",
    "config": 'a config reads `config "config.json"` (a file beside the spec) or `config NAME` (the config.json '
              "beside source NAME's checkpoint; `config target` for the target's)",
    "let": "a let reads `let NAME = EXPRESSION`, e.g. `let head_dim = config.hidden_size // config.num_attention_heads`",
    "drop": "`drop` takes patterns: `drop **.num_batches_tracked, aux.**`",
    "init": "an init reads `init PATTERN = initialiser`, e.g. `init head.bias = zeros`",
    "keep": "`keep` takes patterns: `keep decoder.**`",
    "freeze": "`freeze` takes patterns: `freeze conv1.**, layer1.**`",
    "lr": "an lr multiplier reads `lr PATTERN * FACTOR`, e.g. `lr head.** * 10`",
    "ack": "an acknowledgement reads `ack CODE PATTERN, ...`, e.g. `ack WM310 dense.kernel`",
}
"""Statement keyword -> its usage line. A rule (`SOURCE -> TARGET`) has no keyword."""

USAGE: dict[str, str] = {
    **STATEMENTS,
    "rule": "a rule reads `SOURCE[, SOURCE] -> TARGET | transform | ...`",
    "call": "a transform call reads `name` or `name(arg, key=value)`",
    "expr": "an expression combines numbers, strings, `config.KEY`, earlier `let` names, `+ - * / // %`, "
            "`a ?? b` (b when a is absent) and min/max/int: `config.head_dim ?? config.hidden_size // heads`",
}

# Words that start a statement (or mark a rule `optional`): a bare pattern spelled like one of them
# must be quoted when printed (`fmt`), and an unknown first word is compared with them.
KEYWORDS: tuple[str, ...] = (*STATEMENTS, "optional")

ListKind = Literal["drop", "init", "keep", "freeze", "lr", "ack"]


@dataclass(frozen=True, eq=False, repr=False)
class VersionLine(Record):
    """`wmap 1` (YAML `wmap: 1`): the number as written; `assemble` checks it."""

    number: object
    span: Span


@dataclass(frozen=True, eq=False, repr=False)
class StatementList(Record):
    """One `drop`/`init`/`keep`/`freeze`/`lr`/`ack` statement: several patterns, each its own AST node."""

    kind: ListKind
    items: tuple[PatternStmt | Init | LrScale | Ack, ...]


Statement = Union[VersionLine, StatementList, SourceDecl, TargetDecl, Option, ConfigDecl, Let, Rule, Use]  # noqa: UP007
