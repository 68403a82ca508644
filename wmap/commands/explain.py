"""`wmap explain NAME`: the docs of a transform, an initialiser, an option or a diagnostic code.

The text comes from where the thing is defined (transform docstrings and signatures, the
initialiser table, the option table, the code catalogue), so it cannot drift from the code.
With no NAME it lists everything there is to explain.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from dataclasses import dataclass

from wmap.commands.common import Output, add_format

OPTION_EXAMPLES = {"strict": "false", "seed": "42", "dtype": '"target"', "strip_prefix": '"module."',
                   "target_strip_prefix": '"model."', "nonfinite": '"warn"', "bn_eval": "true",
                   "shard_size": '"2GB"'}
ARITY_TEXT = {"1:1": "one tensor in, one out", "n:1": "fan-in: several tensors in, one out",
              "1:n": "fan-out: one tensor in, several out"}


@dataclass(frozen=True)
class Entry:
    """One explainable thing, already rendered to fields a text or JSON view can show."""

    kind: str  # transform | initialiser | option | statement | code
    name: str
    summary: str
    signature: str = ""
    detail: str = ""
    example: str = ""
    extra: tuple[tuple[str, object], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "summary": self.summary, "signature": self.signature,
                "detail": self.detail, "example": self.example, **dict(self.extra)}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "explain", help="explain a transform, initialiser, option or diagnostic code",
        description="Show the documentation of a transform (signature, arity, example), an initialiser, "
                    "an option, or a diagnostic code such as WM301. With no NAME, list everything. Exit 1 "
                    "for an unknown name (with a did-you-mean).")
    p.add_argument("name", nargs="?", metavar="NAME", help="e.g. split, normal, strip_prefix, WM301")
    add_format(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: Output) -> int:
    if args.name is None:
        entries = all_entries()
        if out.fmt == "json":
            out.json([{"kind": e.kind, "name": e.name, "summary": e.summary} for e in entries])
        else:
            out.print(render_list(entries))
        return 0
    found = lookup(args.name)
    if out.fmt == "json":
        out.json([e.to_json() for e in found])
    else:
        out.print("\n".join(render(e) for e in found))
    return 0


# -- lookup --------------------------------------------------------------------------------------


def lookup(name: str) -> list[Entry]:
    """Every entry called `name` (a transform and an initialiser may share one); WM521 when none is."""
    from wmap.core.errors import did_you_mean, error

    key = name.strip()
    found = [e for e in (_transform(key), _initialiser(key), _option(key), _statement(key), _code(key))
             if e is not None]
    if found:
        return found
    names = [e.name for e in all_entries()]
    if re.fullmatch(r"(?i)wm\d*", key):
        hint = did_you_mean(key.upper(), [n for n in names if n.startswith("WM")]) or \
            "`wmap explain` with no name lists every code"
    else:
        hint = did_you_mean(key, names) or "run `wmap explain` with no name to list everything"
    raise error("WM521", f"nothing called `{name}`: it is not a transform, initialiser, option or "
                "diagnostic code", hint=hint)


def all_entries() -> list[Entry]:
    from wmap.core.codes import CODES
    from wmap.lang.spec import OPTIONS
    from wmap.transforms import REGISTRY
    from wmap.transforms.initializers import INITIALIZERS

    out: list[Entry] = []
    out += [e for n in sorted(REGISTRY) if (e := _transform(n)) is not None]
    out += [e for n in sorted(INITIALIZERS) if (e := _initialiser(n)) is not None]
    out += [e for n in OPTIONS if (e := _option(n)) is not None]
    out += [e for n in CODES if (e := _code(n)) is not None]
    return out


def _transform(name: str) -> Entry | None:
    from wmap.transforms import REGISTRY, doc, signature

    cls = REGISTRY.get(name)
    if cls is None:
        return None
    text = doc(cls)
    lines = text.splitlines()
    example = next((ln.split("Example:", 1)[1].strip() for ln in lines if ln.startswith("Example:")), "")
    body = "\n".join(ln for ln in lines if not ln.startswith("Example:")).strip()
    arity = "resolved from the preset it picks" if cls.DISPATCH else ARITY_TEXT[cls.ARITY]
    if not example:
        generic = {"n:1": f"`{{a,b}}.weight -> merged.weight | {name}`",
                   "1:n": f"`fused.weight -> {{a,b}}.weight | {name}`"}
        example = generic.get(cls.ARITY, f"`x.weight -> y.weight | {name}`")
    return Entry("transform", name, first_sentence(body), signature(cls), body, example,
                 (("arity", "dispatch" if cls.DISPATCH else cls.ARITY), ("arity_text", arity),
                  ("invertible", cls.INVERTIBLE)))


def _initialiser(name: str) -> Entry | None:
    from wmap.transforms.initializers import DOCS, INITIALIZERS

    if name not in INITIALIZERS:
        return None
    positional, allowed, required = INITIALIZERS[name]
    keyword_only = sorted(allowed - set(positional))
    params = list(positional) + (["*"] + keyword_only if keyword_only else [])
    sig = f"{name}({', '.join(params)})" if params else name
    text = DOCS.get(name, "")
    m = re.search(r"`(init [^`]+)`", text)
    example = f"`{m.group(1)}`" if m else f"`init head.weight = {name}`"
    summary = text.split(". `")[0].rstrip(".") if text else name
    req = ", ".join(sorted(required)) or "none"
    return Entry("initialiser", name, summary, sig, text, example, (("required", req),))


def _option(name: str) -> Entry | None:
    from wmap.lang.fmt import value_text
    from wmap.lang.spec import OPTIONS

    if name not in OPTIONS:
        return None
    _, default, text = OPTIONS[name]
    shown = value_text(default)
    return Entry("option", name, text, f"option {name} = ...", f"default: {shown}",
                 f"`option {name} = {OPTION_EXAMPLES.get(name, shown)}`", (("default", shown),))


# Statements whose meaning is more than their usage line (the README's statement table has the rest).
STATEMENT_DOCS = {
    "ack": ("Marks plan warnings as reviewed. A warning of CODE is acknowledged when PATTERN matches every "
            "target tensor it is about (after `target_strip_prefix`); the plan lists it under \"acknowledged\" "
            "instead of warning, so `plan`, `apply`, the report and the markdown view stay clean. An ack that "
            "matches no warning is itself a warning (WM212), and only warnings can be acknowledged (WM140). "
            "YAML: `ack: {WM310: [dense.kernel, head.kernel]}`."),
}


def _statement(name: str) -> Entry | None:
    from wmap.lang.statements import STATEMENTS

    if name not in STATEMENT_DOCS:
        return None
    return Entry("statement", name, STATEMENTS[name], f"{name} CODE PATTERN[, PATTERN...]", STATEMENT_DOCS[name],
                 "`ack WM310 dense.kernel`")


def _code(name: str) -> Entry | None:
    from wmap.core.codes import lookup as code_lookup

    c = code_lookup(name) if re.fullmatch(r"(?i)(wm)?\d{3}", name) else None
    if c is None:
        return None
    return Entry("code", c.code, c.title, "", c.explanation, c.fix, (("stage", c.stage),))


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph, joined onto one line (for one-line listings)."""
    para = " ".join(text.split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(?=\s+[A-Z`(]|$)", para)
    return m.group(1) if m else para


# -- rendering -----------------------------------------------------------------------------------


def render(e: Entry) -> str:
    """Text for one entry: a header line, the signature, the body, the example."""
    if e.kind == "code":
        lines = [f"{e.name}  {e.summary}  ({dict(e.extra)['stage']})", "", *textwrap.wrap(e.detail, 100), "",
                 "Fix, for example:"]
        lines += [f"  {ln}" for ln in e.example.splitlines()]
        return "\n".join(lines) + "\n"
    extra = dict(e.extra)
    if e.kind == "transform":
        head = f"{e.name}  (transform, {extra['arity_text']})"
        body = [f"  {e.signature}", "", e.detail]
    elif e.kind == "initialiser":
        head = f"{e.name}  (initialiser; required parameters: {extra['required']})"
        body = [f"  {e.signature}", "", e.detail]
    elif e.kind == "statement":
        head = f"{e.name}  (statement)"
        body = [f"  {e.signature}", "", *textwrap.wrap(e.detail, 100)]
    else:
        head = f"{e.name}  (option, {e.detail})"
        body = ["", e.summary]
    return "\n".join([head, *body, "", f"Example: {e.example}"]) + "\n"


def render_list(entries: list[Entry]) -> str:
    titles = {"transform": "Transforms (`wmap explain NAME`)",
              "initialiser": "Initialisers (`init X = NAME`)",
              "option": "Options (`option NAME = value`)", "code": "Diagnostic codes"}
    out: list[str] = []
    for kind, title in titles.items():
        group = [e for e in entries if e.kind == kind]
        width = max(len(e.name) for e in group)
        out += [title] + [f"  {e.name.ljust(width)}  {e.summary}" for e in group] + [""]
    return "\n".join(out)
