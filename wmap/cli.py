"""The `wmap` command. Every failure the user can cause ends as diagnostics and an exit code.

Exit codes: 0 success · 1 errors (bad spec, failed check or verify) · 2 `plan --detailed-exitcode`
with warnings · 3 internal error (a bug: please report it) · 64 usage error · 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from wmap.commands import commands
from wmap.commands.common import Interrupted, Output
from wmap.core.errors import WmapError
from wmap.core.version import VERSION

EXIT_OK, EXIT_ERRORS, EXIT_WARNINGS, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 3, 64, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"wmap: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wmap", description="Declarative weight mapping: check, plan and apply mapping specs.",
                epilog="Exit codes: 0 ok, 1 errors, 2 warnings (plan --detailed-exitcode), 3 internal error, "
                       "64 usage, 130 interrupted.")
    p.add_argument("--version", action="version", version=f"wmap {VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in commands():
        cmd.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    out = Output.for_args(args)
    try:
        return int(args.run(args, out))
    except WmapError as e:
        out.diagnostics(e.diagnostics, e.sources)
        return EXIT_ERRORS
    except Interrupted as e:
        out.err(f"interrupted: {e}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        out.err("interrupted: nothing was written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug, not bad input: say so plainly, traceback only on request
        if os.environ.get("WMAP_DEBUG"):
            raise
        out.err(f"internal error: {type(e).__name__}: {e}\n  this is a bug in wmap; rerun with WMAP_DEBUG=1 for "
                "a traceback and please report it")
        return EXIT_INTERNAL


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
