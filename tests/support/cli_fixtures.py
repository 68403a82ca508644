"""Shared by the CLI tests: small models (fixed seeds), checkpoints, running `wmap`, golden files.

Factories here are `module:callable` targets (`tests.support.cli_fixtures:renamed_cnn`), so the CLI
builds them exactly as a user's would. Golden files live in `tests/golden/cli/`; rerun the tests
with `UPDATE_GOLDEN=1` to rewrite them after an intended output change, and review the diff.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import paths
from wmap.cli import main

GOLDEN = paths.GOLDEN / "cli"
Cap = pytest.CaptureFixture[str]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- running the CLI -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def wmap(capsys: Cap, *argv: str) -> Result:
    """Run `wmap ARGV` through the real entry point, with stdout and stderr captured."""
    capsys.readouterr()
    code = main(list(argv))
    got = capsys.readouterr()
    return Result(code, got.out, got.err)


def golden(name: str, text: str, tmp: Path | None = None) -> None:
    """Compare `text` with tests/golden/cli/NAME (paths under `tmp` shown as `<tmp>`)."""
    if tmp is not None:
        text = text.replace(str(tmp) + os.sep, "<tmp>/").replace(str(tmp), "<tmp>")
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 to create it"
    want = path.read_text(encoding="utf-8")
    assert text == want, f"output differs from {path} (UPDATE_GOLDEN=1 rewrites it):\n{text}"


# -- models --------------------------------------------------------------------------------------


def cnn(classes: int = 10) -> Any:
    """The 'pretrained' CNN: a stem (conv + BN), three identical blocks, a linear head."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False),
                                                       nn.BatchNorm2d(8)) for _ in range(3)])
            self.classifier = nn.Linear(8, classes)

        def forward(self, x: Any) -> Any:
            x = self.features(x)
            for b in self.blocks:
                x = torch.relu(b(x))
            return self.classifier(x.mean((2, 3)))

    return fill_bn_stats(Net().eval())


def fill_bn_stats(net: Any) -> Any:
    """Non-trivial BatchNorm statistics, so a swapped mean/var would show in the outputs."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.num_batches_tracked.fill_(7)
    return net


def renamed_cnn(classes: int = 10) -> Any:
    """The same network re-implemented with other names (what `wmap init` must pair by shape+order)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.norm = nn.BatchNorm2d(8)

    class Renamed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem_conv = nn.Conv2d(3, 8, 3, padding=1)
            self.stem_bn = nn.BatchNorm2d(8)
            self.stage = nn.ModuleList([Block() for _ in range(3)])
            self.head = nn.Linear(8, classes)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.stem_bn(self.stem_conv(x)))
            for b in self.stage:
                x = torch.relu(b.norm(b.conv(x)))
            return self.head(x.mean((2, 3)))

    return Renamed().eval()


def grown_cnn() -> Any:
    """The re-implementation with a 5-way head and a new layer: what `init` cannot decide alone."""
    from torch import nn

    net = renamed_cnn(5)
    net.extra = nn.Linear(5, 5)
    return net


def mlp() -> Any:
    """A torch MLP with a BatchNorm, for the torch -> Keras pair."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.bn = nn.BatchNorm1d(8)
            self.fc2 = nn.Linear(8, 3)

        def forward(self, x: Any) -> Any:
            return self.fc2(torch.relu(self.bn(self.fc1(x))))

    return fill_bn_stats(MLP().eval())


def keras_mlp() -> Any:
    """The Keras twin of `mlp`, with the same layer names (Dense/BatchNormalization/Dense)."""
    import keras
    from keras import layers

    inp = keras.Input((4,))
    x = layers.Dense(8, name="fc1")(inp)
    x = layers.BatchNormalization(epsilon=1e-5, name="bn")(x)
    x = layers.Dense(3, name="fc2")(layers.ReLU()(x))
    return keras.Model(inp, x)


def save(model_or_state: Any, path: Path, prefix: str = "") -> Path:
    """A safetensors checkpoint of a model (or state dict), optionally with a wrapper prefix."""
    from safetensors.torch import save_file

    state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- a work folder with checkpoints and specs (fixtures, registered in tests/conftest.py) ----------

PORT = """\
wmap 1

source torch "cnn.safetensors"
target torch "tests.support.cli_fixtures:renamed_cnn"

features.0.{p}          -> stem_conv.{p}
features.1.{p}          -> stem_bn.{p}
blocks.{i:int}.0.weight -> stage.{i}.conv.weight
blocks.{i:int}.1.{p}    -> stage.{i}.norm.{p}
classifier.{p}          -> head.{p}

freeze stem_conv.*
lr head.* * 10
"""

# The same transfer, written differently: explicit per-tensor rules where PORT folds.
PORT_EXPLICIT = PORT.replace("classifier.{p}          -> head.{p}\n",
                             "classifier.weight       -> head.weight\nclassifier.bias         -> head.bias\n")

# Non-strict, with a source left unused and a target left unfilled: warnings, not errors.
LOOSE = """\
wmap 1

source torch "cnn.safetensors"
target torch "tests.support.cli_fixtures:renamed_cnn"
option strict = false

features.0.{p}          -> stem_conv.{p}
features.1.{p}          -> stem_bn.{p}
blocks.{i:int}.0.weight -> stage.{i}.conv.weight
blocks.{i:int}.1.{p}    -> stage.{i}.norm.{p}
classifier.weight       -> head.weight
"""

BROKEN = """\
wmap 1
source torch "cnn.safetensors"
option strip_prefixes = "module."
features.0.weight -> stem_conv.weight | tranpose
init head.bias = zero
"""


@pytest.fixture(scope="module")
def cli_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `cnn.safetensors`, `cnn.pt`, `wrapped.safetensors` (`module.` prefix) and the specs."""
    d = tmp_path_factory.mktemp("cli")
    net = cnn()
    save(net, d / "cnn.safetensors")
    save(net, d / "wrapped.safetensors", prefix="module.")
    import torch
    torch.save(net.state_dict(), d / "cnn.pt")  # keeps module order, unlike safetensors
    for name, text in (("port.wmap", PORT), ("explicit.wmap", PORT_EXPLICIT), ("loose.wmap", LOOSE),
                       ("broken.wmap", BROKEN)):
        write(d / name, text)
    return d


@pytest.fixture
def in_cli_work(cli_work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from inside the work folder, so paths in output are short and stable."""
    monkeypatch.chdir(cli_work)
    return cli_work
