"""The transform protocol and registry.

A transform is a small immutable value (optax-style): a registered name, JSON-able
parameters, `infer` (metadata -> metadata, at plan time) and `apply` (arrays -> arrays,
at execution time). Transforms never import a framework: `apply` works through an
`ArrayOps` backend (numpy or torch), so bf16/fp16 stay native on torch.

Arity: most transforms map one array to one array. Fan-in transforms (concat, stack,
lerp, add...) take several; fan-out transforms (split, chunk) return several and must
be last in a chain. Their sizes come from the target shapes via `InferContext`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TypeVar, Union

from wmap.core.inventory import Shape, TensorMeta
from wmap.core.record import Record
from wmap.core.values import Value
from wmap.transforms.catalog import MODULE_OF

if TYPE_CHECKING:
    from wmap.transforms.ops_numpy import NDArray

Arity = Literal["1:1", "n:1", "1:n"]


@dataclass(frozen=True)
class ArrayMeta:
    """Shape and dtype of an intermediate value in a transform chain."""

    shape: Shape
    dtype: str


@dataclass(frozen=True, eq=False, repr=False)
class InferContext(Record):
    """What a transform may know at plan time besides its inputs.

    `sources` are the original source tensors of the step (with `kind`, e.g. `Conv2d`),
    `targets` the tensors the chain must produce (several for fan-out), and the two
    frameworks. `is_last` is true for the last transform in the chain, which is the one
    that may take sizes from `targets`.
    """

    sources: tuple[TensorMeta, ...]
    targets: tuple[TensorMeta, ...]
    source_framework: str | None = None
    target_framework: str | None = None
    is_last: bool = True


class TransformError(Exception):
    """Raised by `infer`/construction with a message and an optional hint; the compiler adds the span."""

    def __init__(self, message: str, hint: str | None = None, code: str = "WM301"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


A = TypeVar("A")
"""The array type of a backend: `numpy.ndarray` for NumpyOps, `torch.Tensor` for TorchOps.

`Transform.apply` is generic in it, so a transform body that only goes through `ops` is
checked once and holds for every backend."""


class ArrayOps(Protocol[A]):
    """The few array operations transforms need; implemented for numpy and torch.

    Transforms touch arrays only through these, arithmetic included (`add`, `mul`), never
    through an array's own methods or operators."""

    name: str

    def dtype_name(self, x: A) -> str: ...
    def shape(self, x: A) -> Shape: ...
    def transpose(self, x: A, perm: Sequence[int]) -> A: ...
    def reshape(self, x: A, shape: Sequence[int]) -> A: ...
    def concat(self, xs: Sequence[A], dim: int) -> A: ...
    def stack(self, xs: Sequence[A], dim: int) -> A: ...
    def split(self, x: A, sizes: Sequence[int], dim: int) -> tuple[A, ...]: ...
    def slice(self, x: A, dim: int, start: int, stop: int, step: int) -> A: ...
    def pad(self, x: A, widths: Sequence[tuple[int, int]], fill: float) -> A: ...
    def cast(self, x: A, dtype: str) -> A: ...
    def sum(self, x: A, dim: int, keepdim: bool) -> A: ...
    def mean(self, x: A, dim: int, keepdim: bool) -> A: ...
    def repeat(self, x: A, repeats: int, dim: int) -> A: ...
    def tile(self, x: A, reps: Sequence[int]) -> A: ...
    def where_abs_below(self, x: A, threshold: float, inclusive: bool = False) -> A:
        """x with entries |x| < threshold (|x| <= threshold when `inclusive`) set to zero."""
        ...
    def flip(self, x: A, dim: int) -> A: ...
    def interpolate(self, x: A, size: Sequence[int], mode: str) -> A: ...
    def rearrange(self, x: A, pattern: str, **axes: int) -> A: ...
    def full(self, shape: Sequence[int], value: float, dtype: str, like: A | None) -> A: ...
    def matmul(self, a: A, b: A) -> A: ...
    def add(self, a: A, b: A) -> A:
        """`a + b`, element-wise, for equal shapes and dtypes."""
        ...
    def mul(self, x: A, c: float) -> A:
        """`x * c` for a Python number `c`, keeping x's dtype. Transforms call it (and `add`) in the
        working precision, float32/float64, where the backends agree to the bit; on bf16/fp16
        numpy rounds `c` to the dtype first and torch does not."""
        ...
    def multiply(self, a: A, b: A) -> A:
        """`a * b`, element-wise, `b` broadcast against `a` (numpy rules), for equal float dtypes."""
        ...
    def lookup(self, x: A, table: NDArray) -> A:
        """`table[x]`: each element of the integer array `x` replaced by that entry of the 1-D numpy
        `table`, in the table's dtype (decoding packed codes)."""
        ...
    def contiguous(self, x: A) -> A: ...
    def same_bits(self, a: A, b: A) -> bool:
        """True when a and b hold the same bytes (shape and dtype included; NaN payloads compared as bits)."""
        ...
    def asarray(self, values: NDArray, like: A | None) -> A:
        """A numpy float32/float64 array as this backend's array, on `like`'s device (seeded fills)."""
        ...


