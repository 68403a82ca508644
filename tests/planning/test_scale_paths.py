"""The fast paths planning takes at scale (issue 18) give exactly what the plain ones give.

Planning a DeepSeek-V3-sized checkpoint (92k tensors) folds names in bulk, reads fan-in order
straight from regex matches, memoises the order of repeated fan-in groups, writes the plan's JSON
from templates and pauses the garbage collector. Each is checked here against the definition it
replaces: `json.dumps(indent=2)` for the saved plan, a per-name fold for folding, the sort and
range check on every group for fan-in order.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.planning.test_plan_golden import STEMS, _inventories
from tests.planning.test_properties import compile_inputs
from tests.support.paths import EXAMPLES
from wmap.core.bulk import collector_paused
from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.core.names import fold, fold_numbers, split_runs, template_of
from wmap.lang import load_spec, parse_spec
from wmap.lang.bindings import ConfigData
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan, SourceRef, Step, TargetFlags
from wmap.planning.serialise import plan_from_json

DIGITS = re.compile(r"([0-9]+)")


def reference_fold(names: list[str]) -> list[tuple[str, int]]:
    """The definition: split each name into its template and digit runs, group by template in
    first-seen order, fold each column of runs."""
    groups: dict[str, list[list[str]]] = {}
    for n in names:
        parts = DIGITS.split(n)
        groups.setdefault("{}".join(parts[0::2]), []).append(parts[1::2])
    out = []
    for t, rows in groups.items():
        pieces = t.split("{}")
        text = pieces[0]
        for i, col in enumerate(list(zip(*rows)) if rows[0] else []):
            text += fold_numbers(col) + pieces[i + 1]
        out.append((text, len(rows)))
    return out


names_st = st.lists(st.text(st.sampled_from("ab.0123_{}\x00٣"), max_size=12), max_size=30)


@settings(max_examples=400, deadline=None)
@given(names_st)
def test_fold_in_bulk_is_the_per_name_fold(names: list[str]) -> None:
    assert fold(names) == reference_fold(names)
    runs = split_runs(names)
    if runs is not None:
        assert runs[0].split("\x00") == [template_of(n)[0] for n in names] if names else True


def test_fold_of_a_fan_in_is_one_line_per_template() -> None:
    experts = [f"model.layers.{i}.mlp.experts.{e}.gate_proj.weight" for i in range(3, 61) for e in range(256)]
    assert fold(experts) == [("model.layers.{3..60}.mlp.experts.{0..255}.gate_proj.weight", len(experts))]
    mixed = experts[:3] + ["lm_head.weight", "model.layers.7.mlp.experts.9.up_proj.weight"] + experts[3:5]
    assert fold(mixed) == reference_fold(mixed)


def _plans() -> list[Plan]:
    plans = []
    for stem in STEMS:
        sources, target = _inventories(stem)
        plans.append(compile_plan(load_spec(EXAMPLES / f"{stem}.wmap"), sources, target))
    return plans


def _dumps_reference(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2) + "\n"


def test_saved_plan_text_is_json_dumps_for_every_example() -> None:
    for plan in _plans():
        assert plan.dumps() == _dumps_reference(plan)


def test_saved_plan_text_is_json_dumps_for_unusual_metas() -> None:
    """Native names, layer kinds, attrs, non-ASCII and control characters, scalars, init
    parameters, lr flags and a config: the writer's templates or its fallback, never a difference."""
    src = Inventory.from_metas([
        TensorMeta("enc.0.weight", (4, 3), "float32", native="enc/0/kernel:0", kind="Dense", attrs=(("eps", 1e-5),)),
        TensorMeta("enc.1.wéight", (4,), "bfloat16"),
        TensorMeta("scale", (), "float32", kind="Scale"),
        TensorMeta("e.0.w", (2, 2), "float16"), TensorMeta("e.1.w", (2, 2), "float16"),
    ], "src", "torch")
    tgt = Inventory.from_metas([
        TensorMeta("dec.0.weight", (3, 4), "float32", kind="Linear"),
        TensorMeta("dec.1.wéight", (4,), "float32"),
        TensorMeta("s", (), "float32"), TensorMeta("new.bias", (5,), "float32"), TensorMeta("stk", (2, 2, 2), "float16"),
    ], "tgt", "keras")
    spec = parse_spec('wmap 1\nconfig "c.json"\nlet k = config.k\nenc.0.weight -> dec.0.weight | transpose\n'
                      '"enc.1.wéight" -> "dec.1.wéight"\nscale -> s | scale($k)\ne.{i:int}.w -> stk | stack(0)\n'
                      'init new.bias = normal(mean=0.5, std=0.02)\nlr dec.** * 10\nfreeze s\n')
    plan = compile_plan(spec, {"src": src}, tgt, config=ConfigData("c.json", {"k": 2.5}, "path:c.json"))
    text = plan.dumps()
    assert text == _dumps_reference(plan)
    assert '"native": "enc/0/kernel:0"' in text and '"lr": 10.0' in text and "\\u00e9" in text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compile_inputs())
