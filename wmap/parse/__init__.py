"""Spec parsing: both syntaxes to one AST, plus the canonical printers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from wmap.errors import Diagnostic, Span, WmapError
from wmap.spec import Spec

Syntax = Literal["wmap", "yaml"]
MAX_SPEC_BYTES = 4 * 1024 * 1024


def syntax_for(path: str | os.PathLike[str]) -> Syntax:
    return "yaml" if str(path).lower().endswith((".yaml", ".yml")) else "wmap"


def parse_spec(text: str, syntax: Syntax = "wmap", path: str | None = None, *, names: bool = True) -> Spec:
    """Parse spec text. With `names`, also resolve transform/initialiser names (no model needed)."""
    from wmap.parse.validate import check_names

    if len(text) > MAX_SPEC_BYTES:
        raise WmapError([Diagnostic("WM116", "error", f"the spec is {len(text):,} bytes; wmap reads specs up to "
                                    f"{MAX_SPEC_BYTES:,}", Span(path, 1, 1),
                                    "a mapping spec is a few hundred lines; generate rules with patterns")])
    if syntax == "yaml":
        from wmap.parse.yaml_spec import parse_yaml
        spec = parse_yaml(text, path)
    elif syntax == "wmap":
        from wmap.parse.dsl import parse_wmap
        spec = parse_wmap(text, path)
    else:
        raise ValueError(f"unknown syntax {syntax!r}: use 'wmap' or 'yaml'")
    if names:
        try:
            check_names(spec)
        except WmapError as e:
            raise WmapError(e.diagnostics, {path or "<spec>": text}) from None
    return spec


def load_spec(path: str | os.PathLike[str], *, names: bool = True) -> Spec:
    """Read and parse a spec file; the syntax follows the suffix (`.yaml`/`.yml` or `.wmap`)."""
    p = Path(path)
    shown = str(path)
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise WmapError([Diagnostic("WM116", "error", f"the spec is {size:,} bytes; wmap reads specs up to "
                                        f"{MAX_SPEC_BYTES:,}", Span(shown, 1, 1), "is this the right file?")])
        text = p.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise WmapError([Diagnostic("WM115", "error", f"`{shown}` is a directory, not a spec", None,
                                    "pass a .wmap or .yaml file")]) from None
    except FileNotFoundError:
        raise WmapError([Diagnostic("WM115", "error", f"spec file `{shown}` does not exist", None, None)]) from None
    except UnicodeDecodeError as e:
        raise WmapError([Diagnostic("WM115", "error", f"`{shown}` is not UTF-8 text (byte {e.start})", None,
                                    "is this a spec file?")]) from None
    except OSError as e:
        raise WmapError([Diagnostic("WM115", "error", f"cannot read `{shown}`: {e.strerror}", None, None)]) from None
    return parse_spec(text, syntax_for(p), shown, names=names)


def format_spec(spec: Spec, syntax: Syntax) -> str:
    from wmap.parse.fmt import to_wmap, to_yaml
    return to_yaml(spec) if syntax == "yaml" else to_wmap(spec)
