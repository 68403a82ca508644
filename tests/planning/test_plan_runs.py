"""Saved plans, format 2: a step's consecutively numbered targets and sources are written as runs
(issue 18). Each run must expand back into exactly the entries it stands for, whatever the names
(numbers with leading zeros, 9 -> 10, digits that are not ASCII, read prefixes, native names), a
format 1 plan (every entry in full) must still load, and a run is untrusted input like the rest
of the file: its fields are checked and its size is bounded before anything is expanded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile.cases import redigest
from wmap.core.errors import WmapError
from wmap.core.inventory import Inventory, TensorMeta
from wmap.lang import parse_spec
from wmap.planning import serialise
from wmap.planning.compiler import compile_plan
from wmap.planning.plan import Plan, SourceRef, Step
from wmap.planning.serialise import plan_from_json


def _expand(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A run written out in full, as format 1 writes each entry (the definition the loader must match)."""
    if "names" not in entry:
        return [entry]
    n = entry["names"]
    out = []
    for k in range(n["first"], n["first"] + n["count"]):
        name = n["prefix"] + str(k) + n["suffix"]
        full: dict[str, Any] = {"name": name, "shape": entry["shape"], "dtype": entry["dtype"]}
        if "source" in entry:
            read = entry.get("read_prefix", "") + name
            full = {"source": entry["source"], "read": read, **full, **({"native": read} if read != name else {})}
        out.append(full)
    return out


def as_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """A saved plan as format 1 wrote it: every run written out in full, digest recomputed."""
    steps = [{**s, "targets": [e for t in s["targets"] for e in _expand(t)],
              "sources": [e for r in s["sources"] for e in _expand(r)]} for s in data["steps"]]
    return redigest({**data, "format_version": 1, "steps": steps})


MOE = ("wmap 1\noption strip_prefix = \"model.\"\n"
       "layers.{i:int}.experts.{e:int}.{p} -> layers.{i}.moe.{p} | stack(0)\n"
       "layers.{i:int}.moe_out.{p} -> layers.{i}.out.{e:int}.{p} | unstack(0)\n")


def moe_plan(layers: int = 3, experts: int = 12) -> Plan:
    src = [TensorMeta(f"model.layers.{i}.experts.{e}.{p}", (4, 2), "float32")
           for i in range(layers) for e in range(experts) for p in ("w1", "w2")]
    src += [TensorMeta(f"model.layers.{i}.moe_out.w", (experts, 3), "float16") for i in range(layers)]
    tgt = [TensorMeta(f"layers.{i}.moe.{p}", (experts, 4, 2), "float32") for i in range(layers) for p in ("w1", "w2")]
    tgt += [TensorMeta(f"layers.{i}.out.{e}.w", (3,), "float16") for i in range(layers) for e in range(experts)]
    return compile_plan(parse_spec(MOE), {"src": Inventory.from_metas(src, "src", "torch")},
                        Inventory.from_metas(tgt, "tgt", "torch"))


def test_a_stacked_and_an_unstacked_step_save_as_one_run_each_and_load_back_the_same() -> None:
    plan = moe_plan()
    data = json.loads(plan.dumps())
    assert data["format_version"] == 2
    stacked = next(s for s in data["steps"] if s["targets"][0]["name"] == "layers.0.moe.w1")
    assert stacked["sources"] == [{
        "source": "src", "read_prefix": "model.", "shape": [4, 2], "dtype": "float32",
        "names": {"prefix": "layers.0.experts.", "first": 0, "count": 12, "suffix": ".w1"}}]
    unstacked = next(s for s in data["steps"] if s["sources"][0].get("name") == "layers.0.moe_out.w")
    assert unstacked["targets"] == [{"names": {"prefix": "layers.0.out.", "first": 0, "count": 12, "suffix": ".w"},
                                     "shape": [3], "dtype": "float16"}]
    again = plan_from_json(data)
    assert again.steps == plan.steps and again.dumps() == plan.dumps()
    assert [r.read_name for r in again.steps[0].sources][:2] == ["model.layers.0.experts.0.w1",
                                                                 "model.layers.0.experts.1.w1"]


def test_a_format_1_plan_still_loads_as_the_same_plan() -> None:
    plan = moe_plan()
    old = as_format_1(json.loads(plan.dumps()))
    assert len(old["steps"][0]["sources"]) == 12 and "names" not in json.dumps(old["steps"])
    again = plan_from_json(old)
    assert again.steps == plan.steps
    assert again.dumps() == plan.dumps()  # and saving it again writes format 2