def test_saved_plan_text_is_json_dumps_for_random_plans(inputs: tuple[Inventory, Inventory, str]) -> None:
    src, tgt, text = inputs
    try:
        plan = compile_plan(parse_spec(text), {"src": src}, tgt)
    except WmapError:
        return
    saved = plan.dumps()
    assert saved == _dumps_reference(plan)
    assert plan_from_json(json.loads(saved)).steps == plan.steps  # (a saved plan keeps no warnings)


def _moe(layers: int, experts: int, shuffle: bool, gap: int | None = None) -> tuple[Inventory, Inventory]:
    src = [TensorMeta(f"layers.{i}.experts.{e}.{p}", (4, 2), "float32")
           for i in range(layers) for e in range(experts) for p in ("w1", "w2") if not (i == 1 and e == gap)]
    if shuffle:
        random.Random(7).shuffle(src)
    tgt = [TensorMeta(f"layers.{i}.moe.{p}", (experts - (i == 1 and gap is not None), 4, 2), "float32")
           for i in range(layers) for p in ("w1", "w2")]
    return Inventory.from_metas(src), Inventory.from_metas(tgt)


MOE = "wmap 1\nlayers.{i:int}.experts.{e:int}.{p} -> layers.{i}.moe.{p} | stack(0)\n"


def test_fan_in_order_is_the_index_order_whatever_order_the_checkpoint_lists() -> None:
    ordered = compile_plan(parse_spec(MOE), {"src": _moe(3, 12, False)[0]}, _moe(3, 12, False)[1])
    shuffled = compile_plan(parse_spec(MOE), {"src": _moe(3, 12, True)[0]}, _moe(3, 12, True)[1])
    for a, b in zip(ordered.steps, shuffled.steps, strict=True):
        assert [r.name for r in a.sources] == [r.name for r in b.sources]
        assert [r.name for r in b.sources] == [f"{b.targets[0].name.replace('moe', 'experts.{}')}".format(e)
                                               for e in range(12)]
        assert b.order == "{e} = 0..11"


def test_a_group_with_a_gap_is_reported_although_its_neighbours_share_one_order() -> None:
    """Groups are memoised by their index values: the one layer that lacks expert 5 is not."""
    src, tgt = _moe(3, 12, True, gap=5)
    with pytest.raises(WmapError) as e:
        compile_plan(parse_spec(MOE), {"src": src}, tgt)
    msgs = [d.message for d in e.value.diagnostics if d.code == "WM211"]
    assert len(msgs) == 2 and all("layers.1.moe" in m and "no 5" in m for m in msgs), msgs


