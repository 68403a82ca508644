"""Recognising a pair the library already ports, so `wmap init` proposes the recipe instead of guessing.

A Hugging Face checkpoint says what it is: the `model_type` in the `config.json` beside its
weights. A target says what it is by its class once built (`GPT2Backbone`), or by naming the
recipe's own target factory. When a recipe reads that `model_type` and builds that class, the
recipe is the answer: it was proven against the family's converter, where matching names and
shapes can at best guess (a fused QKV projection has no counterpart by name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from wmap.core.errors import WmapError
from wmap.lang.spec import Spec
from wmap.recipes import Recipe, for_model_type


@dataclass(frozen=True)
class RecipeMatch:
    recipe: Recipe
    model_type: str
    target_class: str   # the class the target builds (or the recipe's own, for its factory)
    spec: Spec          # the recipe as parsed, endpoints still open


def recognise(source: object, target: object) -> RecipeMatch | None:
    """The recipe for this source and target, or None when the pair is not one the library ports.

    Nothing here fails an init: a source without a readable config.json, or a target that cannot
    be built, is simply not recognised (ordinary matching then reports its own errors).
    """
    found = model_type_of(source)
    if found is None:
        return None
    model_type, config = found
    from wmap.lang import load_spec

    for recipe in for_model_type(model_type):
        spec = load_spec(recipe.path)
        built = _target_class(recipe, spec, target, config)
        if built is not None:
            return RecipeMatch(recipe, model_type, built, spec)
    return None


def model_type_of(source: object) -> tuple[str, dict[str, object]] | None:
    """The Hugging Face `model_type` (and config) from the config.json beside a checkpoint, if any."""
    from wmap.run.config import beside
    from wmap.run.factory import is_factory

    if not isinstance(source, (str, os.PathLike)) or is_factory(source):
        return None
    try:
        config = beside("source", source)
    except WmapError:
        return None
    model_type = config.data.get("model_type")
    return (model_type, dict(config.data)) if isinstance(model_type, str) else None


def _target_class(recipe: Recipe, spec: Spec, target: object, config: dict[str, object]) -> str | None:
    """The class name `target` builds when it is one the recipe fills, else None."""
    from wmap.run.factory import build_factory, is_factory

    wanted = recipe.target.rsplit(".", 1)[-1]
    if spec.target is not None and target == spec.target.location:
        return wanted
    if not isinstance(target, str) or not is_factory(target):
        return None   # a checkpoint file does not say which class wrote it
    try:
        model = build_factory(target, config=config)
    except WmapError:
        return None
    names = [c.__name__ for c in type(model).__mro__]
    return wanted if wanted in names else None


def with_endpoints(match: RecipeMatch, source: str, target: str) -> str:
    """The recipe's text with its open endpoints filled in: what `wmap init` writes."""
    from wmap.lang.fmt import quote

    spec = match.spec
    lines = spec.text.splitlines(keepends=True) if spec.text else []
    edits: dict[int, str] = {}
    added: list[str] = []  # endpoints the recipe takes from a spec it `use`s: declared in this file
    for s in spec.sources:
        if not s.location:
            line = f"source {s.name} {s.framework or ''}".rstrip() + f" {quote(source)}\n"
            if s.span.path == spec.path:
                edits[s.span.line] = line
            else:
                added.append(line)
    if spec.target is not None:
        t = spec.target
        line = f"target {t.framework + ' ' if t.framework else ''}{quote(target)}\n"
        if t.span.path == spec.path:
            edits[t.span.line] = line
        else:
            added.append(line)
    if added:  # after the last line that starts a statement before the rules: the version or a `use`
        at = max((i for i, text in enumerate(lines, start=1) if text.startswith(("wmap ", "use "))), default=0)
        edits[at] = (lines[at - 1] if at else "") + "".join(added)
    return "".join(edits.get(i, line) for i, line in enumerate(lines, start=1))

__all__ = ["RecipeMatch", "model_type_of", "recognise", "with_endpoints"]
