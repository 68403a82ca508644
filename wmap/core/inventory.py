"""Inventories: what tensors a checkpoint or model holds, from metadata only.

An inventory never holds weight data. It is what the compiler plans against,
and its fingerprint is what a saved plan checks before it runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from operator import attrgetter

from wmap.core.record import Record

Shape = tuple[int, ...]

# Canonical dtype names (numpy / ml_dtypes spelling). Widening is allowed implicitly.
DTYPE_BITS: dict[str, int] = {
    "bool": 1, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
    "int64": 64, "uint64": 64, "float8_e4m3fn": 8, "float8_e5m2": 8, "float16": 16,
    "bfloat16": 16, "float32": 32, "float64": 64, "complex64": 64, "complex128": 128,
}
FLOAT_DTYPES = frozenset({"float8_e4m3fn", "float8_e5m2", "float16", "bfloat16", "float32", "float64"})


def is_widening(src: str, dst: str) -> bool:
    """True when every value of `src` is exactly representable in `dst`."""
    if src == dst:
        return True
    if src in FLOAT_DTYPES and dst in FLOAT_DTYPES:
        if dst == "float64":
            return True
        if dst == "float32":
            return src in {"float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
        return False
    if src.startswith("int") and dst.startswith("int"):
        return DTYPE_BITS[dst] >= DTYPE_BITS[src]
    return False


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """One tensor, by name, shape and dtype.

    `name` is normalised (dots; Keras `a/b/kernel:0` -> `a.b.kernel`); `native` is the
    framework's own spelling, shown in reports. `kind` is the owning module/layer class
    (e.g. `Linear`, `Dense`, `Conv2d`), used by `layout(auto)`; `attrs` holds layer
    settings worth reporting (BatchNorm epsilon, groups, ...).
    """

    name: str
    shape: Shape
    dtype: str
    native: str | None = None
    kind: str | None = None
    attrs: tuple[tuple[str, object], ...] = field(default=(), compare=False)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return (self.numel * DTYPE_BITS.get(self.dtype, 32) + 7) // 8

    def attr(self, key: str, default: object = None) -> object:
        return dict(self.attrs).get(key, default)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.native and self.native != self.name:
            d["native"] = self.native
        if self.kind:
            d["kind"] = self.kind
        if self.attrs:
            d["attrs"] = {k: v for k, v in self.attrs if isinstance(v, (int, float, str, bool))}
        return d


@dataclass(frozen=True, eq=False, repr=False)
class Inventory(Record):
    """An ordered, name-unique collection of TensorMeta plus where it came from.

    `label` is a short, path-free description for reports (e.g. `safetensors`, `torch model`).
    `framework` is `torch`, `keras` or None (framework-neutral files such as npz).
    `tied` maps a name to the name it shares storage with (written once, reported as tied).
    """

    tensors: tuple[TensorMeta, ...]
    label: str = "inventory"
    framework: str | None = None
    tied: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {t.name: t for t in self.tensors})

    @classmethod
    def from_metas(cls, metas: Iterable[TensorMeta], label: str = "inventory",
                   framework: str | None = None, tied: Iterable[tuple[str, str]] = ()) -> Inventory:
        return cls(tuple(metas), label, framework, tuple(tied))

    @property
    def index(self) -> Mapping[str, TensorMeta]:
        return self._index  # type: ignore[attr-defined,no-any-return]

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> TensorMeta:
        return self.index[name]

    def __iter__(self) -> Iterator[TensorMeta]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def fingerprint(self) -> str:
        """A digest of names, shapes and dtypes (order-independent): what a saved plan pins.

        Computed once per inventory (it is immutable): a plan, its save and its apply all pin it."""
        cached: str | None = self.__dict__.get("_fingerprint")
        if cached is None:
            if len(self.index) == len(self.tensors):  # unique names: sorting by name alone is the same order
                blob = _rows_json(sorted(self.tensors, key=_NAME)).encode()
            else:
                rows = sorted([t.name, list(t.shape), t.dtype] for t in self.tensors)
                blob = json.dumps(rows, separators=(",", ":")).encode()
            cached = "sha256:" + hashlib.sha256(blob).hexdigest()[:32]
            object.__setattr__(self, "_fingerprint", cached)
        return cached

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "framework": self.framework,
            "tensors": [t.to_json() for t in self.tensors],
            "tied": [list(p) for p in self.tied],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Inventory:
        tensors = data.get("tensors", [])
        assert isinstance(tensors, list)
        metas = [
            TensorMeta(
                name=str(t["name"]), shape=tuple(int(x) for x in t["shape"]), dtype=str(t["dtype"]),
                native=t.get("native"), kind=t.get("kind"),
                attrs=tuple(sorted((t.get("attrs") or {}).items())),
            )
            for t in tensors
        ]
        tied = data.get("tied") or []
        assert isinstance(tied, list)
        return cls(tuple(metas), str(data.get("label", "inventory")),
                   data.get("framework") if isinstance(data.get("framework"), str) else None,  # type: ignore[arg-type]
                   tuple((str(a), str(b)) for a, b in tied))


_NAME = attrgetter("name")
_SHAPE_DTYPE = attrgetter("shape", "dtype")


def _rows_json(tensors: Sequence[TensorMeta]) -> str:
    """`json.dumps([[name, shape, dtype], ...], separators=(",", ":"))`, written with each distinct
    (shape, dtype) encoded once: a 1M-tensor inventory has a handful, and its names are escaped in
    C by the encoder json.dumps itself uses (ensure_ascii), so nothing is done per tensor in Python."""
    if not tensors:
        return "[]"
    pairs = list(map(_SHAPE_DTYPE, tensors))
    tails = {sd: json.dumps(sd, separators=(",", ":"))[1:-1] for sd in set(pairs)}  # `[4,4],"float32"`
    names = map(encode_basestring_ascii, map(_NAME, tensors))
    if len(tails) == 1:  # one shape and dtype throughout: the rows differ only by name
        tail = next(iter(tails.values()))
        return "[[" + f",{tail}],[".join(names) + f",{tail}]]"
    return "[[" + "],[".join(map(",".join, zip(names, map(tails.__getitem__, pairs)))) + "]]"


def normalise_name(native: str) -> str:
    """Keras/TF variable paths to dotted names: `dense_1/kernel:0` -> `dense_1.kernel`."""
    name = native
    if name.endswith(":0"):
        name = name[:-2]
    return name.replace("/", ".")