def test_fingerprint_is_the_digest_of_sorted_rows() -> None:
    import hashlib

    def reference(inv: Inventory) -> str:
        rows = sorted((t.name, list(t.shape), t.dtype) for t in inv.tensors)
        return "sha256:" + hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()[:32]
    metas = [TensorMeta(f"b.{i}", (i, 2), "float32") for i in range(20)] + [TensorMeta("a", (), "int64")]
    random.Random(1).shuffle(metas)
    unique = Inventory.from_metas(metas)
    twice = Inventory.from_metas(metas + [TensorMeta("a", (1,), "float16")])  # duplicate names: sorted by all fields
    assert unique.fingerprint() == reference(unique) and unique.fingerprint() == unique.fingerprint()
    assert twice.fingerprint() == reference(twice) != unique.fingerprint()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was_found(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(KeyError), collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # an inner block does not resume it early
            raise KeyError("x")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def _sources_used_reference(plan: Plan) -> int:
    return len({(r.source, r.meta.name) for s in plan.steps for r in s.sources})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compile_inputs())
def test_summary_counts_the_distinct_source_tensors_read(inputs: tuple[Inventory, Inventory, str]) -> None:
    """`sources_used` counts per source in sets of names (a fan-in's names at once): the same
    number as the set of (source, name) pairs it replaces, for random plans and the examples."""
    src, tgt, text = inputs
    try:
        plan = compile_plan(parse_spec(text), {"src": src}, tgt)
    except WmapError:
        return
    assert plan.summary()["sources_used"] == _sources_used_reference(plan)


def test_summary_counts_a_tensor_read_twice_or_from_two_sources_as_the_reference_does() -> None:
    for plan in _plans():
        assert plan.summary()["sources_used"] == _sources_used_reference(plan)
    a = SourceRef("a", TensorMeta("w", (2,), "float32"), "w")
    b = SourceRef("b", TensorMeta("w", (2,), "float32"), "w")
    t = TensorMeta("t", (2,), "float32")
    steps = (Step("map", (t,), (a, b)), Step("map", (t,), (a, a)), Step("init", (t,), (a,)))
    plan = Plan(steps, (), "", (("a", ""), ("b", "")), "", (), None, (), "", ())
    assert plan.summary()["sources_used"] == 2 == _sources_used_reference(plan)


run_names = st.builds(lambda pre, first, n, suf: [f"{pre}{k}{suf}" for k in range(first, first + n)],
                      st.text(st.sampled_from("ab.0123_{}\x00٣"), max_size=6), st.integers(0, 120),
                      st.integers(0, 5), st.text(st.sampled_from("ab.0123_{}\x00٣"), max_size=6))


@settings(max_examples=600, deadline=None)
@given(st.one_of(run_names, names_st))
def test_a_numbered_run_splits_into_what_the_regex_pass_gives(names: list[str]) -> None:
    """The render reads a fan-in's names from their prefix and suffix, not a regex pass per name:
    the same templates and digit runs whenever it applies, and it applies to a plain run."""
    from wmap.core.names import numbered_run
    from wmap.planning.render import _numbered_runs
    fast = _numbered_runs(names)
    if fast is not None:
        assert fast == split_runs(names)
    run = numbered_run(names)
    if run is not None:
        prefix, first, suffix = run
        assert names == [f"{prefix}{k}{suffix}" for k in range(first, first + len(names))]
    if len(names) > 1 and all(re.fullmatch(r"layer\.[0-9]+\.w", n) for n in names) and \
            [int(n.split(".")[1]) for n in names] == list(range(int(names[0].split(".")[1]), len(names))):
        assert run is not None


def test_numbered_runs_cover_a_fan_in_and_nothing_that_only_looks_like_one() -> None:
    from wmap.core.names import numbered_run
    assert numbered_run([f"l.3.experts.{e}.w1" for e in range(8, 300)]) == ("l.3.experts.", 8, ".w1")
    assert numbered_run(["e9", "e10", "e11"]) == ("e", 9, "")
    assert numbered_run(["e.1", "e.3"]) is None and numbered_run(["e.01", "e.02"]) is None
    assert numbered_run(["e.1", "e.2", "e.4"]) is None and numbered_run(["e.1"]) is None
    assert numbered_run(["x1y", "x2y", "x3z"]) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compile_inputs())
