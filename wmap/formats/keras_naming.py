"""Stable names for a built Keras model's variables: relative to the model, the same in every process.

Keras names a variable by the path of the layers it was built in (`variable.path`,
`sequential_1/dense_3/kernel`), and names a layer it was not given a name for from a process-wide
counter: the second Sequential a process builds is `sequential_1`, its Dense layers `dense_2` and
`dense_3`. A spec written against one process's names fails in the next, and building the same
target twice (planning, then applying) shifts them. So wmap names variables:

- relative to the model: the model's own name is not part of a variable's name (`dense.kernel`,
  not `sequential.dense.kernel`);
- with generated layer names (the snake-case class name, optionally `_N`, from Keras' process-wide
  counter) replaced by names that depend on the model's structure alone: within its parent, the
  k-th generated layer of a class is `<class>` for k = 0 and `<class>_k` after (so every
  transformer layer's MoE block is `moe_block`, not `moe_block_3` in the fourth). Names given
  explicitly stay as they are;
- and, where two variables would still share a name (sublayers built outside their parent's name
  scope), by their place in the layer tree instead: attribute names and list positions, the way
  Keras walks a model to save it (`transformer_layers.2.self_attn.o_proj.kernel`).

`keras_names` is the one implementation: the in-memory reader, the Keras sink and the Keras file
reader (given a model) all name through it, so a plan made in one process applies in another.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wmap.core.frameworks import KerasModel, KerasVariable

_AUTO = re.compile(r"^(?P<base>[a-z0-9_]+?)(?:_(?P<n>[0-9]+))?$")


def snake_case(class_name: str) -> str:
    """What Keras auto-names an instance of `class_name` (keras.src.utils.naming.to_snake_case)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return "private" + s if s.startswith("_") else s


def layers_of(model: KerasModel) -> list[KerasModel]:
    """Every layer inside `model`, depth first in Keras' own order (not the model itself)."""
    if hasattr(model, "_flatten_layers"):
        return list(model._flatten_layers(include_self=False, recursive=True))
    return []


def auto_named(layers: Sequence[tuple[str, str | None]]) -> set[str]:
    """The layer names Keras generated, among (layer name, class name) pairs of one model.

    Keras records no flag for a generated name, so it is recognised by its shape: the layers of one
    class named `<class>`, `<class>_1`, ... or, in a model built after others, `<class>_k`,
    `<class>_(k+1)`, ... (k >= 1): one consecutive run of the process-wide counter, each name held
    by one layer. Anything else (`dense_0`, `dense_1`, ...; gaps; a name used twice) was chosen by
    someone. A hand-written name of the counter's shape (`Dense(name="dense_1")`, keras-hub's ViT MLP
    `dense_1`/`dense_2`) cannot be told from a generated one by anything the model holds; Keras'
    process-wide counter could, but it depends on what else the process built, and a name must not:
    a recipe or a spec in a repository would then match in one process and not in the next. So such
    names are numbered within their parent like generated ones (`dense`, `dense_1`), the same in
    every process; `wmap inspect` shows them."""
    counts = Counter(name for name, _ in layers)
    runs: dict[str, list[tuple[str, int]]] = {}
    chosen: set[str] = set()  # classes some layer of which has a name Keras never generates
    for lname, cls in dict(layers).items():
        m = _AUTO.match(lname)
        if m is None or cls is None or m.group("base") != snake_case(cls):
            continue
        if counts[lname] != 1 or m.group("n") == "0":  # Keras never repeats a name, nor writes `_0`
            chosen.add(m.group("base"))
            continue
        runs.setdefault(m.group("base"), []).append((lname, int(m.group("n")) if m.group("n") else 0))
    out: set[str] = set()
    for base, found in runs.items():
        if base in chosen:
            continue
        numbers = sorted(n for _, n in found)
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            out.update(name for name, _ in found)
    return out