JSONValue = Union[Value, list[Value]]  # noqa: UP007 (Value is a runtime Union alias)
"""A resolved parameter as `Transform.params` gives it: a spec value (`wmap.core.values.Value`,
itself recursive), with an outer tuple turned into a list."""
T = TypeVar("T", bound="Transform")


@dataclass(frozen=True)
class Transform:
    """Base class. Subclasses are frozen dataclasses whose fields are the call parameters.

    `infer` returns the transform with every parameter resolved (e.g. split sizes taken
    from the targets) and the output metadata; the resolved value is what the plan stores,
    so execution needs no context.
    """

    NAME: ClassVar[str] = ""
    ARITY: ClassVar[Arity] = "1:1"
    # Whether `apply` can return a view of its input (no copy): lets execution stream
    # pure layout changes straight into the destination with one fused copy.
    VIEW: ClassVar[bool] = False
    INVERTIBLE: ClassVar[bool] = False
    # True when `infer` resolves to a *different* transform (layout(auto) -> a preset):
    # ARITY/VIEW/INVERTIBLE are then only known from the resolved transform.
    DISPATCH: ClassVar[bool] = False
    # Name of a `tuple[tuple[str, int], ...]` field that collects keyword arguments the
    # transform does not declare (einops-style `rearrange(pattern, h=8)`), or None.
    EXTRA: ClassVar[str | None] = None
    # Name of the first field when it is a tuple of ints that may also be written as positional
    # arguments (`reshape(64, 2, 16)`, `permute(2, 3, 1, 0)`), as numpy and torch accept them.
    VARARGS: ClassVar[str | None] = None
    # True when `apply` also takes the target's current value, as its last input (after the chain's
    # inputs): a transform that fills part of a tensor and keeps the rest (`splice`). Execution reads
    # it from the target; a target without values (a new model, a file without a template) is WM602.
    READS_TARGET: ClassVar[bool] = False

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        raise NotImplementedError(f"{type(self).__name__}.infer")

    def apply(self, xs: Sequence[A], ops: ArrayOps[A]) -> tuple[A, ...]:
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def inverse(self) -> Transform | None:
        """The transform that undoes this one (for invertible plans), or None."""
        return None

    def params(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and v != f.default:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def describe(self) -> str:
        """Call syntax with resolved parameters, e.g. `split(dim=0, sizes=[64, 64, 64])`."""
        ps = self.params()
        if not ps:
            return self.NAME
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in ps.items())
        return f"{self.NAME}({inner})"


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"  # the spec syntax's spelling
    return repr(v)


