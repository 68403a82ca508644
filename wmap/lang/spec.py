"""The Spec AST: frozen dataclasses shared by both syntaxes (their `__eq__`, `__hash__` and
`__repr__` from `wmap.core.record.Record`).

Spans and comments are excluded from equality, so a `.wmap` file and the YAML
file that says the same thing compare equal. A node's `comments` are its leading
comment lines (`# ...`); one that starts with a space was on the node's own line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from wmap.core.errors import Span
from wmap.core.record import Record
from wmap.core.values import Ref, Scalar, Value  # noqa: F401  (re-exported: the AST's values)

NO_SPAN = Span(None, 0, 0)
DEFAULT_SOURCE = "src"


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)  # type: ignore[return-value]


def _comments() -> tuple[str, ...]:
    return field(default=(), compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True, eq=False, repr=False)
class Call(Record):
    """A transform or initialiser call: `name(arg, ..., key=value)`; bare `name` has no args."""

    name: str
    args: tuple[Value, ...] = ()
    kwargs: tuple[tuple[str, Value], ...] = ()
    span: Span = _span()


@dataclass(frozen=True, eq=False, repr=False)
class SourceDecl(Record):
    """`source NAME = "LOCATION" (framework)`: a named source the rules read (`NAME:pattern`)."""

    name: str
    location: str
    framework: str | None = None
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class TargetDecl(Record):
    """`target = "LOCATION" (framework)`: where the rules write."""

    location: str
    framework: str | None = None
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Option(Record):
    """`option NAME = VALUE`: one of the settings in OPTIONS (dtype, strict, strip_prefix, ...)."""

    name: str
    value: Value
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Rule(Record):
    """`SOURCE[, SOURCE...] -> TARGET | call | call`.

    Several source patterns feed multi-input transforms (lerp, add, concat...);
    an alternation on one side routes one tensor to many targets or many to one.
    """

    sources: tuple[str, ...]
    target: str
    via: tuple[Call, ...] = ()
    optional: bool = False
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class PatternStmt(Record):
    """A pattern inside drop/keep/freeze. A leading `?` marks it as allowed to match nothing."""

    pattern: str
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Init(Record):
    """`init PATTERN = CALL`: targets no rule fills, set by an initialiser (`zeros`, `normal(std=0.02)`, `copy(...)`)."""

    pattern: str
    call: Call
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class LrScale(Record):
    """`lr PATTERN * FACTOR`: a learning-rate multiplier recorded for the matching targets."""

    pattern: str
    factor: float
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Ack(Record):
    """`ack WM310 dense.kernel`: a warning of that code about a tensor the pattern matches has been
    reviewed; the plan lists it as acknowledged instead of warning. An ack that matches no warning is
    itself reported (WM212), so a stale one does not hide the next real warning."""

    code: str
    pattern: str
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


# -- sizes from the model's config: `config` and `let` -----------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ConfigDecl(Record):
    """Where a spec's `config.KEY` values come from: `config "config.json"` (a JSON file, relative to
    the spec) or `config NAME` (the `config.json` in the folder of source NAME's checkpoint, or of
    the target's with `config target`: where Hugging Face keeps it)."""

    path: str | None = None
    endpoint: str | None = None
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Num(Record):
    """A number in a `let` expression or an argument."""

    value: int | float


@dataclass(frozen=True, eq=False, repr=False)
class Text(Record):
    """A string in a `let` expression or an argument."""

    value: str


@dataclass(frozen=True, eq=False, repr=False)
class Key(Record):
    """`config.text_config.num_heads`: a value of the config, by its path of keys."""

    path: tuple[str, ...]
    span: Span = _span()


@dataclass(frozen=True, eq=False, repr=False)
class Name(Record):
    """An earlier `let` binding, by name."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, eq=False, repr=False)
class BinOp(Record):
    """`a + b`, `a - b`, `a * b`, `a / b`, `a // b`, `a % b`, and `a ?? b` (b when a is absent or null)."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, eq=False, repr=False)
class Neg(Record):
    """`-operand` in a `let` expression."""

    operand: Expr


@dataclass(frozen=True, eq=False, repr=False)
class Fn(Record):
    """`min(a, b, ...)`, `max(a, b, ...)`, `int(a)`."""

    name: str
    args: tuple[Expr, ...]
    span: Span = _span()


Expr = Union[Num, Text, Key, Name, BinOp, Neg, Fn]  # noqa: UP007
FUNCTIONS = ("min", "max", "int")


@dataclass(frozen=True, eq=False, repr=False)
class Let(Record):
    """`let heads = config.num_attention_heads`: a name for a value, used as `$heads` in transform
    and initialiser arguments and in index arithmetic (`{i+$first}`)."""

    name: str
    expr: Expr
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Use(Record):
    """`use "llama3.wmap" | cast("float16")`: another spec's statements, as if written here.

    `path` is a file relative to the spec that says `use` (a name ending in `.wmap`, `.yaml` or `.yml`),
    or else a recipe by name (`hf_to_keras_hub/llama3`: a file under `wmap/recipes/`), so a spec that
    builds on a recipe works from any folder. `via` is appended to the chain of every rule the used
    spec brings in (its own `use`s' rules included): the one way to change them all at once."""

    path: str
    via: tuple[Call, ...] = ()
    span: Span = _span()
    comments: tuple[str, ...] = _comments()


@dataclass(frozen=True, eq=False, repr=False)
class Spec(Record):
    """A whole mapping spec, from either syntax: its declarations and statements, each with its span."""

    version: int
    sources: tuple[SourceDecl, ...] = ()
    target: TargetDecl | None = None
    options: tuple[Option, ...] = ()
    rules: tuple[Rule, ...] = ()
    drop: tuple[PatternStmt, ...] = ()
    init: tuple[Init, ...] = ()
    keep: tuple[PatternStmt, ...] = ()
    freeze: tuple[PatternStmt, ...] = ()
    lr: tuple[LrScale, ...] = ()
    config: ConfigDecl | None = None
    lets: tuple[Let, ...] = ()
    ack: tuple[Ack, ...] = ()
    uses: tuple[Use, ...] = ()
    path: str | None = field(default=None, compare=False)
    text: str | None = field(default=None, compare=False, repr=False)
    trailing_comments: tuple[str, ...] = _comments()
    # After `use`s are resolved: every file they brought in, (path, text), so that a diagnostic about an
    # included rule shows that file's line. Its statements are already in the fields above.
    included: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def option(self, name: str, default: Value = None) -> Value:
        for opt in self.options:
            if opt.name == name:
                return opt.value
        return default

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    def texts(self) -> dict[str, str]:
        """File -> text for every file the spec's statements come from: what a diagnostic quotes."""
        return {self.path or "<spec>": self.text or "", **dict(self.included)}


# Options the language knows, with their types and defaults. Unknown options are errors (WM105).
OPTIONS: dict[str, tuple[type | tuple[type, ...], Value, str]] = {
    "strict": (bool, True, "every source used or dropped, every target filled, initialised or kept"),
    "seed": (int, 0, "seed for `init`; the same seed gives the same weights"),
    "dtype": (str, "widen", "dtype policy: `strict` (exact), `widen` (lossless casts only), `target` (cast to target)"),
    "strip_prefix": ((str, tuple), None, "prefix(es) removed from source names before matching, e.g. `module.`"),
    "target_strip_prefix": ((str, tuple), None, "prefix(es) removed from target names before matching"),
    "nonfinite": (str, "allow", "NaN/Inf in a value about to land: `error` (refuse before any write; one more read of every value), `warn`, or `allow` (no scan)"),
    "bn_eval": (bool, False, "put BatchNorm layers inside frozen parts into eval mode"),
    "shard_size": (str, "5GB", "largest safetensors shard when writing files, e.g. `2GB`"),
}
DTYPE_POLICIES = ("strict", "widen", "target")
NONFINITE_POLICIES = ("error", "warn", "allow")
