"""`wmap inspect CHECKPOINT|module:callable`: what a checkpoint or model holds, from metadata only.

Repeats are folded (`layers.{0..31}.attn.q.weight (4096, 4096) bfloat16 x32`) so a 7B model
fits on a screen; `--tree` shows the module hierarchy with tensor and parameter counts per
subtree, folding identical numbered children (`{0..31}`) the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wmap.commands.common import Output, add_format
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.names import fold, printable, template_of


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help="list a checkpoint's or model's tensors (names, shapes, dtypes)",
        description="List the tensors of a checkpoint file or directory, or of a model built by a "
                    "`module:callable` factory (on the meta device): shapes, dtypes, repeats folded, total "
                    "count and bytes. Reads headers only.")
    p.add_argument("checkpoint", metavar="CHECKPOINT|module:callable")
    p.add_argument("--framework", choices=["torch", "keras", "tf", "numpy", "safetensors"],
                   help="how to read it when the file does not say (default: detect)")
    p.add_argument("--tree", action="store_true", help="show the module hierarchy with counts per subtree")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    from wmap.run.resolve import read_inventory

    inv = read_inventory(args.checkpoint, args.framework)
    if out.fmt == "json":
        data = {"format_version": 1, **inv.to_json(), "summary": totals(inv).to_json(),
                "groups": [g.to_json() for g in groups(inv)]}
        if args.tree:
            data["tree"] = build_tree(inv.tensors).to_json()
        out.json(data)
    else:
        out.print(render_tree(inv) if args.tree else render_groups(inv))
    return 0


# -- grouping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Tensors that differ only in their numbers and share shape and dtype: one line in the listing."""

    pattern: str
    shape: tuple[int, ...]
    dtype: str
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.names)

    def to_json(self) -> dict[str, object]:
        return {"pattern": self.pattern, "shape": list(self.shape), "dtype": self.dtype, "count": self.count}


def groups(inv: Inventory) -> list[Group]:
    """Fold by (name template, shape, dtype), in first-seen order."""
    by_key: dict[tuple[str, tuple[int, ...], str], list[str]] = {}
    for t in inv.tensors:
        by_key.setdefault((template_of(t.name)[0], t.shape, t.dtype), []).append(t.name)
    return [Group(fold(names)[0][0], shape, dtype, tuple(names))
            for (_, shape, dtype), names in by_key.items()]


@dataclass(frozen=True)
class Totals:
    tensors: int
    params: int
    bytes: int
    dtypes: tuple[tuple[str, int], ...]
    tied: int

    def to_json(self) -> dict[str, object]:
        return {"tensors": self.tensors, "params": self.params, "bytes": self.bytes,
                "dtypes": dict(self.dtypes), "tied": self.tied}


def totals(inv: Inventory) -> Totals:
    dtypes: dict[str, int] = {}
    for t in inv.tensors:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
    params = sum(t.numel for t in inv.tensors)
    return Totals(len(inv), params, inv.nbytes, tuple(dtypes.items()), len(inv.tied))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # unreachable


def human_count(n: int) -> str:
    for div, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _shape(s: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _header(inv: Inventory) -> str:
    fw = f", {inv.framework}" if inv.framework else ""
    return f"{inv.label}{fw}"


def _footer(inv: Inventory) -> str:
    t = totals(inv)
    dtypes = ", ".join(f"{k} x{v}" for k, v in t.dtypes)
    tied = f" · {t.tied} tied" if t.tied else ""
    return (f"{t.tensors} tensors · {human_count(t.params)} params ({t.params:,}) · "
            f"{human_bytes(t.bytes)} ({t.bytes:,} bytes) · {dtypes}{tied}")


def render_groups(inv: Inventory) -> str:
    gs = groups(inv)
    patterns = [printable(g.pattern) for g in gs]  # escaped before aligning (Output escapes the rest)
    width = min(max((len(p) for p in patterns), default=0), 72)
    lines = [_header(inv), ""]
    for g, pattern in zip(gs, patterns, strict=True):
        count = f"  x{g.count}" if g.count > 1 else ""
        lines.append(f"  {pattern.ljust(width)}  {_shape(g.shape)} {g.dtype}{count}")
    if inv.tied:
        lines += ["", "tied (one storage):"] + [f"  {a} -> {b}" for a, b in inv.tied]
    lines += ["", _footer(inv)]
    return "\n".join(lines) + "\n"


# -- tree ----------------------------------------------------------------------------------------


@dataclass
class Node:
    """A dotted-name prefix: its children by next segment, or the tensor it names."""

    name: str
    children: dict[str, Node] = field(default_factory=dict)
    tensor: TensorMeta | None = None

    @property
    def tensors(self) -> int:
        return (1 if self.tensor else 0) + sum(c.tensors for c in self.children.values())

    @property
    def params(self) -> int:
        return (self.tensor.numel if self.tensor else 0) + sum(c.params for c in self.children.values())

    def signature(self) -> tuple[object, ...]:
        """Equal for subtrees of the same structure, shapes and dtypes (what folding `{0..31}` needs)."""
        leaf = (self.tensor.shape, self.tensor.dtype) if self.tensor else None
        return (leaf, tuple((k, c.signature()) for k, c in self.children.items()))

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.name, "tensors": self.tensors, "params": self.params}
        if self.tensor:
            d["shape"], d["dtype"] = list(self.tensor.shape), self.tensor.dtype
        if self.children:
            d["children"] = [c.to_json() for c in self.children.values()]
        return d


def build_tree(tensors: Iterable[TensorMeta]) -> Node:
    root = Node("")
    for t in tensors:
        node = root
        for seg in t.name.split("."):
            node = node.children.setdefault(seg, Node(seg))
        node.tensor = t
    return root


def _runs(children: Sequence[Node]) -> list[tuple[str, list[Node]]]:
    """Consecutive numbered children with one signature fold into a `{a..b}` run."""
    runs: list[tuple[str, list[Node]]] = []
    for c in children:
        if runs and c.name.isdigit() and runs[-1][1][-1].name.isdigit() and \
                runs[-1][1][-1].signature() == c.signature():
            runs[-1][1].append(c)
        else:
            runs.append((c.name, [c]))
    out = []
    for _, members in runs:
        label = fold([m.name for m in members])[0][0] if len(members) > 1 else members[0].name
        out.append((label, members))
    return out


def _tree_lines(node: Node, depth: int, lines: list[str]) -> None:
    for label, members in _runs(list(node.children.values())):
        n = members[0]
        pad = "  " * depth
        times = f"  x{len(members)}" if len(members) > 1 else ""
        if n.tensor is not None and not n.children:
            lines.append(f"{pad}{label}  {_shape(n.tensor.shape)} {n.tensor.dtype}{times}")
            continue
        each = " each" if len(members) > 1 else ""
        tensors = f"{n.tensors} tensor{'s' if n.tensors != 1 else ''}"
        lines.append(f"{pad}{label}/  {tensors}, {human_count(n.params)} params{each}{times}")
        if n.tensor is not None:
            lines.append(f"{pad}  (self)  {_shape(n.tensor.shape)} {n.tensor.dtype}")
        _tree_lines(n, depth + 1, lines)


def render_tree(inv: Inventory) -> str:
    lines = [_header(inv), ""]
    _tree_lines(build_tree(inv.tensors), 1, lines)
    lines += ["", _footer(inv)]
    return "\n".join(lines) + "\n"
