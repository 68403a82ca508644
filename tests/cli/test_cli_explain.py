"""`wmap explain`: transforms, initialisers, options, diagnostic codes; the code catalogue is complete."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import paths
from tests.support.cli_fixtures import Cap, golden, wmap
from wmap.core.codes import CODES, lookup

WMAP = paths.ROOT / "wmap"


@pytest.mark.parametrize("name", ["split", "normal", "strip_prefix", "WM301"])
def test_explain_text(capsys: Cap, name: str) -> None:
    r = wmap(capsys, "explain", name)
    assert r.code == 0 and r.err == ""
    golden(f"explain_{name}.txt", r.out)


def test_explain_transform_json(capsys: Cap) -> None:
    r = wmap(capsys, "explain", "linear_to_dense", "--format", "json")
    [entry] = json.loads(r.out)
    assert r.code == 0 and entry["kind"] == "transform" and entry["signature"] == "linear_to_dense()"
    assert entry["arity"] == "1:1"
    assert entry["example"].startswith("`fc.weight -> fc.kernel | linear_to_dense`")
    assert entry["invertible"] in (True, False)


def test_explain_code_any_case(capsys: Cap) -> None:
    a, b = wmap(capsys, "explain", "wm117"), wmap(capsys, "explain", "WM117")
    assert a.code == b.code == 0 and a.out == b.out and "unresolved" in a.out
    j = json.loads(wmap(capsys, "explain", "WM402", "--format", "json").out)
    assert j[0]["kind"] == "code" and j[0]["stage"] == "coverage"


def test_explain_lists_everything(capsys: Cap) -> None:
    from wmap.transforms import REGISTRY
    from wmap.transforms.initializers import INITIALIZERS

    r = wmap(capsys, "explain")
    assert r.code == 0
    names = set(re.findall(r"(?m)^  (\S+)", r.out))
    assert set(REGISTRY) | set(INITIALIZERS) | set(CODES) <= names
    j = json.loads(wmap(capsys, "explain", "--format", "json").out)
    assert {e["kind"] for e in j} == {"transform", "initialiser", "option", "code"}


@pytest.mark.parametrize(("name", "hint"), [("tranpose", "did you mean `transpose`?"),
                                            ("kaiming", "kaiming_normal"), ("WM999", "WM")])
def test_unknown_name_exits_1_with_did_you_mean(capsys: Cap, name: str, hint: str) -> None:
    r = wmap(capsys, "explain", name)
    assert r.code == 1 and "error[WM521]" in r.err and hint in r.err
    j = wmap(capsys, "explain", name, "--format", "json")
    assert j.code == 1 and json.loads(j.out)["diagnostics"][0]["code"] == "WM521"


def test_catalogue_covers_every_code_in_the_code_base() -> None:
    used = set()
    for path in WMAP.rglob("*.py"):
        used |= set(re.findall(r"WM[0-9]{3}", path.read_text(encoding="utf-8")))
    missing = sorted(used - set(CODES))
    assert not missing, f"add these to wmap/diagnostic_codes.py: {missing}"
    for c in CODES.values():
        assert c.title and c.explanation and c.fix and c.code[2] in "123456"


def test_lookup_forms() -> None:
    assert lookup("301") is lookup("wm301") is CODES["WM301"]
    assert lookup("WM000") is None
