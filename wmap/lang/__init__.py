"""Spec parsing: both syntaxes to one AST, plus the canonical printers."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from wmap.core.bulk import collector_paused
from wmap.core.errors import Diagnostic, Span, WmapError
from wmap.core.files import FileTooLarge, NotRegularFile, read_regular
from wmap.lang.spec import Spec

Syntax = Literal["wmap", "yaml"]
MAX_SPEC_BYTES = 4 * 1024 * 1024


def syntax_for(path: str | os.PathLike[str]) -> Syntax:
    return "yaml" if str(path).lower().endswith((".yaml", ".yml")) else "wmap"


def _too_big(size: int, path: str | None, hint: str) -> WmapError:
    return WmapError([Diagnostic("WM116", "error", f"the spec is {size:,} bytes; wmap reads specs up to "
                                 f"{MAX_SPEC_BYTES:,} bytes ({MAX_SPEC_BYTES // 2**20} MiB)", Span(path, 1, 1), hint)])


def parse_spec(text: str, syntax: Syntax = "wmap", path: str | None = None, *, names: bool = True,
               includes: bool = True) -> Spec:
    """Parse spec text. With `names`, also resolve transform/initialiser names (no model needed).

    Every problem is reported at once: syntax errors first (nothing else can be trusted
    then); otherwise structural and name errors together, in file order.

    With `includes`, the specs it `use`s (relative to `path`, or the current folder) are merged in
    (`wmap/lang/include.py`); without, the Spec is the file as written (what `wmap fmt` prints).
    """
    if len(text) > MAX_SPEC_BYTES:
        raise _too_big(len(text), path, "a mapping spec is a few hundred lines; generate rules with patterns")
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    # A parse makes a tree and an AST (plus, the first time, the parser's and wmap's modules), no garbage
    # cycles: in a fresh process it would otherwise run the full collection `import torch` left due.
    with collector_paused():
        spec = _parse(text, syntax, path, names)
        if not includes or not spec.uses:
            return spec
        from wmap.lang.include import resolve
        # not memoised: a used file may change between two parses of the same text
        return resolve(spec, lambda used: load_spec(used, names=names, includes=False))


@functools.lru_cache(maxsize=32)
def _parse(text: str, syntax: Syntax, path: str | None, names: bool) -> Spec:
    # Memoised by text and path (a Spec is frozen, so callers may share it; failures are not kept):
    # parsing a recipe costs more than keras-hub's whole conversion of a small model, and a process
    # that applies one recipe repeatedly parses the same text each time.
    if syntax == "yaml":
        from wmap.lang.yaml_spec import parse_yaml
        return parse_yaml(text, path, names=names)
    if syntax == "wmap":
        from wmap.lang.dsl import parse_wmap
        return parse_wmap(text, path, names=names)
    raise ValueError(f"unknown syntax {syntax!r}: use 'wmap' or 'yaml'")


def load_spec(path: str | os.PathLike[str], *, names: bool = True, includes: bool = True) -> Spec:
    """Read and parse a spec file; the syntax follows the suffix (`.yaml`/`.yml` or `.wmap`).
    `includes`: merge in the specs it `use`s (see `parse_spec`)."""
    p = Path(path)
    shown = str(path)
    try:
        # universal newlines, as a text-mode read gives: positions count `\r\n` as one line end
        text = read_regular(p, MAX_SPEC_BYTES).decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileTooLarge as e:
        raise _too_big(e.size, shown, "is this the right file? A mapping spec is a few hundred lines") from None
    except NotRegularFile:
        raise WmapError([Diagnostic("WM115", "error", f"`{shown}` is not a regular file (a FIFO or a device)", None,
                                    "pass the spec file itself; wmap does not read specs from pipes")]) from None
    except IsADirectoryError:
        raise WmapError([Diagnostic("WM115", "error", f"`{shown}` is a directory, not a spec", None,
                                    "pass a .wmap or .yaml file")]) from None
    except FileNotFoundError:
        raise WmapError([Diagnostic("WM115", "error", f"spec file `{shown}` does not exist", None,
                                    _nearby(p))]) from None
    except UnicodeDecodeError as e:
        bad = e.object[e.start:e.start + 1].hex()
        raise WmapError([Diagnostic("WM115", "error", f"`{shown}` is not UTF-8 text (byte 0x{bad} at offset "
                                    f"{e.start})", None, "is this a spec file? Specs are UTF-8 text")]) from None
    except OSError as e:
        raise WmapError([Diagnostic("WM115", "error", f"cannot read `{shown}`: {e.strerror}", None, None)]) from None
    return parse_spec(text, syntax_for(p), shown, names=names, includes=includes)


def _nearby(p: Path) -> str:
    from wmap.core.errors import did_you_mean
    try:
        names = [q.name for q in p.parent.iterdir() if q.suffix.lower() in (".wmap", ".yaml", ".yml")]
    except OSError:
        names = []
    return did_you_mean(p.name, names) or "check the path (a relative path starts from the current folder)"


def format_spec(spec: Spec, syntax: Syntax) -> str:
    from wmap.lang.fmt import to_wmap, to_yaml
    return to_yaml(spec) if syntax == "yaml" else to_wmap(spec)