class Registry(Mapping[str, type[Transform]]):
    """Every transform by name: the one registry (the grammar never lists names).

    Names, membership and iteration come from `catalog.MODULE_OF` and import nothing, so checking
    a spec's names costs no family module; looking a transform up imports the module that
    registers it, once (`explain`, the tests and anything that iterates `.items()` get them all)."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Transform]] = {}

    def __getitem__(self, name: str) -> type[Transform]:
        cls = self._classes.get(name)
        if cls is None:
            importlib.import_module(MODULE_OF[name])  # KeyError for an unknown name, as a dict's
            cls = self._classes[name]
        return cls

    def __contains__(self, name: object) -> bool:
        return name in MODULE_OF

    def __iter__(self) -> Iterator[str]:
        return iter(MODULE_OF)

    def __len__(self) -> int:
        return len(MODULE_OF)

    def add(self, cls: type[Transform]) -> None:
        if not cls.NAME:
            raise ValueError(f"{cls.__name__} has no NAME")
        if cls.NAME in self._classes:
            raise ValueError(f"transform `{cls.NAME}` registered twice")
        if MODULE_OF.get(cls.NAME) != cls.__module__:
            raise ValueError(f"transform `{cls.NAME}` ({cls.__module__}) is not listed under its module in "
                             "wmap/transforms/catalog.py, so no spec could find it: add it there")
        self._classes[cls.NAME] = cls


REGISTRY = Registry()


def register(cls: type[T]) -> type[T]:
    """Class decorator: adds a transform to the one registry (it must be listed in `catalog`)."""
    REGISTRY.add(cls)
    return cls


_HINTS: dict[type, dict[str, object]] = {}


def _type_hints(cls: type[Transform]) -> dict[str, object]:
    """A transform class's resolved annotations: resolving them evaluates strings, so once per class
    (a plan builds one transform per rule and step kind; a saved plan's load, one per distinct one)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def build(name: str, args: Sequence[Value], kwargs: Sequence[tuple[str, Value]]) -> Transform:
    """Bind call arguments to a registered transform's fields, with type coercion.

    Raises TransformError (WM103 unknown name, WM104 bad parameters).
    """
    from wmap.core.errors import did_you_mean

    cls = REGISTRY.get(name)
    if cls is None:
        raise TransformError(f"unknown transform `{name}`", did_you_mean(name, REGISTRY), code="WM103")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    hints = _type_hints(cls)
    bound: dict[str, Value] = {}
    if cls.VARARGS is not None and len(args) > 1 and all(isinstance(a, int) and not isinstance(a, bool)
                                                          for a in args):
        args = (tuple(args),)  # `reshape(64, 2, 16)` is `reshape([64, 2, 16])`, as in numpy and torch
    if len(args) > len(fields):
        raise TransformError(f"`{name}` takes at most {len(fields)} positional argument(s), got {len(args)}",
                             f"signature: {signature(cls)}", code="WM104")
    for f, v in zip(fields, args, strict=False):
        bound[f.name] = v
    names = {f.name for f in fields}
    extra: list[tuple[str, Value]] = []
    for k, v in kwargs:
        if k not in names and cls.EXTRA:
            extra.append((k, v))
            continue
        if k not in names:
            raise TransformError(f"`{name}` has no parameter `{k}`",
                                 did_you_mean(k, names) or f"signature: {signature(cls)}", code="WM104")
        if k in bound:
            raise TransformError(f"`{name}` got parameter `{k}` twice", code="WM104")
        bound[k] = v
    if extra:
        assert cls.EXTRA is not None
        given = bound.get(cls.EXTRA, ())
        pairs = [tuple(x) for x in given if isinstance(x, (tuple, list))] if isinstance(given, (tuple, list)) else []
        if not isinstance(given, (tuple, list)) or len(pairs) != len(given):
            raise TransformError(f"`{name}`: parameter `{cls.EXTRA}` must be a list of [name, value] pairs",
                                 f"signature: {signature(cls)}", code="WM104")
        bound[cls.EXTRA] = tuple(pairs) + tuple(extra)
    for f in fields:
        if f.name not in bound and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TransformError(f"`{name}` needs parameter `{f.name}`", f"signature: {signature(cls)}", code="WM104")
    coerced = {k: _coerce(name, k, v, hints.get(k)) for k, v in bound.items()}
    try:
        return cls(**coerced)
    except TransformError:
        raise
    except (TypeError, ValueError) as e:
        raise TransformError(f"bad parameters for `{name}`: {e}", f"signature: {signature(cls)}", code="WM104") from None


def _coerce(tname: str, key: str, value: Value, hint: object) -> Value:
    """Coerce parsed literals to the field's annotated type (lists -> tuples, ints -> floats)."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    targs = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in targs:
            return None
        errors = []
        for t in targs:
            if t is type(None):
                continue
            try:
                return _coerce(tname, key, value, t)
            except TransformError as e:
                errors.append(e)
        raise TransformError(f"`{tname}`: parameter `{key}` has the wrong type ({_typename(value)})",
                             f"expected {_hint_name(hint)}", code="WM104")
    if origin is tuple:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and targs and targs[-1] is Ellipsis:
            value = (value,)
        if not isinstance(value, (tuple, list)):
            raise TransformError(f"`{tname}`: parameter `{key}` must be a list, got {_typename(value)}",
                                 f"expected {_hint_name(hint)}", code="WM104")
        inner = targs[0] if targs and (len(targs) == 1 or targs[-1] is Ellipsis) else None
        if inner is None and targs:
            if len(targs) != len(value):
                raise TransformError(f"`{tname}`: parameter `{key}` needs {len(targs)} values", code="WM104")
            return tuple(_coerce(tname, key, v, t) for v, t in zip(value, targs, strict=True))
        return tuple(_coerce(tname, key, v, inner) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is typing.Any or hint is object:
        return value
    if isinstance(hint, type):
        if hint is int and isinstance(value, bool):
            raise TransformError(f"`{tname}`: parameter `{key}` must be an integer, got a boolean", code="WM104")
        if not isinstance(value, hint):
            raise TransformError(f"`{tname}`: parameter `{key}` must be {_hint_name(hint)}, got {_typename(value)}",
                                 code="WM104")
    return value


def _typename(v: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            tuple: "a list", list: "a list", type(None): "null"}.get(type(v), type(v).__name__)


def _hint_name(h: object) -> str:
    return getattr(h, "__name__", None) or str(h).replace("typing.", "")


def signature(cls: type[Transform]) -> str:
    parts = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name == cls.EXTRA:
            parts.append(f"**{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            parts.append(f.name)
        else:
            parts.append(f"{f.name}={_fmt(f.default)}")
    return f"{cls.NAME}({', '.join(parts)})"


def doc(cls: type[Transform]) -> str:
    return inspect.cleandoc(cls.__doc__ or "")


Factory = Callable[..., Transform]