def test_a_run_in_a_plan_that_says_format_1_is_refused() -> None:
    data = json.loads(moe_plan().dumps())
    with pytest.raises(WmapError) as e:
        plan_from_json(redigest({**data, "format_version": 1}))
    assert e.value.diagnostics[0].code == "WM520" and "a run of names is format 2" in e.value.diagnostics[0].message


def _with_run(data: dict[str, Any], **names: object) -> dict[str, Any]:
    step = json.loads(json.dumps(data["steps"][0]))
    step["sources"][0]["names"].update(names)
    return redigest({**data, "steps": [step, *data["steps"][1:]]})


@pytest.mark.parametrize("names, why", [
    ({"count": 0}, "a count >= 1"),
    ({"count": "12"}, "a count >= 1"),
    ({"count": True}, "a count >= 1"),
    ({"first": -1}, "a first index >= 0"),
    ({"first": 1.0}, "a first index >= 0"),
    ({"prefix": 5}, "prefix and suffix (text)"),
    ({"suffix": None}, "prefix and suffix (text)"),
])
def test_a_run_with_bad_fields_is_refused(names: dict[str, object], why: str) -> None:
    with pytest.raises(WmapError) as e:
        plan_from_json(_with_run(json.loads(moe_plan().dumps()), **names))
    assert e.value.diagnostics[0].code == "WM520" and why in e.value.diagnostics[0].message


@pytest.mark.parametrize("edit", [
    lambda run: run.update(name="layers.0.experts.0.w1", read="model.layers.0.experts.0.w1"),
    lambda run: run.update(native="model.x"),
    lambda run: run["names"].update(step=2),
    lambda run: run.update(names=[0, 12]),
], ids=["name-and-read", "native", "names-step", "names-list"])
def test_a_run_with_fields_the_loader_does_not_read_is_refused(edit: Any) -> None:
    """A reviewer reading `"name": ...` beside a run must not be shown a tensor the loader ignores."""
    data = json.loads(moe_plan().dumps())
    edit(data["steps"][0]["sources"][0])
    with pytest.raises(WmapError) as e:
        plan_from_json(redigest(data))
    assert e.value.diagnostics[0].code == "WM520" and "is not a valid wmap plan" in e.value.diagnostics[0].message


def test_a_run_that_stands_for_too_many_tensors_is_refused_before_it_is_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few bytes could otherwise stand for 10^12 names: the plan's entries are counted first."""
    import wmap
    data = json.loads(moe_plan().dumps())
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_with_run(data, count=10**12)))
    with pytest.raises(WmapError) as e:
        wmap.load_plan(path)  # what `wmap apply plan.json` does
    d = e.value.diagnostics[0]
    assert d.code == "WM520" and "more than 4,000,000 source and target tensors" in d.message and d.hint
    # the bound is on the whole plan, not one run: 3 layers x (24 + 2 + 1 + 12) entries = 117
    monkeypatch.setattr(serialise, "MAX_PLAN_ENTRIES", 116)
    with pytest.raises(WmapError, match="more than 116 source"):
        plan_from_json(data)
    monkeypatch.setattr(serialise, "MAX_PLAN_ENTRIES", 117)
    assert plan_from_json(data).steps == moe_plan().steps


