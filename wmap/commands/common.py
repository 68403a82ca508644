"""What every command shares: output (rich on a TTY, plain when piped or NO_COLOR), endpoint flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from wmap.core.errors import Diagnostic
from wmap.core.names import printable


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after a command changed something: what it had done by then (the CLI prints it in place
    of "nothing was written")."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C (a clean abort, nothing written), exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class Output:
    fmt: str
    color: bool
    stdout: TextIO
    stderr: TextIO

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Output:
        fmt = getattr(args, "format", "text") or "text"
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        return cls(fmt, bool(color), sys.stdout, sys.stderr)

    def print(self, text: str, raw: bool = False) -> None:
        """Write a report. Unprintable characters (a checkpoint's names may carry terminal control
        sequences or lone surrogates) are escaped, unless `raw` (spec text meant for a file)."""
        if not raw:
            text = printable(text, keep_newlines=True)
        if self.color:
            from rich.console import Console
            from rich.text import Text
            t = Text(text)
            t.highlight_regex(r"error\[WM\d+\]", "bold red")
            t.highlight_regex(r"warning\[WM\d+\]", "bold yellow")
            t.highlight_regex(r"(?m)^\s+hint:", "cyan")
            t.highlight_regex(r"(?m)^rule \d+", "bold")
            t.highlight_regex(r"(?m)^Plan:.*$", "bold green")
            Console(file=self.stdout, highlight=False, soft_wrap=True).print(t, end="")
        else:
            self.stdout.write(text)

    def json(self, data: object) -> None:
        self.stdout.write(json.dumps(data, indent=2) + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(printable(text.rstrip("\n"), keep_newlines=True) + "\n")

    def diagnostics(self, diags: Sequence[Diagnostic], sources: Mapping[str, str] | None = None) -> None:
        if self.fmt == "json":
            self.json({"ok": not any(d.severity == "error" for d in diags),
                       "diagnostics": [d.to_json() for d in diags]})
            return
        text = "\n".join(d.render(sources) for d in diags)
        n_err = sum(1 for d in diags if d.severity == "error")
        n_warn = sum(1 for d in diags if d.severity == "warning")
        summary = f"{n_err} error(s), {n_warn} warning(s)"
        if self.color:
            from rich.console import Console
            from rich.text import Text
            t = Text(text + "\n" + summary + "\n")
            t.highlight_regex(r"error\[WM\d+\]", "bold red")
            t.highlight_regex(r"warning\[WM\d+\]", "bold yellow")
            t.highlight_regex(r"(?m)^\s+hint:", "cyan")
            Console(file=self.stderr, highlight=False, soft_wrap=True).print(t, end="")
        else:
            self.stderr.write(text + "\n" + summary + "\n")


def add_format(p: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")) -> None:
    p.add_argument("--format", choices=list(choices), default="text", help="output format (default: text)")


def add_spec(p: argparse.ArgumentParser, metavar: str = "SPEC") -> None:
    """The spec argument, or `--recipe NAME` for one of the library's (`wmap recipes`)."""
    p.add_argument("spec", nargs="?", metavar=metavar)
    p.add_argument("--recipe", metavar="NAME", help="use a recipe from the library instead of SPEC (`wmap recipes`)")


def spec_path(args: argparse.Namespace) -> str:
    """What `add_spec` was given: the SPEC path, or the recipe's file."""
    from wmap.core.errors import error
    if args.recipe and args.spec:
        raise error("WM521", "give a SPEC or --recipe, not both", hint="a recipe is a spec: `wmap recipes NAME` prints it")
    if args.recipe:
        from wmap.recipes import path
        return path(args.recipe)
    if not args.spec:
        raise error("WM521", "say which spec to use: a SPEC file, or --recipe NAME", hint="`wmap recipes` lists them")
    return str(args.spec)


def add_endpoints(p: argparse.ArgumentParser, out: bool = False) -> None:
    p.add_argument("--source", "-s", action="append", metavar="[NAME=]PATH",
                   help="a source checkpoint or module:callable (repeat as NAME=PATH for named sources); "
                        "default: what the spec names")
    p.add_argument("--target", "-t", metavar="PATH|module:callable",
                   help="the target: a template checkpoint or a module:callable; default: what the spec names")
    p.add_argument("--config", metavar="CONFIG.json",
                   help="the model config the spec's `let`s read (default: what the spec's `config` names)")
    if out:
        p.add_argument("--out", "-o", metavar="OUT", help="write the result here (safetensors; a directory "
                       "for shards; .weights.h5/.keras for Keras targets)")


def parse_sources(values: Sequence[str] | None) -> str | dict[str, str] | None:
    """`--source a.safetensors` -> the path; `--source base=a --source tuned=b` -> {name: path}."""
    if not values:
        return None
    named: dict[str, str] = {}
    plain: list[str] = []
    for v in values:
        name, sep, rest = v.partition("=")
        if sep and name.isidentifier() and not os.path.exists(v):
            named[name] = rest
        else:
            plain.append(v)
    if plain and (named or len(plain) > 1):
        from wmap.core.errors import error
        raise error("WM521", "give several sources as NAME=PATH", hint="e.g. --source base=a.pt --source tuned=b.pt")
    return named or plain[0]


def _paths(value: object) -> list[str]:
    """The file paths in an endpoint argument: a path, {name: path}, or None (a `module:callable`
    names no file, and a path that does not exist yet is still compared by where it would be)."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [p for v in value.values() for p in _paths(v)]
    return [os.fspath(value)] if isinstance(value, (str, os.PathLike)) else []


def _same(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)  # the same inode: hard links and symlinks included
        except OSError:
            return False
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_clashes(writes: Mapping[str, str | None], reads: Mapping[str, object]) -> None:
    """Refuse, before anything is read or written, a file the command writes that is also a file it
    reads or another file it writes (`--report` = `--out` would turn the checkpoint just written into
    JSON; `plan -o` = the spec would replace the spec). Keys are the flags, as the user typed them."""
    from wmap.core.errors import error
    outputs = [(flag, p) for flag, v in writes.items() for p in _paths(v)]
    inputs = [(flag, p) for flag, v in reads.items() for p in _paths(v)]
    for i, (flag, path) in enumerate(outputs):
        for other, there in [*outputs[:i], *inputs]:
            if _same(path, there):
                raise error("WM521", f"{flag} `{printable(path)}` is the same file as {other} `{printable(there)}`: "
                            "writing it would destroy what that names; nothing was run",
                            hint=f"give {flag} a path of its own")
