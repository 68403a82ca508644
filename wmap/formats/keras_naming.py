"""Stable names for a built Keras model's variables: relative to the model, the same in every process.

Keras names a variable by the path of the layers it was built in (`variable.path`,
`sequential_1/dense_3/kernel`), and names a layer it was not given a name for from a process-wide
counter: the second Sequential a process builds is `sequential_1`, its Dense layers `dense_2` and
`dense_3`. A spec written against one process's names fails in the next, and building the same
target twice (planning, then applying) shifts them. So wmap names variables:

- relative to the model: the model's own name is not part of a variable's name (`dense.kernel`,
  not `sequential.dense.kernel`);
- with auto-generated layer names (the snake-case class name, optionally `_N`, held by one layer
  only) replaced by the name a fresh process gives them: the k-th auto-named layer of a class, in
  the model's layer order, is `<class>` for k = 0 and `<class>_k` after. Names given explicitly
  stay as they are;
- and, where two variables would still share a name (sublayers built outside their parent's name
  scope), by their place in the layer tree instead: attribute names and list positions, the way
  Keras walks a model to save it (`transformer_layers.2.self_attn.o_proj.kernel`).

`keras_names` is the one implementation: the in-memory reader, the Keras sink and the Keras file
reader (given a model) all name through it, so a plan made in one process applies in another.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_AUTO = re.compile(r"^(?P<base>[a-z0-9_]+?)(?:_(?P<n>[0-9]+))?$")


def snake_case(class_name: str) -> str:
    """What Keras auto-names an instance of `class_name` (keras.src.utils.naming.to_snake_case)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return "private" + s if s.startswith("_") else s


def layers_of(model: Any) -> list[Any]:
    """Every layer inside `model`, depth first in Keras' own order (not the model itself)."""
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=False, recursive=True))
    return []


def canonical_layer_names(model: Any) -> dict[str, str]:
    """Auto-generated layer name -> the name a fresh process would give it (only those that differ).

    Keras records no flag for a generated name, so it is recognised by its shape: the layers of one
    class named `<class>_k, <class>_(k+1), ...` in the model's order, k >= 1, each name held once. That
    is what the process-wide counter gives a model built after others; a fresh process gives
    `<class>, <class>_1, ...`, in the same (creation) order. Names that are not such a run (`dense_0`, `dense_1`, ...; gaps; a name
    used twice) were chosen by someone and stay."""
    return canonical_renames([(la.name, type(la).__name__) for la in layers_of(model)])


def canonical_renames(layers: list[tuple[str, str | None]]) -> dict[str, str]:
    """`canonical_layer_names` over (layer name, class name) pairs in the model's order: the same rule
    for a built model and for the layer groups of a Keras weights file."""
    counts = Counter(name for name, _ in layers)
    runs: dict[str, list[tuple[str, int]]] = {}
    for lname, cls in layers:
        m = _AUTO.match(lname)
        if m is None or cls is None or m.group("base") != snake_case(cls) or counts[lname] != 1:
            continue
        runs.setdefault(m.group("base"), []).append((lname, int(m.group("n")) if m.group("n") else 0))
    taken = {name for name, _ in layers}
    out: dict[str, str] = {}
    for base, found in runs.items():
        # numbered in creation order, as a fresh process numbers them: whatever order the layers are
        # visited in (a model's layer order, a weights file's), the numbers give the same names
        run = sorted(found, key=lambda r: r[1])
        numbers = [n for _, n in run]
        if numbers[0] < 1 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            continue  # already fresh-process names, or names someone chose
        wanted = [base if k == 0 else f"{base}_{k}" for k in range(len(run))]
        if any(w in taken and w not in {n for n, _ in run} for w in wanted):
            continue  # a layer of another class (or an explicit name) holds a canonical name
        out.update({name: w for (name, _), w in zip(run, wanted, strict=True) if name != w})
    return out


def keras_names(model: Any) -> list[tuple[str, Any]]:
    """(stable dotted name, variable) for every variable of `model`, in `model.weights` order."""
    renames = canonical_layer_names(model)
    own = getattr(model, "name", None)
    rows: list[tuple[str, Any]] = []
    for v in model.weights:
        parts = str(getattr(v, "path", None) or v.name).removesuffix(":0").split("/")
        if len(parts) > 1 and parts[0] == own:
            parts = parts[1:]
        parts = [renames.get(p, p) for p in parts[:-1]] + parts[-1:]
        rows.append((".".join(parts), v))
    counts = Counter(n for n, _ in rows)
    if all(c == 1 for c in counts.values()):
        return rows
    tree = tree_names(model)
    return [(tree.get(id(v), n) if counts[n] > 1 else n, v) for n, v in rows]


def tree_names(model: Any) -> dict[int, str]:
    """id(variable) -> its place in the layer tree: attribute names and list positions from the
    model, ending in the variable's own name (what disambiguates variables whose paths collide)."""
    out: dict[int, str] = {}
    seen: set[int] = set()

    def visit(obj: Any, prefix: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for v in list(getattr(obj, "_trainable_variables", [])) + list(getattr(obj, "_non_trainable_variables", [])):
            out.setdefault(id(v), f"{prefix}{str(v.name).removesuffix(':0').split('/')[-1]}")
        # named attributes first: a sublayer held as `self.attn` is named `attn`, not by its slot in
        # Keras' own `_layers` list
        for attr, value in sorted(vars(obj).items(), key=lambda kv: (kv[0].startswith("_"), kv[0])):
            if attr.startswith("__") or attr in ("_inbound_nodes", "_outbound_nodes", "_tracker", "_parent_path"):
                continue
            for key, child in _children(value):
                if _is_layer(child):
                    visit(child, f"{prefix}{attr.lstrip('_')}{key}.")

    visit(model, "")
    return out


def _children(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, (list, tuple)):
        return [(f".{i}", x) for i, x in enumerate(value)]
    if isinstance(value, dict):
        return [(f".{k}", x) for k, x in value.items() if isinstance(k, str)]
    return [("", value)]


def _is_layer(obj: Any) -> bool:
    return hasattr(obj, "_trainable_variables") and hasattr(obj, "_flatten_layers")
