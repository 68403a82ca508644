"""The model config a spec's `let`s read: where it is, reading it safely, and checking a saved plan
against it.

A spec says where its config is: `config "config.json"` (relative to the spec), or `config NAME`:
the `config.json` in the folder of source NAME's checkpoint (or of the target's, `config target`),
which is where Hugging Face keeps it next to `model.safetensors`. A call can pass its own instead
(`wmap.plan(..., config=path_or_dict)`, `--config PATH`), which wins. A config is untrusted input
like a checkpoint: a regular file, at most `MAX_CONFIG_BYTES`, UTF-8 JSON whose top is an object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from wmap.core.errors import error
from wmap.core.files import FileTooLarge, NotRegularFile, read_regular
from wmap.core.values import ConfigLike, Endpoint
from wmap.lang.bindings import ConfigData, plain
from wmap.lang.spec import DEFAULT_SOURCE, Spec
from wmap.planning.plan import Plan
from wmap.run.factory import is_factory

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # HF configs are a few kB; tokenizer-sized files are not configs
CONFIG_NAME = "config.json"


def read_config(path: str, label: str, where: str) -> ConfigData:
    """Read a JSON config (WM515 for anything that is not one)."""
    def bad(why: str, hint: str | None = None) -> Exception:
        return error("WM515", f"cannot read the config `{path}`: {why}", hint=hint)

    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise bad("it does not exist", "a Hugging Face checkpoint keeps config.json in its folder; pass --config "
                  "PATH if yours is elsewhere") from None
    except (NotRegularFile, IsADirectoryError):
        raise bad("it is not a regular file", "pass the config.json file itself") from None
    except FileTooLarge as e:
        raise bad(f"it is {e.size:,} bytes; a model config is at most {MAX_CONFIG_BYTES:,}") from None
    except OSError as e:
        raise bad(e.strerror or str(e)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad("it is not UTF-8 text") from None
    except RecursionError:
        raise bad("it is nested too deeply") from None
    except ValueError as e:
        raise bad(f"it is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise bad(f"its top level is a {type(data).__name__}, not an object")
    return ConfigData(label, data, where)


def config_for(spec: Spec | None, source: Endpoint, target: Endpoint, config: ConfigLike = None) -> ConfigData | None:
    """The config for a compile: the one passed to the call, else the one the spec names, else None."""
    if config is not None:
        if isinstance(config, Mapping):
            return ConfigData("the config given", dict(config), None)
        path = os.fspath(config)
        return read_config(path, os.path.basename(path), f"path:{path}")
    if spec is None or spec.config is None:
        return None
    c = spec.config
    if c.path is not None:
        here = c.path if os.path.isabs(c.path) or not spec.path else os.path.join(os.path.dirname(spec.path), c.path)
        return read_config(here, c.path, f"path:{c.path}")
    assert c.endpoint is not None
    return beside(c.endpoint, _endpoint_object(spec, c.endpoint, source, target))


def beside(endpoint: str, obj: Endpoint) -> ConfigData:
    """The config.json in the folder of `endpoint`'s checkpoint (`obj`: its path, or whatever was given)."""
    if not isinstance(obj, (str, os.PathLike)) or is_factory(obj):
        raise error("WM515", f"`config {endpoint}` reads the config.json beside {endpoint}'s checkpoint, but "
                    f"{endpoint} is {'a factory' if is_factory(obj) else 'a ' + type(obj).__name__}, not a file",
                    hint="pass the config yourself: --config PATH (Python: config=path or a dict)")
    where = os.fspath(obj)
    folder = where if os.path.isdir(where) else os.path.dirname(where)
    return read_config(os.path.join(folder, CONFIG_NAME), f"{CONFIG_NAME} beside {endpoint}", f"from:{endpoint}")


def _endpoint_object(spec: Spec, endpoint: str, source: Endpoint, target: Endpoint) -> Any:
    from wmap.run.resolve import source_objects, target_object
    if endpoint == "target":
        return target_object(spec, target)[0]
    objs = source_objects(spec, source)
    name = endpoint if endpoint in objs or spec.sources else DEFAULT_SOURCE
    if name not in objs:
        raise error("WM515", f"`config {endpoint}`: no source `{endpoint}` was given", hint="pass it with --source")
    return objs[name][0]


def check_lets(spec: Spec, config: ConfigLike = None) -> None:
    """For `wmap check` without a model: evaluate the lets against the config if it is at hand
    (the file the spec names exists, or one was passed), so a missing key or a wrong type is found
    at its position; a spec whose checkpoint is not on this machine is checked without it."""
    from wmap.core.errors import DiagnosticBag, WmapError
    from wmap.lang.bindings import evaluate, uses_config
    if not uses_config(spec):
        found = None
    else:
        try:
            found = config_for(spec, None, None, config)
        except WmapError:
            if config is not None:
                raise
            return
    bag = DiagnosticBag(sources=spec.texts())  # the used specs too: a rule may come from one
    if found is not None or not uses_config(spec):
        evaluate(spec, found, bag)
    bag.raise_if_errors()


def check_saved_plan(plan: Plan, source: Endpoint, target: Endpoint, config: ConfigLike = None) -> None:
    """A saved plan whose lets read a config: read it again, where it was found when the plan was
    made (or as passed now), and refuse if any value the plan was made with changed (WM604)."""
    b = plan.config
    if b is None or not b.keys:
        return
    if config is not None:
        current = config_for(None, source, target, config)
    elif b.where is not None and b.where.startswith("from:"):
        name = b.where[len("from:"):]
        objs: Mapping[str, Any] = source if isinstance(source, Mapping) else {}
        given = target if name == "target" else objs.get(name, source)
        current = beside(name, given)
    elif b.where is not None and b.where.startswith("path:"):
        rel = b.where[len("path:"):]
        near = os.path.join(os.path.dirname(plan.origin), rel) if plan.origin and not os.path.isabs(rel) else rel
        current = read_config(near if os.path.exists(near) else rel, rel, b.where)
    else:
        raise error("WM521", "the plan was made with a config passed to the call; pass it again",
                    hint="--config PATH (Python: config=...)")
    assert current is not None
    for key, was in b.keys:
        now: Any = current.data
        for part in key.split("."):
            now = now.get(part, _MISSING) if isinstance(now, Mapping) else _MISSING
        if now is _MISSING:
            now = None  # an absent key reads like null (`??` falls back on both)
        if plain(now) != was:
            shown = "is gone" if now is None else f"is now {json.dumps(now)[:60]}"
            raise error("WM604", f"the config changed since the plan was made: `{key}` was {json.dumps(was)[:60]} "
                        f"and {shown} ({current.label})", hint="make the plan again against this config")


_MISSING = object()
