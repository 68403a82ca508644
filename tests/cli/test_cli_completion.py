"""`wmap completion bash|zsh|fish`: scripts generated from the argparse tree, checked by the shells."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli_fixtures import Cap, wmap
from wmap.cli import build_parser
from wmap.commands.completion import commands_of

COMMANDS = ("check", "plan", "apply", "verify", "fmt", "inspect", "diff", "explain", "init", "invert", "recipes", "completion")


def test_tree_has_every_command_and_flag() -> None:
    cmds = {c.name: c for c in commands_of(build_parser())}
    assert tuple(cmds) == COMMANDS
    plan_flags = {f for o in cmds["plan"].options for f in o.flags}
    assert {"--format", "-o", "--save", "--detailed-exitcode", "--source", "--target"} <= plan_flags
    fmt_opt = next(o for o in cmds["plan"].options if "--format" in o.flags)
    assert fmt_opt.choices == ("text", "markdown", "json")
    assert "--format" not in {f for o in cmds["fmt"].options for f in o.flags}  # suppressed flags stay hidden
    assert "split" in cmds["explain"].positionals[0].choices


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_print_and_exit_0(capsys: Cap, shell: str, tmp_path: Path) -> None:
    r = wmap(capsys, "completion", shell)
    assert r.code == 0 and r.err == "" and all(c in r.out for c in COMMANDS)
    exe = shutil.which(shell)
    if exe:  # the shell's own syntax check, where the shell is installed
        script = tmp_path / f"wmap.{shell}"
        script.write_text(r.out)
        assert subprocess.run([exe, "-n", str(script)], capture_output=True).returncode == 0


def _bash_complete(script: str, words: list[str], tmp: Path) -> list[str]:
    path = tmp / "wmap.bash"
    path.write_text(script)
    line = " ".join(f"'{w}'" for w in words)
    prog = (f"source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _wmap; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, cwd=tmp)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_flags_choices_and_names(capsys: Cap, tmp_path: Path) -> None:
    script = wmap(capsys, "completion", "bash").out
    assert _bash_complete(script, ["wmap", "ex"], tmp_path) == ["explain"]
    assert _bash_complete(script, ["wmap", "plan", "--det"], tmp_path) == ["--detailed-exitcode"]
    assert _bash_complete(script, ["wmap", "plan", "--format", ""], tmp_path) == ["text", "markdown", "json"]
    assert _bash_complete(script, ["wmap", "explain", "linear_to"], tmp_path) == ["linear_to_dense"]
    assert _bash_complete(script, ["wmap", "completion", "f"], tmp_path) == ["fish"]
    (tmp_path / "port.wmap").write_text("wmap 1\n")
    assert _bash_complete(script, ["wmap", "check", "po"], tmp_path) == ["port.wmap"]


def test_zsh_and_fish_describe_choices(capsys: Cap) -> None:
    z = wmap(capsys, "completion", "zsh").out
    assert z.startswith("#compdef wmap") and "'plan:show what a spec would do, from metadata only'" in z
    assert "--format'[output format (default text)]:format:(text markdown json)'" in z
    assert "compdef _wmap wmap" in z
    f = wmap(capsys, "completion", "fish").out
    assert "complete -c wmap -n '__fish_seen_subcommand_from plan' -l format -x -a 'text markdown json'" in f
    assert "complete -c wmap -n '__fish_seen_subcommand_from init' -l force" in f
