"""The recipe library: reviewable specs for real architecture pairs, each proven against the
third-party converter it replaces.

A recipe is an ordinary spec file under `wmap/recipes/<from>_to_<to>/<family>.wmap` whose endpoints
are left to the call (`source hf torch`: the checkpoint comes with `--source`) and whose sizes come
from the checkpoint's `config.json` (`config hf`, `let heads = config.num_attention_heads`), so one
recipe serves every size of its family. What `wmap recipes` lists is read from each file's header,
the one place it is written:

    # recipe: GPT-2                                   the family, as people call it
    # reads: gpt2                                     Hugging Face `model_type`s it ports
    # builds: keras_hub.models.GPT2Backbone           what the target is
    # proven: keras-hub convert_gpt2, bit for bit     what it was compared with (one line each)

`tests/recipes/` runs every recipe against the converter it names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_FIELD = re.compile(r"^#\s*(recipe|reads|builds|proven):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Recipe:
    name: str                      # `hf_to_keras_hub/gpt2`: the file under wmap/recipes/, without `.wmap`
    family: str                    # `GPT-2`
    model_types: tuple[str, ...]   # Hugging Face `config.json` `model_type` values it reads
    target: str                    # what the target is built as
    proven: tuple[str, ...]        # what it was compared with, bit for bit or on forward outputs
    path: str

    @property
    def direction(self) -> str:
        return self.name.split("/")[0]


def _read(name: str, path: str) -> Recipe:
    fields: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _FIELD.match(line)
            if m:
                fields.setdefault(m.group(1), []).append(m.group(2))
    if not {"recipe", "reads", "builds", "proven"} <= fields.keys():
        raise ValueError(f"recipe {name} lacks header fields: {sorted({'recipe', 'reads', 'builds', 'proven'} - fields.keys())}")
    return Recipe(name, fields["recipe"][0], tuple(t for line in fields["reads"] for t in line.split()),
                  fields["builds"][0], tuple(fields["proven"]), path)


@functools.lru_cache(maxsize=1)
def catalog() -> tuple[Recipe, ...]:
    """Every recipe shipped with wmap, in name order."""
    from pathlib import Path

    from wmap.lang.include import recipes_root
    root = Path(recipes_root())  # the folder `use "<recipe>"` resolves in, too
    out = []
    for direction in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith("_")),
                            key=lambda d: d.name):
        for f in sorted((f for f in direction.iterdir() if f.name.endswith(".wmap")), key=lambda f: f.name):
            out.append(_read(f"{direction.name}/{f.name[:-5]}", str(f)))
    return tuple(out)


def path(name: str) -> str:
    """The spec file of recipe `name` (`hf_to_keras_hub/gpt2`); WM521 with the known names otherwise."""
    from wmap.core.errors import did_you_mean, error
    known = {r.name: r for r in catalog()}
    if name not in known:
        raise error("WM521", f"there is no recipe `{name}`",
                    hint=did_you_mean(name, known) or "list them with `wmap recipes`")
    return known[name].path


def one_way(recipe: Recipe) -> tuple[str, ...]:
    """Why `recipe` runs one way only (each step without an inverse, once), or () when `wmap invert`
    writes its reverse: derived from the spec itself, never written beside it."""
    import re

    from wmap.core.errors import WmapError
    from wmap.lang import load_spec
    from wmap.lang.invert import invert_spec
    try:
        invert_spec(load_spec(recipe.path))
    except WmapError as e:
        return tuple(dict.fromkeys(re.sub(r"^rule `.*?`: ", "", d.message) for d in e.errors))
    return ()


def for_model_type(model_type: str) -> list[Recipe]:
    """The recipes that read a Hugging Face checkpoint of this `model_type`."""
    return [r for r in catalog() if model_type in r.model_types]
