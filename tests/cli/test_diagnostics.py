"""How diagnostics read: the excerpt with its caret or underline, notes, hints, "... and N more",
`wmap check --format json`, and the exit codes of `wmap check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wmap.cli import main
from wmap.core.errors import Diagnostic, DiagnosticBag, Span, WmapError, did_you_mean

SRC = {"s.wmap": "wmap 1\nfc.weight -> head.kernel | tranpose\n\tdrop\tx\n"}


def render(d: Diagnostic, sources: dict[str, str] | None = None) -> str:
    return d.render(SRC if sources is None else sources)


def test_caret_under_one_column() -> None:
    d = Diagnostic("WM100", "error", "unexpected `|`", Span("s.wmap", 2, 25))
    assert render(d) == (
        "s.wmap:2:25: error[WM100]: unexpected `|`\n"
        "   2 | fc.weight -> head.kernel | tranpose\n"
        "     |                         ^")


def test_underline_spans_the_token() -> None:
    d = Diagnostic("WM103", "error", "unknown transform `tranpose`", Span("s.wmap", 2, 28, 2, 36),
                   "did you mean `transpose`?")
    assert render(d) == (
        "s.wmap:2:28: error[WM103]: unknown transform `tranpose`\n"
        "   2 | fc.weight -> head.kernel | tranpose\n"
        "     |                            ^^^^^^^^\n"
        "  hint: did you mean `transpose`?")


def test_a_span_over_several_lines_marks_its_start() -> None:
    d = Diagnostic("WM100", "error", "x", Span("s.wmap", 1, 1, 2, 3))
    assert render(d).splitlines()[2] == "     | ^"


def test_tabs_count_as_one_column_so_the_caret_lines_up() -> None:
    d = Diagnostic("WM100", "error", "x", Span("s.wmap", 3, 7, 3, 8))
    lines = render(d).splitlines()
    assert lines[1] == "   3 |  drop x"
    assert lines[2].index("^") == lines[1].index("x")


def test_control_characters_are_shown_not_sent_to_the_terminal() -> None:
    d = Diagnostic("WM100", "error", "unexpected character U+0000", Span("n.wmap", 1, 4))
    lines = render(d, {"n.wmap": "a.b\x00 -> c"}).splitlines()
    assert lines[1] == "   1 | a.b\u2400 -> c"
    assert lines[2].index("^") == lines[1].index("\u2400")


def test_long_lines_show_a_window_around_the_span() -> None:
    line = "x" * 300 + "BAD" + "y" * 300
    d = Diagnostic("WM100", "error", "bad", Span("l.wmap", 1, 301, 1, 304))
    _, text, marks = render(d, {"l.wmap": line}).splitlines()
    assert text.startswith("   1 | ...") and text.endswith("...") and len(text) < 120
    assert text[marks.index("^"):marks.index("^") + 3] == "BAD"
    assert marks.count("^") == 3


def test_no_excerpt_without_the_source_or_for_a_blank_line() -> None:
    d = Diagnostic("WM110", "error", "the spec is empty", Span("e.wmap", 1, 1), "start with `wmap 1`")
    assert render(d, {"e.wmap": ""}) == "e.wmap:1:1: error[WM110]: the spec is empty\n  hint: start with `wmap 1`"
    assert render(d, {}) == render(d, {"e.wmap": ""})
    far = Diagnostic("WM100", "error", "x", Span("s.wmap", 99, 1))
    assert render(far) == "s.wmap:99:1: error[WM100]: x"


def test_no_location_prefix_without_a_span() -> None:
    d = Diagnostic("WM115", "error", "`x.wmap` does not exist", None, "check the path")
    assert render(d) == "error[WM115]: `x.wmap` does not exist\n  hint: check the path"


def test_notes_come_before_the_hint() -> None:
    d = Diagnostic("WM205", "warning", "twice", Span("s.wmap", 2, 1), "make the patterns disjoint",
                   ("first written by rule 1", "then by rule 2"))
    out = render(d).splitlines()
    assert out[0] == "s.wmap:2:1: warning[WM205]: twice"
    assert out[3:] == ["  note: first written by rule 1", "  note: then by rule 2",
                       "  hint: make the patterns disjoint"]


def test_an_error_renders_all_or_the_first_and_how_many_more() -> None:
    diags = [Diagnostic("WM100", "error", f"problem {i}", Span("s.wmap", 2, 1)) for i in range(4)]
    err = WmapError(diags, SRC)
    assert err.render().count("error[WM100]") == 4
    short = err.render(limit=1)
    assert short.count("error[WM100]") == 1 and short.endswith("\n... and 3 more")
    assert str(err) == short  # what a traceback would show, should one ever surface
    assert WmapError(diags[:1], SRC).render(limit=1).count("more") == 0


def test_did_you_mean() -> None:
    assert did_you_mean("tranpose", ["transpose", "permute"]) == "did you mean `transpose`?"
    assert did_you_mean("base", ["base", "base", "bass"]) == "did you mean `base` or `bass`?"  # no repeats
    assert did_you_mean("zzz", ["transpose"]) is None
    assert did_you_mean("conv", ["conv1", "conv2", "conv3", "conv4"]).count("`") == 6  # type: ignore[union-attr]


def test_a_bag_raises_only_for_errors() -> None:
    bag = DiagnosticBag()
    bag.add("WM311", "equal blocks", severity="warning")
    bag.raise_if_errors()
    assert len(bag.warnings) == 1
    bag.add("WM100", "bad")
    with pytest.raises(WmapError) as e:
        bag.raise_if_errors()
    assert [d.code for d in e.value.errors] == ["WM100"]


# -- `wmap check`: text, JSON, exit codes ----------------------------------------------------------

GOOD = 'wmap 1\nsource torch "a.safetensors"\nfc.weight -> head.kernel | transpose\n'
BAD = 'wmap 1\nsource torch "a.safetensors"\noption sead = 1\nfc.weight -> head.kernel | tranpose\n'


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good.wmap").write_text(GOOD)
    (tmp_path / "bad.wmap").write_text(BAD)
    (tmp_path / "good.yaml").write_text("wmap: 1\nsource: a.safetensors\nrules: [{from: a, to: b}]\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_ok_exits_0(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "good.wmap", "good.yaml"]) == 0
    out = capsys.readouterr()
    assert out.out == "ok: 2 spec(s) checked\n" and out.err == ""


def test_check_errors_exit_1_with_every_diagnostic(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "good.wmap", "bad.wmap"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "bad.wmap:3:8: error[WM105]: unknown option `sead`\n"
        "   3 | option sead = 1\n"
        "     |        ^^^^\n"
        "  hint: did you mean `seed`?\n"
        "bad.wmap:4:28: error[WM103]: unknown transform `tranpose`\n"
        "   4 | fc.weight -> head.kernel | tranpose\n"
        "     |                            ^^^^^^^^\n"
        "  hint: did you mean `transpose`?\n"
        "2 error(s), 0 warning(s)\n")


def test_check_json(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--format", "json", "bad.wmap", "good.wmap"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data == {"ok": False, "diagnostics": [
        {"code": "WM105", "severity": "error", "message": "unknown option `sead`", "path": "bad.wmap", "line": 3,
         "column": 8, "hint": "did you mean `seed`?", "notes": []},
        {"code": "WM103", "severity": "error", "message": "unknown transform `tranpose`", "path": "bad.wmap",
         "line": 4, "column": 28, "hint": "did you mean `transpose`?", "notes": []},
    ]}
    assert main(["check", "--format", "json", "good.wmap"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "diagnostics": []}


def test_check_json_for_a_file_that_cannot_be_read(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--format", "json", "missing.wmap"]) == 1
    (d,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert (d["code"], d["path"], d["line"], d["column"]) == ("WM115", None, None, None)
    assert "does not exist" in d["message"]


def test_check_usage_errors_exit_64(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 64
    assert "usage:" in capsys.readouterr().err


def test_unprintable_characters_are_shown_escaped() -> None:
    """Checkpoint names reach messages; terminal control sequences and lone surrogates in them are
    escaped, printable Unicode is kept."""
    from wmap.core.names import printable

    assert printable("layers.0.q") == "layers.0.q" and printable("häuser.ü") == "häuser.ü"
    assert printable("a\x1b]0;pwned\x07\x1b[2Jb") == "a\\x1b]0;pwned\\x07\\x1b[2Jb"
    assert printable("\ud800\u202e\U000e0001") == "\\ud800\\u202e\\U000e0001"
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b" and printable("a\nb") == "a\\x0ab"
    d = Diagnostic("WM402", "error", "unused: `a\x1b[2J\ud800`", hint="`b\x07`", notes=("c\x9b",))
    assert d.render() == "error[WM402]: unused: `a\\x1b[2J\\ud800`\n  note: c\\x9b\n  hint: `b\\x07`"
    assert str(WmapError([d])).encode("utf-8")  # no lone surrogate left to fail an encoder


def test_a_wmap_error_survives_pickling_with_its_diagnostics() -> None:
    """torch.distributed.checkpoint and multiprocessing pickle exceptions to other processes; a
    WmapError must arrive as itself (it used to fail to unpickle: its args are the rendered text)."""
    import pickle

    from wmap.core.errors import Diagnostic, Span, WmapError
    e = WmapError([Diagnostic("WM505", "error", "bad offsets", Span("a.wmap", 3, 1), "re-export it")], {"a.wmap": "x"})
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, WmapError) and back.diagnostics == e.diagnostics and back.sources == e.sources
    assert str(back) == str(e)
