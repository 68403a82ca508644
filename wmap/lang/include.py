"""`use`: a spec built on other specs, merged into one Spec before anything else sees it.

`use "llama3.wmap"` brings in every statement of that spec as if it were written in this one, ahead
of this spec's own: its declarations (source, target, options, config, `let`s), rules, drop, init,
keep, freeze, lr and ack. A path ending in `.wmap`, `.yaml` or `.yml` is a file relative to the spec
that says `use`; anything else is a recipe by name (`hf_to_keras_hub/llama3`: the file under
`wmap/recipes/`), so a spec built on a recipe works from any folder.

Why merge and not nest: a plan, `check`, `invert` and the compiler then see one ordinary Spec, and
every statement keeps the span of the file it was written in, so a diagnostic or a plan's provenance
names `llama3.wmap:24:1`, not the line of the `use`.

The rules of the merge, chosen so that reading the files top to bottom tells what the spec does:

- A declaration may be repeated when it says the same thing (two files both `config hf`); a source or
  target left open (no location, no framework) is filled in by another file's. Two that differ are an
  error (WM127), never a silent override: which one wins would depend on the order of `use`s. One
  exception, for where the weights are: the loaded file's own source and target locations replace
  the used specs' (as `--source`/`--target` replace a spec's), so a file built on a recipe may name
  its own checkpoint and factory. Frameworks never differ.
- `use X | step ...` appends the steps to the chain of every rule X brings in (its own `use`s'
  included), e.g. `| cast("float16")` for a family that rounds every weight.
- A file is merged once however many paths reach it (the same rules twice would fill every target
  twice); a `use` that reaches itself again is a cycle (WM126); a file or recipe that is not there is
  WM125, at the `use`.
- Every used file must check on its own: it declares what it names, so it can be reviewed alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from wmap.core.errors import Diagnostic, DiagnosticBag, Span, WmapError, did_you_mean
from wmap.lang.spec import Call, ConfigDecl, Let, Option, Rule, SourceDecl, Spec, TargetDecl, Use

SPEC_SUFFIXES = (".wmap", ".yaml", ".yml")
MAX_DEPTH = 32  # `use`s inside `use`s; a real repository of mappings needs two or three

Loader = Callable[[str], Spec]
"""Reads one spec file without resolving its `use`s (the caller resolves them, with the cycle check)."""

D = TypeVar("D", Option, Let)
E = TypeVar("E", SourceDecl, TargetDecl)


def is_file_path(name: str) -> bool:
    return name.lower().endswith(SPEC_SUFFIXES)


def recipes_root() -> str:
    """The folder recipe names are read from (`wmap/recipes/`): package data, found without importing it."""
    return str(resources.files("wmap") / "recipes")


def recipe_files() -> list[str]:
    """Every spec file under `wmap/recipes/`, sorted: the recipes and the parts they `use`."""
    root = recipes_root()
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".wmap"))


def locate(use: Use, including: str | None) -> str:
    """The file a `use` names; WM125 when there is none."""
    if is_file_path(use.path):
        base = os.path.dirname(including) if including else os.getcwd()
        found = os.path.normpath(os.path.join(base, use.path))
        if os.path.isfile(found):
            return found
        try:
            near = [f for f in os.listdir(os.path.dirname(found) or ".") if is_file_path(f)]
        except OSError:
            near = []
        raise _err("WM125", f"`use \"{use.path}\"`: there is no spec file `{found}`", use.span,
                   did_you_mean(os.path.basename(use.path), near) or
                   "a path is relative to the spec that says `use`; a recipe is named without a suffix")
    root = recipes_root()
    found = os.path.join(root, *use.path.split("/")) + ".wmap"
    if ".." not in use.path.split("/") and os.path.isfile(found):
        return found
    known = [os.path.relpath(f, root)[:-5].replace(os.sep, "/") for f in recipe_files()]
    raise _err("WM125", f"`use \"{use.path}\"`: there is no recipe `{use.path}`", use.span,
               did_you_mean(use.path, known) or "a file ends in .wmap or .yaml (relative to this spec); "
               "list the recipes with `wmap recipes`")


def resolve(spec: Spec, load: Loader) -> Spec:
    """`spec` with every `use` merged in (recursively); `spec` itself when it has none."""
    if not spec.uses:
        return spec
    bag = DiagnosticBag(sources=spec.texts())
    top = _key(spec.path)
    seen: dict[str, tuple[Call, ...]] = {}
    merged = _Merged(bag, os.path.dirname(spec.path) if spec.path else None)
    _merge(spec, (), [top] if top else [], load, merged, seen, own=True)
    bag.sources.update(merged.texts)
    out = merged.spec(spec)
    if not bag.has_errors:
        from wmap.lang.validate import check_structure, sort_diagnostics
        check_structure(out, bag)  # now every name the files use is declared: check the whole
        sort_diagnostics(bag)
    bag.raise_if_errors()
    return out


def _key(path: str | None) -> str:
    return os.path.realpath(path) if path else ""


def _merge(spec: Spec, via: tuple[Call, ...], stack: list[str], load: Loader, merged: _Merged,
           seen: dict[str, tuple[Call, ...]], own: bool = False) -> None:
    """Merge the specs `spec` uses, then `spec` itself, with `via` appended to every rule's chain.
    `own`: `spec` is the file being loaded, whose endpoint locations win (see `_Merged.add`)."""
    for use in spec.uses:
        try:
            found = locate(use, spec.path)
        except WmapError as e:
            merged.bag.extend(e.diagnostics)
            continue
        key = _key(found)
        if key in stack:
            chain = " -> ".join(os.path.basename(p) for p in [*stack[stack.index(key):], key])
            merged.bag.add("WM126", f"`use \"{use.path}\"` goes round in a cycle: {chain}", use.span,
                           "move what the files share into a third file that both use")
            continue
        if len(stack) >= MAX_DEPTH:
            merged.bag.add("WM126", f"`use \"{use.path}\"`: `use`s nest more than {MAX_DEPTH} deep", use.span,
                           "a spec builds on a few others; flatten the chain")
            continue
        steps = tuple(use.via) + via
        if key in seen:  # reached again by another path: merged once (same steps) or a conflict
            if steps != seen[key]:
                merged.bag.add("WM127", f"`use \"{use.path}\"`: that spec is already used with other steps",
                               use.span, "use it once, with the steps every rule needs")
            continue
        seen[key] = steps
        try:
            inner = load(found)
        except WmapError as e:
            where = f"used at {use.span}" if use.span.line else f"used by {spec.path or '<spec>'}"
            merged.bag.extend(dataclasses.replace(d, notes=(*d.notes, where)) for d in e.diagnostics)
            merged.texts.update(e.sources)
            continue
        merged.texts[inner.path or found] = inner.text or ""
        _merge(inner, steps, [*stack, key], load, merged, seen)
    merged.add(spec, via, own)


class _Merged:
    """What the files add up to, with the conflicts between them reported in `bag`."""

    def __init__(self, bag: DiagnosticBag, top_dir: str | None):
        self.bag = bag
        self.top_dir = top_dir
        self.texts: dict[str, str] = {}
        self.sources: list[SourceDecl] = []
        self.target: TargetDecl | None = None
        self.options: list[Option] = []
        self.config: ConfigDecl | None = None
        self.lets: list[Let] = []
        self.rules: list[Rule] = []
        self.lists: dict[str, list[Any]] = {k: [] for k in ("drop", "init", "keep", "freeze", "lr", "ack")}
        self.places: set[tuple[str, Span]] = set()  # (kind, span) of what is merged: each statement once

    def add(self, spec: Spec, via: tuple[Call, ...], own: bool = False) -> None:
        """`own`: the file being loaded. Its sources' and target's locations win over the used specs',
        as `--source` and `--target` win over a spec's: where the weights are is the user's to say
        (a recipe names keras-hub's factory; a user's file built on it may name their own)."""
        for s in spec.sources:
            prev = next((i for i, x in enumerate(self.sources) if x.name == s.name), None)
            if prev is None:
                self.sources.append(s)
            else:
                self.sources[prev] = self._endpoint(self.sources[prev], s, f"source `{s.name}`", own)
        if spec.target is not None:
            self.target = spec.target if self.target is None else \
                self._endpoint(self.target, spec.target, "the target", own)
        for o in spec.options:
            self._once(self.options, o, f"option `{o.name}`")
        if spec.config is not None:
            c = self._config(spec.config, spec.path)
            if self.config is None:
                self.config = c
            elif (self.config.path, self.config.endpoint) != (c.path, c.endpoint):
                self._conflict("the config", self.config.span, c.span)
        for let in spec.lets:
            self._once(self.lets, let, f"`let {let.name}`")
        for r in spec.rules:
            if self._new("rule", r.span):
                self.rules.append(dataclasses.replace(r, via=tuple(r.via) + via) if via else r)
        for kind, items in self.lists.items():
            items.extend(x for x in getattr(spec, kind) if self._new(kind, x.span))

    def _new(self, kind: str, span: Span) -> bool:
        if not span.line:  # built in code, no place to tell two apart
            return True
        if (kind, span) in self.places:
            return False
        self.places.add((kind, span))
        return True

    def _once(self, items: list[D], node: D, what: str) -> None:
        """A declaration by name: repeated as it is, it is one; said differently, a conflict."""
        prev = next((x for x in items if x.name == node.name), None)
        if prev is None:
            items.append(node)
        elif prev != node:
            self._conflict(what, prev.span, node.span)

    def _endpoint(self, a: E, b: E, what: str, own: bool) -> E:
        """Two declarations of one endpoint: one may leave open what the other says; the loaded
        file's location (`own`) replaces a used spec's. Two frameworks that differ always conflict:
        they change what the rules mean (which layouts meet)."""
        loc = (b.location or a.location) if own else (a.location or b.location)
        fw = a.framework or b.framework
        if (not own and a.location and b.location and a.location != b.location) or \
                (a.framework and b.framework and a.framework != b.framework):
            self._conflict(what, a.span, b.span)
            return a
        keep = b if b.location or not a.location else a  # the span of the one that says where
        return dataclasses.replace(keep, location=loc, framework=fw)

    def _config(self, c: ConfigDecl, path: str | None) -> ConfigDecl:
        """A `config "file.json"` is relative to the file that says it: rewritten relative to the spec."""
        if c.path is None or os.path.isabs(c.path) or not path:
            return c
        here = os.path.join(os.path.dirname(path), c.path)
        return dataclasses.replace(c, path=os.path.relpath(here, self.top_dir) if self.top_dir else here)

    def _conflict(self, what: str, first: Span, second: Span) -> None:
        self.bag.add("WM127", f"{what} is declared differently in two specs", second,
                     f"the other is at {first}; a spec that uses another may repeat a declaration only as it is "
                     "(or fill in a source or target left open): give one value, in one file")

    def spec(self, top: Spec) -> Spec:
        def ordered(kind: str) -> tuple[Any, ...]:
            items = self.lists[kind]
            return tuple(sorted(items, key=lambda a: a.code)) if kind == "ack" else tuple(items)
        return dataclasses.replace(
            top, sources=tuple(self.sources), target=self.target, options=tuple(self.options), config=self.config,
            lets=tuple(self.lets), rules=tuple(self.rules), drop=ordered("drop"), init=ordered("init"),
            keep=ordered("keep"), freeze=ordered("freeze"), lr=ordered("lr"), ack=ordered("ack"), uses=(),
            included=tuple(self.texts.items()))


def _err(code: str, message: str, span: Span, hint: str | None) -> WmapError:
    return WmapError([Diagnostic(code, "error", message, span if span.line else None, hint)])


__all__ = ["SPEC_SUFFIXES", "is_file_path", "locate", "recipe_files", "recipes_root", "resolve"]
