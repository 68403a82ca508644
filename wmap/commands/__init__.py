"""The CLI's commands, one module each; every module has `add_parser(subparsers)`."""

from __future__ import annotations

from types import ModuleType

from wmap.commands import (
    apply,
    check,
    completion,
    diff,
    explain,
    fmt,
    init,
    inspect,
    invert,
    plan,
    recipes,
    verify,
)

COMMANDS: tuple[ModuleType, ...] = (check, plan, apply, verify, fmt, inspect, diff, explain, init, invert,
                                    recipes, completion)