def test_render_is_what_it_was_without_its_fan_in_shortcuts(inputs: tuple[Inventory, Inventory, str]) -> None:
    """A plan renders the same with the numbered-run split and the alike-metas key as with the
    regex pass and a (shape, dtype) pair per tensor they replace."""
    from wmap.planning import render
    src, tgt, text = inputs
    try:
        plan = compile_plan(parse_spec(text), {"src": src}, tgt)
    except WmapError:
        return
    fast = plan.render(), plan.render("markdown")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "_numbered_runs", lambda names: None)
        mp.setattr(render, "_signature", lambda metas: tuple(map(render._META, metas)))
        assert (plan.render(), plan.render("markdown")) == fast


def test_render_of_fan_ins_is_what_it_was_without_its_shortcuts() -> None:
    from wmap.planning import render
    # layer 1's experts in another dtype, layer 2's in another shape: lines of their own
    dt = {0: "float32", 1: "float16", 2: "float32"}
    sh = {0: (4, 2), 1: (4, 2), 2: (2, 2)}
    src = Inventory.from_metas([TensorMeta(f"layers.{i}.experts.{e}.w1", sh[i], dt[i]) for i in range(3) for e in range(4)])
    tgt = Inventory.from_metas([TensorMeta(f"layers.{i}.moe.w1", (4, *sh[i]), dt[i]) for i in range(3)])
    mixed = compile_plan(parse_spec(MOE), {"src": src}, tgt)
    plans = [*_plans(), compile_plan(parse_spec(MOE), {"src": _moe(3, 12, False)[0]}, _moe(3, 12, False)[1]),
             compile_plan(parse_spec(MOE), {"src": _moe(3, 12, True)[0]}, _moe(3, 12, True)[1]), mixed]
    fast = [(p.render(), p.render("markdown")) for p in plans]
    assert any("{0..11}" in text for text, _ in fast)
    assert fast[-1][0].count("<- layers.") == 3, fast[-1][0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "_numbered_runs", lambda names: None)
        mp.setattr(render, "_signature", lambda metas: tuple(map(render._META, metas)))
        assert [(p.render(), p.render("markdown")) for p in plans] == fast


class _Node:
    def __init__(self) -> None:
        self.peer: object = self


def test_a_block_that_leaves_many_objects_hands_them_to_the_oldest_generation() -> None:
    """Left young, the block's survivors would be traced by the next young collections (8 s after
    planning 1M tensors); handed over, they wait for a full one, and a cycle made in the block is
    still collected by it."""
    import weakref

    from wmap.core.bulk import PROMOTE_AFTER
    was = gc.isenabled()
    started: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])
    gc.enable()
    try:
        with collector_paused():
            kept = [[i] for i in range(PROMOTE_AFTER + 1000)]
            cycle = _Node()
            dead = weakref.ref(cycle)
            del cycle
            gc.callbacks.append(note)  # from here on, while the collector is still paused
        more = [[i] for i in range(100)]  # a young collection would start at the first of these
        gc.callbacks.remove(note)
        assert started == [] and gc.get_freeze_count() == 0
        assert dead() is not None  # the cycle waits for a full collection...
        gc.collect()
        assert dead() is None and len(kept) + len(more) == PROMOTE_AFTER + 1100  # ...which collects it
    finally:
        if note in gc.callbacks:
            gc.callbacks.remove(note)
        (gc.enable if was else gc.disable)()


def test_objects_someone_else_froze_stay_frozen() -> None:
    from wmap.core.bulk import PROMOTE_AFTER
    was = gc.isenabled()
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            kept = [[i] for i in range(PROMOTE_AFTER + 1000)]
        assert gc.get_freeze_count() == frozen and len(kept) > PROMOTE_AFTER
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()


def _placed_reference(plan: Plan, target: Inventory) -> list[Step]:
    """The definition: kind (map, init, keep), then a map step's rule, then where its first target
    sits in the target inventory (the whole list sorted at once)."""
    order = {m.name: i for i, m in enumerate(target.tensors)}
    rank = {"map": 0, "init": 1, "keep": 2}
    return sorted(plan.steps, key=lambda s: (rank[s.kind], s.rule if s.kind == "map" and s.rule is not None else 0,
                                             min(order.get(t.name, 0) for t in s.targets)))