def canonical_paths(paths: Sequence[Sequence[str]], classes: Mapping[str, str | None]) -> list[list[str]]:
    """Layer paths (each a list of layer names, outermost first, ending in a variable's own name)
    with every generated layer name replaced by one that depends on the model's structure alone:
    within its parent, the generated layers of one class are `<class>`, `<class>_1`, ... in creation
    (counter) order. So a generated name is the same whether the model was built first or tenth
    in a process, and the same in every transformer layer (`transformer_layer_3.moe_block`, where
    Keras says `transformer_layer_3/moe_block_3`)."""
    auto = auto_named(list(classes.items()))
    siblings: dict[tuple[tuple[str, ...], str], set[str]] = {}
    for path in paths:
        for j, name in enumerate(path[:-1]):
            if name in auto:
                base = snake_case(classes[name] or "")
                siblings.setdefault((tuple(path[:j]), base), set()).add(name)
    rename: dict[tuple[tuple[str, ...], str], str] = {}
    for (parent, base), names in siblings.items():
        ordered = sorted(names, key=lambda n: int(_AUTO.match(n).group("n") or 0))  # type: ignore[union-attr]
        taken = {p[len(parent)] for p in paths if len(p) > len(parent) + 1 and tuple(p[:len(parent)]) == parent}
        wanted = [base if k == 0 else f"{base}_{k}" for k in range(len(ordered))]
        if any(w in taken - names for w in wanted):
            continue  # an explicit sibling holds a canonical name: keep the generated ones as they are
        rename.update({(parent, n): w for n, w in zip(ordered, wanted, strict=True)})
    out = []
    for path in paths:
        new = list(path)
        for j, name in enumerate(path[:-1]):
            new[j] = rename.get((tuple(path[:j]), name), name)
        out.append(new)
    return out


def keras_names(model: KerasModel) -> list[tuple[str, KerasVariable]]:
    """(stable dotted name, variable) for every variable of `model`, in `model.weights` order."""
    own = getattr(model, "name", None)
    paths: list[list[str]] = []
    for v in model.weights:
        parts = str(getattr(v, "path", None) or v.name).removesuffix(":0").split("/")
        if len(parts) > 1 and parts[0] == own:
            parts = parts[1:]
        paths.append(parts)
    layers = layers_of(model)
    classes = {la.name: type(la).__name__ for la in layers}
    rows = [(".".join(p), v) for p, v in zip(canonical_paths(paths, classes), model.weights, strict=True)]
    counts = Counter(n for n, _ in rows)
    if all(c == 1 for c in counts.values()):
        return rows
    tree = tree_names(model)
    clashing = {id(v) for n, v in rows if counts[n] > 1}
    # A sub-model built before the model that holds it (each tower of a dual-tower backbone) scopes
    # its layer names to itself, so its variables' paths overlap a sibling's wherever their layer
    # names coincide, and *which* coincide depends on the sibling (block 30 of a 32-block tower
    # collides only if the other tower is as deep). Such a sub-model is named wholly by its place, so
    # each tower's names depend on that tower alone.
    whole: set[int] = set()
    for sub in layers_of(model):
        ids = {id(v) for v in getattr(sub, "weights", ())}
        if _is_model(sub) and ids & clashing:
            whole |= ids
    return [(tree.get(id(v), n) if counts[n] > 1 or id(v) in whole else n, v) for n, v in rows]


# Keras' (and TensorFlow's tracking) own collections of every sublayer, by position or by attribute:
# where the tree names a sublayer from only when no attribute of its own holds it
_KERAS_LISTS = ("_layers", "_operations", "_self_tracked_trackables", "_self_unconditional_dependency_names")


def tree_names(model: KerasModel) -> dict[int, str]:
    """id(variable) -> its place in the layer tree: attribute names and list positions from the
    model, ending in the variable's own name (what disambiguates variables whose paths collide)."""
    out: dict[int, str] = {}
    seen: set[int] = set()

    def visit(obj: object, prefix: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for v in list(getattr(obj, "_trainable_variables", [])) + list(getattr(obj, "_non_trainable_variables", [])):
            out.setdefault(id(v), f"{prefix}{str(v.name).removesuffix(':0').split('/')[-1]}")
        # named attributes first, Keras' own collections last: a sublayer held as `self.attn` (or
        # `self._query_dense`, as MultiHeadAttention holds it) is named `attn`, not by its slot there
        for attr, value in sorted(vars(obj).items(), key=lambda kv: (kv[0] in _KERAS_LISTS, kv[0].startswith("_"), kv[0])):
            if attr.startswith("__") or attr in ("_inbound_nodes", "_outbound_nodes", "_tracker", "_parent_path"):
                continue
            for key, child in _children(value):
                if _is_layer(child):
                    visit(child, f"{prefix}{attr.lstrip('_')}{key}.")

    visit(model, "")
    return out


def _children(value: object) -> list[tuple[str, object]]:
    if isinstance(value, (list, tuple)):
        return [(f".{i}", x) for i, x in enumerate(value)]
    if isinstance(value, dict):
        return [(f".{k}", x) for k, x in value.items() if isinstance(k, str)]
    return [("", value)]


def _is_model(obj: object) -> bool:
    """A Keras Model (Functional, Sequential or subclassed) rather than a plain layer: what `fit`s."""
    return _is_layer(obj) and callable(getattr(obj, "fit", None))


def _is_layer(obj: object) -> bool:
    return hasattr(obj, "_trainable_variables") and hasattr(obj, "_flatten_layers")
