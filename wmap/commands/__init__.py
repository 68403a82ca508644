"""The CLI's commands, one module each; every module has `add_parser(subparsers)` and `run(args, out)`."""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES: tuple[str, ...] = ("check", "plan", "apply", "verify", "fmt", "inspect", "diff", "explain", "init", "invert",
                          "recipes", "completion")


def commands() -> tuple[ModuleType, ...]:
    """The command modules, in the order `wmap --help` lists them. Imported here, when the CLI builds
    its parser, and not with this package: the Python API imports `commands.progress` for its
    progress bar and needs none of them."""
    return tuple(importlib.import_module(f"wmap.commands.{name}") for name in NAMES)