def test_steps_are_in_target_order_within_each_rule_when_the_target_lists_them_otherwise() -> None:
    src = Inventory.from_metas([TensorMeta(f"l.{i}.{p}", (2, 3), "float32") for i in range(12) for p in "ab"]
                               + [TensorMeta(f"e.{i}.w", (2,), "float32") for i in range(4)])
    tgt = [TensorMeta(f"m.{i}.{p}", (3, 2), "float32") for i in range(12) for p in "ab"]
    tgt += [TensorMeta("stk.w", (4, 2), "float32"), TensorMeta("x.0", (1,), "float32"), TensorMeta("x.1", (1,), "float32"),
            TensorMeta("k.0", (2,), "float32"), TensorMeta("k.1", (2,), "float32")]
    random.Random(3).shuffle(tgt)
    target = Inventory.from_metas(tgt)
    spec = parse_spec("wmap 1\nl.{i:int}.a -> m.{i}.a | transpose\nl.{i:int}.b -> m.{i}.b | transpose\n"
                      "e.{i:int}.w -> stk.w | stack(0)\ninit x.* = zeros\nkeep k.*\n")
    plan = compile_plan(spec, {"src": src}, target)
    assert list(plan.steps) == _placed_reference(plan, target)
    assert [s.targets[0].name for s in plan.steps if s.rule == 0 and s.kind == "map"] == \
        [m.name for m in tgt if m.name.startswith("m.") and m.name.endswith(".a")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compile_inputs(), st.randoms(use_true_random=False))
def test_steps_are_in_the_plain_sort_order_for_random_plans(inputs: tuple[Inventory, Inventory, str],
                                                           rnd: random.Random) -> None:
    src, tgt, text = inputs
    shuffled = list(tgt.tensors)
    rnd.shuffle(shuffled)
    target = Inventory.from_metas(shuffled, tgt.label, tgt.framework, tgt.tied)
    try:
        plan = compile_plan(parse_spec(text), {"src": src}, target)
    except WmapError:
        return
    assert list(plan.steps) == _placed_reference(plan, target)


def test_steps_sharing_a_signature_are_the_steps_the_dataclass_builds() -> None:
    """Steps after a rule's first with a given signature are copies of it with their own target,
    source, flags and order: each must be the Step its fields build, frozen and lr flags included."""
    src = Inventory.from_metas([TensorMeta(f"l.{i}.w", (2, 3), "float32") for i in range(6)]
                               + [TensorMeta(f"l.{i}.n.{p}", (3,), "float32") for i in range(6) for p in "ab"])
    tgt = Inventory.from_metas([TensorMeta(f"m.{i}.w", (3, 2), "float32") for i in range(6)]
                               + [TensorMeta(f"m.{i}.n.{p}", (3,), "float32") for i in range(6) for p in "ab"])
    spec = parse_spec("wmap 1\nl.{i:int}.w -> m.{i}.w | transpose\nl.{i:int}.n.{p} -> m.{i}.n.{p}\n"
                      "freeze m.{1,4}.**\nfreeze m.2.n.a\nlr m.3.** * 2.5\n")
    plan = compile_plan(spec, {"src": src}, tgt)
    for s in plan.steps:
        built = Step(**{f.name: getattr(s, f.name) for f in dataclasses.fields(Step)})
        assert s == built and repr(s) == repr(built) and hash(s) == hash(built)
        assert list(vars(s)) == [f.name for f in dataclasses.fields(Step)]
        name = s.targets[0].name
        assert s.flags == (TargetFlags(name.startswith(("m.1.", "m.4.")) or name == "m.2.n.a",
                                       2.5 if name.startswith("m.3.") else None),)
        assert s.sources[0].name == name.replace("m.", "l.", 1) and (not s.transforms or s.chain[-1][0][0] == s.targets[0].shape)
    assert sum(1 for s in plan.steps if s.flags[0].frozen) == 7 and len(plan.steps) == 18


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.lists(st.integers(0, 2**40), max_size=3).map(tuple),
                          st.sampled_from(["float32", "bfloat16", 'q"\\\u2028'])),
                max_size=12, unique_by=lambda r: r[0]))
