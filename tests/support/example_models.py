"""Small models for the example specs: built locally with random weights, with forwards to compare."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

E, HEADS, FFN, VOCAB, POS = 16, 4, 32, 50, 12


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, t, e = q.shape
    q, k, v = (z.view(b, t, HEADS, e // HEADS).transpose(1, 2) for z in (q, k, v))
    att = (q @ k.transpose(-1, -2) / math.sqrt(e // HEADS)).softmax(-1)
    return (att @ v).transpose(1, 2).reshape(b, t, e)


class HFBert(nn.Module):
    """Hugging Face BERT names: embeddings.*, encoder.layer.N.attention.self.query, ..."""

    def __init__(self, layers: int = 2):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(VOCAB, E)
        self.embeddings.position_embeddings = nn.Embedding(POS, E)
        self.embeddings.LayerNorm = nn.LayerNorm(E)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.attention = nn.Module()
            blk.attention.self = nn.Module()
            for n in ("query", "key", "value"):
                setattr(blk.attention.self, n, nn.Linear(E, E))
            blk.attention.output = nn.Module()
            blk.attention.output.dense, blk.attention.output.LayerNorm = nn.Linear(E, E), nn.LayerNorm(E)
            blk.intermediate = nn.Module()
            blk.intermediate.dense = nn.Linear(E, FFN)
            blk.output = nn.Module()
            blk.output.dense, blk.output.LayerNorm = nn.Linear(FFN, E), nn.LayerNorm(E)
            self.encoder.layer.append(blk)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        x = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings(torch.arange(ids.shape[1])))
        for blk in self.encoder.layer:
            s = blk.attention.self
            x = blk.attention.output.LayerNorm(x + blk.attention.output.dense(_attend(s.query(x), s.key(x), s.value(x))))
            x = blk.output.LayerNorm(x + blk.output.dense(F.gelu(blk.intermediate.dense(x))))
        return x


class RenamedEncoder(nn.Module):
    """The same network, written with other names."""

    def __init__(self, layers: int = 2):
        super().__init__()
        self.embed = nn.ModuleDict({"tok": nn.Embedding(VOCAB, E), "pos": nn.Embedding(POS, E), "norm": nn.LayerNorm(E)})
        self.layers = nn.ModuleList()
        for _ in range(layers):
            blk = nn.Module()
            blk.attn = nn.ModuleDict({n: nn.Linear(E, E) for n in ("q", "k", "v", "out")})
            blk.norm1, blk.norm2 = nn.LayerNorm(E), nn.LayerNorm(E)
            blk.ffn = nn.ModuleDict({"up": nn.Linear(E, FFN), "down": nn.Linear(FFN, E)})
            self.layers.append(blk)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed["norm"](self.embed["tok"](ids) + self.embed["pos"](torch.arange(ids.shape[1])))
        for blk in self.layers:
            a = blk.attn
            x = blk.norm1(x + a["out"](_attend(a["q"](x), a["k"](x), a["v"](x))))
            x = blk.norm2(x + blk.ffn["down"](F.gelu(blk.ffn["up"](x))))
        return x


def renamed_encoder() -> RenamedEncoder:
    return RenamedEncoder()


class TinyViT(nn.Module):
    """A ViT: 4x4 patches, a class token, learned position embeddings, one block, a head."""

    def __init__(self, grid: int = 8, classes: int = 10):
        super().__init__()
        self.grid = grid
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, E, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, E) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, E) * 0.02)
        self.blocks = nn.ModuleList([nn.TransformerEncoderLayer(E, HEADS, FFN, dropout=0.0, batch_first=True)])
        self.norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def vit_large_input() -> TinyViT:
    return TinyViT(grid=12, classes=5)


def lora_base() -> nn.Module:
    return nn.Sequential(nn.Linear(E, FFN), nn.GELU(), nn.Linear(FFN, E))
