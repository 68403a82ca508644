"""Small PyTorch models built locally with random weights (no hub), and hand-written references."""

from __future__ import annotations

import math

import torch
from torch import nn


class Backbone(nn.Module):
    """A small ResNet-ish classifier: the 'pretrained' model."""

    def __init__(self, classes: int = 10, in_ch: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(2)])
        self.fc = nn.Linear(8, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.layer1(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class NewArch(nn.Module):
    """A re-implementation with other names and a new 5-way head."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = nn.ModuleDict({"conv": nn.Conv2d(3, 8, 3, padding=1, bias=False), "norm": nn.BatchNorm2d(8)})
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(2)])
        self.head = nn.Linear(8, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem["norm"](self.stem["conv"](x)))
        for b in self.blocks:
            x = torch.relu(b(x))
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def new_arch() -> NewArch:
    return NewArch()


class Conv1D(nn.Module):
    """HF GPT-2's Conv1D: weight stored (in, out), y = x @ W + b."""

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, e = q.shape
    split = [z.view(b, t, heads, e // heads).transpose(1, 2) for z in (q, k, v)]
    att = (split[0] @ split[1].transpose(-1, -2)) / math.sqrt(e // heads)
    return (att.softmax(-1) @ split[2]).transpose(1, 2).reshape(b, t, e)


class GPT2Block(nn.Module):
    def __init__(self, e: int = 16, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * e, e)
        self.attn.c_proj = Conv1D(e, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.c_attn(x).split(x.shape[-1], dim=-1)
        return self.attn.c_proj(_attend(q, k, v, self.heads))  # type: ignore[operator]


class GPT2(nn.Module):
    def __init__(self, layers: int = 2, e: int = 16):
        super().__init__()
        self.h = nn.ModuleList([GPT2Block(e) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.h:
            x = x + blk(x)
        return x


class SplitBlock(nn.Module):
    def __init__(self, e: int = 16, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(e, e) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(_attend(self.q(x), self.k(x), self.v(x), self.heads))


class SplitDecoder(nn.Module):
    def __init__(self, layers: int = 2, e: int = 16):
        super().__init__()
        self.blocks = nn.ModuleList([SplitBlock(e) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = x + blk(x)
        return x


class TiedLM(nn.Module):
    def __init__(self, vocab: int = 20, e: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, e)
        self.lm_head = nn.Linear(e, vocab, bias=False)
        self.lm_head.weight = self.emb.weight


def tied_lm() -> TiedLM:
    return TiedLM()


# The spec that ports `Backbone` into `NewArch` (a new head, initialised).
BACKBONE = """wmap 1
conv1.weight -> stem.conv.weight
bn1.{p} -> stem.norm.{p}
layer1.{i:int}.0.{p} -> blocks.{i}.{p}
drop fc.*
init head.weight = normal(std=0.02)
init head.bias = zeros
"""