def test_fingerprint_of_unique_names_is_json_dumps_of_the_sorted_rows(rows: list[tuple[str, tuple[int, ...], str]]
                                                                      ) -> None:
    """The writer that encodes each (shape, dtype) once gives json.dumps's bytes, escapes included."""
    import hashlib
    inv = Inventory.from_metas([TensorMeta(n, s, d) for n, s, d in rows])
    blob = json.dumps(sorted([n, list(s), d] for n, s, d in rows), separators=(",", ":"))
    assert inv.fingerprint() == "sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def _plan_or_diagnostics(spec_text: str, sources: dict[str, Inventory], target: Inventory, general: bool
                         ) -> object:
    """The plan, or the diagnostics it failed with; with `general`, every rule takes the general path."""
    import wmap.planning.compiler as compiler
    with pytest.MonkeyPatch.context() as mp:
        if general:
            mp.setattr(compiler, "_one_to_one", lambda *args: False)
        try:
            return compile_plan(parse_spec(spec_text), sources, target)
        except WmapError as e:
            return [(d.code, d.severity, d.message, d.span, d.hint, d.notes) for d in e.diagnostics]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compile_inputs(), st.sampled_from(["", "freeze ?**.weight\n", "lr ?**.bias * 0.1\n",
                                          "freeze ?enc.**\nlr ?**.weight * 2\n"]))
def test_the_one_to_one_path_builds_what_the_general_path_builds(inputs: tuple[Inventory, Inventory, str],
                                                                   flags: str) -> None:
    """A rule whose tensors each fill a target of their own takes a path of bulk lookups and
    accounting (a 1M-tensor compile's every rule); the same rule through the general path must give
    the same plan, steps in the same order, or fail with the same diagnostics."""
    src, tgt, text = inputs
    fast = _plan_or_diagnostics(text + flags, {"src": src}, tgt, general=False)
    plain = _plan_or_diagnostics(text + flags, {"src": src}, tgt, general=True)
    assert fast == plain
    if isinstance(fast, Plan):
        assert [(s.rule, s.targets, s.sources, s.flags, s.span) for s in fast.steps] == \
            [(s.rule, s.targets, s.sources, s.flags, s.span) for s in plain.steps]  # type: ignore[union-attr]


def test_the_one_to_one_path_builds_what_the_general_path_builds_for_every_example() -> None:
    for stem in STEMS:
        sources, target = _inventories(stem)
        text = (EXAMPLES / f"{stem}.wmap").read_text()
        assert _plan_or_diagnostics(text, sources, target, general=False) == \
            _plan_or_diagnostics(text, sources, target, general=True), stem


def test_steps_sharing_a_signature_keep_their_own_flags_and_order_on_the_one_to_one_path() -> None:
    """Tensors with one signature share their first step's fields, but not its flags, and the run is
    put in target order: `enc` and `dec` weights alike, only `enc` frozen, the target listing them
    the other way round."""
    layers = [f"{m}.{i}" for m in ("enc", "dec") for i in range(3)]
    src = Inventory.from_metas([TensorMeta(f"{n}.weight", (2, 3), "float32") for n in layers])
    tgt = Inventory.from_metas([TensorMeta(f"{n}.weight", (3, 2), "float32") for n in reversed(layers)])
    text = "wmap 1\n{m}.{i:int}.weight -> {m}.{i}.weight | transpose\nfreeze enc.**\nlr dec.1.* * 0.5\n"
    plan = _plan_or_diagnostics(text, {"src": src}, tgt, general=False)
    assert isinstance(plan, Plan)
    assert [(s.targets[0].name, s.flags[0]) for s in plan.steps] == [
        ("dec.2.weight", TargetFlags()), ("dec.1.weight", TargetFlags(lr=0.5)), ("dec.0.weight", TargetFlags()),
        ("enc.2.weight", TargetFlags(frozen=True)), ("enc.1.weight", TargetFlags(frozen=True)),
        ("enc.0.weight", TargetFlags(frozen=True))]
    assert plan == _plan_or_diagnostics(text, {"src": src}, tgt, general=True)
