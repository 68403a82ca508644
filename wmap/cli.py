"""The `wmap` command. Every failure the user can cause ends as diagnostics and an exit code.

Exit codes: 0 success · 1 errors (bad spec, failed check or verify) · 2 `plan --detailed-exitcode`
with warnings · 3 internal error (a bug: please report it) · 64 usage error · 130 interrupted
(Ctrl-C) · 143 / 129 terminated by SIGTERM / SIGHUP (a clean abort, like Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from wmap.commands import commands
from wmap.commands.common import Interrupted, Output, Terminated
from wmap.core.errors import Diagnostic, WmapError
from wmap.core.lease import SourceChanged
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
    restore = _handle_termination()
    try:
        return int(args.run(args, out))
    except WmapError as e:
        out.diagnostics(e.diagnostics, e.sources)
        return EXIT_ERRORS
    except SourceChanged as e:
        out.diagnostics([Diagnostic("WM505", "error", f"`{e.path}` was opened for writing or truncated by another "
                                    "process while wmap read it; nothing was written", None,
                                    "let the other process finish, then run again")], None)
        return EXIT_ERRORS
    except Interrupted as e:
        out.err(f"interrupted: {e}")
        return EXIT_INTERRUPTED
    except Terminated as e:
        out.err(f"terminated by {signal.Signals(e.signum).name}: nothing was written")
        return 128 + e.signum
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
    finally:
        restore()  # `main` is also called in-process (tests, scripts): leave their handlers as they were


def _handle_termination() -> Callable[[], None]:
    """SIGTERM and SIGHUP abort like Ctrl-C (temporaries removed, nothing half-written) instead of
    killing the process where it stands; returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: object) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, stop) for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
           if s is not None}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)
    return restore


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
