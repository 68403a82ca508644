"""Hostile inputs, round two (issue 17): edited saved plans, untrusted names against ordinary specs,
expansion bounds, and the internal errors that became diagnostics.

Registered into `cases.CASES` by the import at the end of `cases.py`. Each plan case is built
twice where it matters: as a plain edit (refused by the plan's digest) and with the digest
recomputed (`redigest`: someone who read how it is made), which only the structural re-check and
the coverage check at apply time can refuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.hostile.cases import Setup, Work, case, redigest, st_blob

# == saved plans, edited by hand =====================================================================

Edit = Callable[[dict[str, Any]], None]


def _edited_plan(w: Work, edit: Edit, recompute: bool) -> Setup:
    import wmap
    p = wmap.plan(str(w.spec()), source=str(w.source()), target=str(w.target()))
    data = json.loads(p.dumps())
    edit(data)
    if recompute:
        data = redigest(data)
    return w.apply(w.d / "src.safetensors", spec=w.file("plan.json", json.dumps(data)),
                   target=w.d / "tgt.safetensors")


def _second_step_reads_the_first_source(d: dict[str, Any]) -> None:
    d["steps"][1]["sources"][0].update(read="a.weight", name="a.weight", shape=[2, 3])
    d["steps"][1]["targets"][0].update(shape=[2, 3])
    d["steps"][1]["targets"][0]["name"] = "b.bias"


def _map_step_into_init(d: dict[str, Any]) -> None:
    d["steps"][0].update(kind="init", sources=[], init={"name": "normal", "params": {"std": 1000.0}})


def _nonfinite_allow_and_scale_inf(d: dict[str, Any]) -> None:
    d["options"]["nonfinite"] = "allow"
    d["steps"][0]["transforms"] = [{"name": "scale", "params": {"a": float("inf")}}]
    d["steps"][0]["chain"] = [[{"shape": [2, 3], "dtype": "float32"}]]


EDITS: dict[str, tuple[Edit, str]] = {
    # name: (the edit, what the structural check says once the digest is recomputed)
    "second_step_reads_a_weight": (_second_step_reads_the_first_source, "is read twice"),
    "step_deleted": (lambda d: d["steps"].pop(), "is neither read nor dropped"),
    "targets_emptied": (lambda d: d["steps"][0].update(targets=[]), "it writes no target"),
    "map_step_made_init": (_map_step_into_init, "is neither read nor dropped"),
    "step_kind_evil": (lambda d: d["steps"][0].update(kind="evil"), "step kind `evil`"),
    "tied_pair_injected": (lambda d: d.update(tied=[["b.bias", "b.weight"]]), "is not an alias of a written"),
    "tied_alias_invented": (lambda d: d.update(tied=[["b.other", "b.weight"]]), "tied pairs are not the target's"),
    "nonfinite_allow_scale_inf": (_nonfinite_allow_and_scale_inf, ""),
    "shard_size_abc": (lambda d: d["options"].update(shard_size="abc"), "option `shard_size` cannot be"),
    "nonfinite_option_bogus": (lambda d: d["options"].update(nonfinite="bogus"), "option `nonfinite` cannot be"),
    "transform_argument_wrong_type": (lambda d: d["steps"][0].update(
        transforms=[{"name": "transpose", "params": {"axes": "xyz"}}], chain=[[{"shape": [3, 2], "dtype": "float32"}]]),
        "not a valid wmap plan"),
    "chain_shapes_invented": (lambda d: d["steps"][0].update(
        transforms=[{"name": "scale", "params": {"a": 2.0}}], chain=[[{"shape": [3, 2], "dtype": "float32"}]]),
        "not the ones recorded"),
}


def _register_plan_cases() -> None:
    for name, (edit, text) in EDITS.items():
        def plain(w: Work, edit: Edit = edit) -> Setup:
            return _edited_plan(w, edit, recompute=False)
        plain.__name__ = f"plan_edited_{name}"
        case("plan.json", "WM520", "was edited after `wmap plan` wrote it")(plain)
        if text or name != "nonfinite_allow_scale_inf":  # with a valid digest this one is a plan a spec can make
            def again(w: Work, edit: Edit = edit) -> Setup:
                return _edited_plan(w, edit, recompute=True)
            again.__name__ = f"plan_redigested_{name}"
            case("plan.json", "WM520", text)(again)


_register_plan_cases()


@case("plan.json", "WM520", "carries no digest of itself")
def plan_without_digest(w: Work) -> Setup:
    return _edited_plan(w, lambda d: d.pop("digest"), recompute=False)


# == untrusted names against ordinary specs (each used to take from 18 s to hours) ====================


def _names(w: Work, names: list[str], spec: str, target: dict[str, np.ndarray] | None = None) -> Setup:
    one = np.ones(1, np.float32)
    src = w.file("names.safetensors", st_blob({n: one for n in names}))
    tgt = w.target(target) if target is not None else w.target()
    return w.apply(src, spec=w.spec(spec), target=tgt)


@case("names", "WM201", "matched 0 source tensors")
def names_many_stars_against_a_long_segment(w: Work) -> Setup:
    """`*a*a*a*a*a*b` backtracks O(n^6) through 3000 `a`s in `re`."""
    return _names(w, ["a" * 3000 + ".bias", "a.weight"], "wmap 1\n*a*a*a*a*a*b.bias -> b.bias\na.weight -> b.weight\n")


@case("names", "WM201", "matched 0 source tensors")
def names_three_captures_against_underscores(w: Work) -> Setup:
    return _names(w, ["_" * 2000 + ".weight", "a.bias"],
                  "wmap 1\n{a}_{b}_{c}_x.weight -> b.weight\na.bias -> b.bias\n")


@case("names", "WM201", "matched 0 source tensors")
def names_two_double_stars_against_20k_segments(w: Work) -> Setup:
    return _names(w, [".".join(["x"] * 20000) + ".z", "a.bias"], "wmap 1\n**.x.**.y -> b.weight\na.bias -> b.bias\n")


@case("names", "WM201", "matched 0 source tensors")
def names_strip_prefix_repeated_300k_times(w: Work) -> Setup:
    """`strip_prefix` over a 2 MB name of `module.`s: each strip copied the rest (quadratic)."""
    return _names(w, ["module." * 300_000 + "w", "module.a.bias"],
                  'wmap 1\noption strip_prefix = "module."\nq.{x} -> b.weight\na.bias -> b.bias\n')


@case("names", "WM201", "matched 0 source tensors")
def names_no_match_hint_over_5000_first_segments(w: Work) -> Setup:
    """The WM201 hint tried every first segment as a prefix against every name (quadratic)."""
    names = [f"l{i}.weight" for i in range(5000)]
    tgt = {n: np.ones(1, np.float32) for n in names}
    return _names(w, names, "wmap 1\n{p}.weight -> {p}.weight\nzz.{q:**} -> {q}\n", tgt)


@case("expansion", "WM124", "alternations render 1,073,741,824 names")
def brace_fanout_2_to_the_30_under_check(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap 1\na -> t" + "{a,b}_" * 30 + "x\n"))])


@case("expansion", "WM124", "chains more than 256 transforms")
def chain_of_200k_identities_under_check(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap 1\na -> b" + " | identity" * 200_000 + "\n"))])


@case("expansion", "WM124", "chains more than 256 transforms")
def chain_continued_over_300_lines(w: Work) -> Setup:
    return w.apply(spec=w.spec("wmap 1\na.{x} -> b.{x}\n" + "  | identity\n" * 300))


@case("expansion", "WM124", "chains 300 transforms")
def chain_of_300_in_yaml(w: Work) -> Setup:
    via = "[" + ", ".join(["identity"] * 300) + "]"
    return Setup(argv=["check", str(w.spec(f"wmap: 1\nrules:\n  - {{from: a, to: b, via: {via}}}\n",
                                           name="spec.yaml"))])


# == internal errors that became diagnostics, and values that were misread ============================


@case("spec", "WM108", "index arithmetic takes at most 18")
def template_arithmetic_with_5000_digits(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap 1\na.{i:int} -> b.{i+" + "9" * 5000 + "}\n"))])


@case("spec", "WM104", "must name the same gates once each")
def reorder_gates_with_no_gates(w: Work) -> Setup:
    return w.apply(spec=w.spec('wmap 1\na.{x} -> b.{x} | reorder_gates("", "")\n'))


@case("spec", "WM110", "has the wrong type (bytes)")
def yaml_binary_tag_under_check(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap: 1\nrules:\n  - {from: !!binary aGVsbG8=, to: b}\n",
                                           name="spec.yaml"))])


@case("spec", "WM106", "is infinite")
def yaml_lr_infinite(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap: 1\nrules:\n  - {from: 'a.{x}', to: 'b.{x}'}\nlr: {'b.*': .inf}\n",
                                           name="spec.yaml"))])


@case("spec", "WM106", "is not a number")
def yaml_lr_nan(w: Work) -> Setup:
    return Setup(argv=["check", str(w.spec("wmap: 1\nrules:\n  - {from: 'a.{x}', to: 'b.{x}'}\nlr: {'b.*': .nan}\n",
                                           name="spec.yaml"))])


def _digit_name(w: Work, digit: str) -> Setup:
    """`{i:int}` reads ASCII digits only: `int("٣")` is 3, so `l٣.w` would land on layer 3."""
    return _names(w, [f"l{digit}.weight", "a.bias"], "wmap 1\nl{i:int}.weight -> b.weight\na.bias -> b.bias\n")


@case("names", "WM201", "matched 0 source tensors")
def int_capture_refuses_arabic_indic_zero(w: Work) -> Setup:
    return _digit_name(w, "\u0660")


@case("names", "WM201", "matched 0 source tensors")
def int_capture_refuses_fullwidth_one(w: Work) -> Setup:
    return _digit_name(w, "\uff11")


@case("names", "WM201", "matched 0 source tensors")
def int_capture_refuses_fullwidth_one_in_a_long_name(w: Work) -> Setup:
    """The same through the linear matcher (a name past the regex's budget)."""
    return _names(w, ["l\uff11." + "x" * 3000 + "_w", "a.bias"],
                  "wmap 1\nl{i:int}.{a}_{b}_w -> b.weight\na.bias -> b.bias\n")


@case("output", "WM512", "No space left on device")
def sharded_output_on_a_full_disk_leaves_no_folder(w: Work) -> Setup:
    from tests.hostile.cases import _disk_full_after
    out = w.outdir / "sharded"
    s = w.apply(spec=w.spec('wmap 1\noption shard_size = "30B"\na.{x} -> b.{x}\n'), out=out)
    s.watch = [w.outdir]
    s.patch = _disk_full_after(1)  # each shard's header fits, its tensor does not
    return s