def test_a_run_that_spells_too_much_text_is_refused_before_it_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long prefix times a large count: a million names of a megabyte each from a 1 MB file."""
    data = json.loads(moe_plan().dumps())
    with pytest.raises(WmapError) as e:
        plan_from_json(_with_run(data, prefix="p" * 2**20, count=10**6))
    assert e.value.diagnostics[0].code == "WM520" and "more than 268,435,456 characters" in e.value.diagnostics[0].message
    # the bound is on all runs together: each charges count x (prefix + suffix + read_prefix + the
    # digits of first + count); this plan's runs are 0..11, so 2 digits ("12")
    sizes = [12 * (len(r["names"]["prefix"]) + len(r["names"]["suffix"]) + len(r.get("read_prefix", "")) + 2)
             for s in data["steps"] for r in s["sources"] + s["targets"] if "names" in r]
    assert len(sizes) == 9  # 3 layers x (2 stacked source runs + 1 unstacked target run)
    monkeypatch.setattr(serialise, "MAX_RUN_TEXT", sum(sizes) - 1)
    with pytest.raises(WmapError, match="characters in all"):
        plan_from_json(data)
    monkeypatch.setattr(serialise, "MAX_RUN_TEXT", sum(sizes))
    assert plan_from_json(data).steps == moe_plan().steps


def test_an_edited_run_is_refused_by_the_digest_or_by_the_re_check() -> None:
    data = json.loads(moe_plan().dumps())
    edited = json.loads(json.dumps(data))
    edited["steps"][0]["sources"][0]["names"]["first"] = 1  # experts 1..12: 12 is not in the checkpoint
    with pytest.raises(WmapError, match="edited after"):
        plan_from_json(edited)
    # with the digest recomputed, the re-check refuses what a fresh compile would: the w2 run
    # pointed at the w1 names reads those tensors twice
    step0, step1 = data["steps"][0], data["steps"][1]
    assert step0["sources"][0]["names"]["suffix"] == ".w1" and step1["sources"][0]["names"]["suffix"] == ".w2"
    step1 = {**step1, "sources": [{**step1["sources"][0], "names": {**step1["sources"][0]["names"], "suffix": ".w1"}}]}
    with pytest.raises(WmapError, match="is read twice"):
        plan_from_json(redigest({**data, "steps": [step0, step1, *data["steps"][2:]]}))


# -- the encoding itself, on lists no compile would produce: every entry must come back as it was

NUMBERS = st.sampled_from(["0", "1", "2", "3", "9", "10", "11", "007", "08", "٣", "99", "100", "x"])
names = st.builds(lambda a, n, b: f"{a}{n}{b}", st.sampled_from(["", "a.", "a.1.", "b"]), NUMBERS,
                  st.sampled_from(["", ".w", ".1", "5"]))


SOURCE_KINDS = {"shape": st.sampled_from([(2,), (3,)]),
                "style": st.sampled_from(["plain", "plain", "plain", "prefixed", "prefixed", "native", "kind"]),
                "src": st.sampled_from(["s", "t"]), "lead": st.sampled_from(["model.", "m"]),
                "dtype": st.sampled_from(["float32", "float16"])}


@st.composite
def sources(draw: Any, name: str | None = None, kind: dict[str, Any] | None = None) -> SourceRef:
    """A source reference named `name` (drawn if None), of `kind` (drawn if None)."""
    name = draw(names) if name is None else name
    k = draw(st.fixed_dictionaries(SOURCE_KINDS)) if kind is None else kind
    shape, src, lead = k["shape"], k["src"], k["lead"]
    if k["style"] == "prefixed":  # what `strip_prefix` makes
        return SourceRef(src, TensorMeta(name, shape, "float32", lead + name), lead + name)
    if k["style"] == "native":  # read under its name, with a framework's own spelling
        return SourceRef(src, TensorMeta(name, shape, "float32", name + ":0"), name)
    if k["style"] == "kind":
        return SourceRef(src, TensorMeta(name, shape, "float32", None, "Linear"), name)
    return SourceRef(src, TensorMeta(name, shape, k["dtype"]), name)


targets = st.builds(lambda n, s, native: TensorMeta(n, s, "float32", native), names,
                    st.sampled_from([(2,), (3,)]), st.sampled_from([None, None, None, "k/0:0"]))


@st.composite
def numbered(draw: Any, entry: Any) -> list[Any]:
    """A stretch of consecutively numbered names (what becomes a run), its entries drawn by `entry`."""
    prefix, suffix = draw(st.sampled_from(["", "a.", "a.1.", "b", "{x}."])), draw(st.sampled_from(["", ".w", "5", ".1"]))
    first, count = draw(st.sampled_from([0, 1, 8, 9, 99])), draw(st.integers(2, 5))
    kind = draw(st.one_of(st.none(), st.fixed_dictionaries(SOURCE_KINDS), st.fixed_dictionaries(SOURCE_KINDS)))
    return [draw(entry(f"{prefix}{k}{suffix}", kind)) for k in range(first, first + count)]  # kind None: each its own


def _listed(entry: Any) -> Any:
    """Lists mixing stray entries and numbered stretches (whose entries may still differ)."""
    return st.lists(st.one_of(entry(None).map(lambda e: [e]), numbered(entry)), max_size=4).map(
        lambda parts: [e for p in parts for e in p])


def _target(name: str | None, kind: dict[str, Any] | None = None) -> Any:
    if kind is not None:  # a stretch alike but for its names
        return st.just(TensorMeta(str(name), kind["shape"], kind["dtype"], "k/0:0" if kind["style"] == "native" else None))
    return st.builds(lambda n, s, native: TensorMeta(n, s, "float32", native), st.just(name) if name else names,
                     st.sampled_from([(2,), (3,)]), st.sampled_from([None, None, None, "k/0:0"]))


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.lists(targets, min_size=1, max_size=12), _listed(_target).filter(bool)),
       st.one_of(st.lists(sources(), max_size=12), _listed(sources)))
def test_runs_expand_back_into_exactly_the_entries_they_stand_for(ts: list[TensorMeta], rs: list[SourceRef]) -> None:
    step = Step("map", tuple(ts), tuple(rs))
    lists = serialise._lists(step)
    written = json.loads(json.dumps(serialise._step_json(step, lists)))
    expander = serialise._Expander(runs=True)
    assert expander.targets(written["targets"]) == step.targets
    assert expander.sources(written["sources"]) == step.sources
    assert [e for t in written["targets"] for e in _expand(t)] == [t.to_json() for t in ts]
    assert [e for r in written["sources"] for e in _expand(r)] == [serialise._source_json(r) for r in rs]


def test_consecutive_numbers_make_one_run_and_anything_else_breaks_it() -> None:
    def written(names: list[str]) -> list[dict[str, Any]]:
        step = Step("map", tuple(TensorMeta(n, (2,), "float32") for n in names))
        return serialise._step_json(step, serialise._lists(step))["targets"]  # type: ignore[return-value]

    assert written([f"e.{k}.w" for k in range(8, 12)]) == [
        {"names": {"prefix": "e.", "first": 8, "count": 4, "suffix": ".w"}, "shape": [2], "dtype": "float32"}]
    assert len(written(["e.1.w", "e.3.w"])) == 2  # not consecutive
    assert len(written(["e.01.w", "e.02.w"])) == 2  # leading zeros: str(k) would not give the names back
    assert len(written(["e.2.w", "e.1.w"])) == 2  # descending
    assert len(written(["e.1.w"])) == 1
    assert [e["names"]["count"] for e in written(["a.0", "a.1", "b.0", "b.1", "b.2"])] == [2, 3]
    assert [e["names"]["first"] for e in written(["a.9", "a.10", "a.11", "a.3", "a.4"])] == [9, 3]


def _first_full_source(d: dict[str, Any]) -> dict[str, Any]:
    return next(r for s in d["steps"] for r in s["sources"] if "names" not in r)


@pytest.mark.parametrize("edit", [
    lambda d: _first_full_source(d).update(read=["x"]),
    lambda d: _first_full_source(d).update(source=["src"]),
    lambda d: _first_full_source(d).update(name={"a": 1}),
    lambda d: _first_full_source(d).update(shape=[[4], 2]),
    lambda d: _first_full_source(d).update(shape=[4, True]),
    lambda d: _first_full_source(d).update(native=["n"]),
    lambda d: d["steps"][0]["sources"][0].update(source=["src"]),
    lambda d: d["steps"][0]["sources"][0].update(read_prefix=["model."]),
    lambda d: d["steps"][0]["sources"][0].update(shape="44"),
    lambda d: d["steps"][0]["targets"][0].update(name=["layers.0.moe.w1"]),
    lambda d: d.update(tied=[[["a"], "layers.0.moe.w1"]]),
    lambda d: d["sources"][0].update(name=["src"]),
], ids=["read", "source", "name", "shape-nested", "shape-bool", "native", "run-source", "run-read_prefix",
        "run-shape", "target-name", "tied", "pinned-source"])
def test_a_field_of_the_wrong_type_is_refused_not_a_traceback(edit: Any) -> None:
    """Found while making the re-check use sets: a list where a name belongs (digest recomputed)
    reached the re-check's sets unhashed and escaped as a TypeError."""
    data = json.loads(moe_plan().dumps())
    edit(data)
    with pytest.raises(WmapError) as e:
        plan_from_json(redigest(data))
    assert e.value.diagnostics[0].code == "WM520" and "is not a valid wmap plan" in e.value.diagnostics[0].message
