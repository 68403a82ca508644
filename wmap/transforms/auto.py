"""`layout(auto)`: pick the cross-framework preset from what the tensors *are*.

The decision uses the owning layer class of source and target (`TensorMeta.kind`), the
parameter role (last name segment: weight, kernel, weight_ih_l0...), the two frameworks,
and shapes only to tell apart cases the kinds leave open (a Linear into an attention
EinsumDense). It never decides from a name or a rank alone, and it refuses to guess: an
unknown or missing kind is an error naming the explicit presets. A Linear after a Flatten
looks like any Linear, so `flatten_dense_to_keras` is always explicit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from wmap.core.inventory import TensorMeta
from wmap.transforms import _util as U
from wmap.transforms.base import REGISTRY, ArrayMeta, InferContext, Transform, TransformError, register

TORCH_FAMILIES: dict[str, str] = {
    **{k: "linear" for k in ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear")},
    **{f"{p}Conv{d}d": "conv" for d in (1, 2, 3) for p in ("", "Lazy")},
    **{f"{p}ConvTranspose{d}d": "conv_transpose" for d in (1, 2, 3) for p in ("", "Lazy")},
    **{f"{p}BatchNorm{d}d": "norm" for d in (1, 2, 3) for p in ("", "Lazy")},
    **{k: "norm" for k in ("SyncBatchNorm", "LayerNorm", "GroupNorm", "RMSNorm")},
    "Embedding": "embedding", "LSTM": "lstm", "GRU": "gru", "MultiheadAttention": "mha", "PReLU": "prelu",
    "Conv1D": "hf_conv1d",  # transformers' GPT-2 Conv1D stores (in, out)
}
KERAS_FAMILIES: dict[str, str] = {
    "Dense": "linear",
    **{f"Conv{d}D": "conv" for d in (1, 2, 3)},
    **{f"DepthwiseConv{d}D": "depthwise" for d in (1, 2)},
    **{f"Conv{d}DTranspose": "conv_transpose" for d in (1, 2, 3)},
    **{k: "norm" for k in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")},
    "Embedding": "embedding", "LSTM": "lstm", "LSTMCell": "lstm", "GRU": "gru", "GRUCell": "gru",
    "MultiHeadAttention": "mha", "EinsumDense": "mha", "PReLU": "prelu",
}
_SHARED_KINDS = set(TORCH_FAMILIES) & set(KERAS_FAMILIES)  # LSTM, GRU, PReLU, Embedding, Conv1D(!)
_KERAS_ROLES = {"kernel": "w", "recurrent_kernel": "w_hh", "bias": "b", "gamma": "w", "beta": "b",
                "moving_mean": "stat", "moving_variance": "stat", "embeddings": "w", "alpha": "w"}
_TORCH_ROLES = {"weight": "w", "bias": "b", "running_mean": "stat", "running_var": "stat",
                "in_proj_weight": "in_w", "in_proj_bias": "in_b", "q_proj_weight": "proj_w",
                "k_proj_weight": "proj_w", "v_proj_weight": "proj_w"}
_RNN_ROLE = re.compile(r"^(weight|bias)_(ih|hh)_l\d+(_reverse)?$")

# (torch family, torch roles, keras family, keras roles) -> (torch->keras, keras->torch).
_TABLE: dict[tuple[str, tuple[str, ...], str, tuple[str, ...]], tuple[str, str]] = {
    ("linear", ("w",), "linear", ("w",)): ("linear_to_dense", "dense_to_linear"),
    ("conv", ("w",), "conv", ("w",)): ("conv_to_keras", "conv_from_keras"),
    ("conv", ("w",), "depthwise", ("w",)): ("depthwise_to_keras", "depthwise_from_keras"),
    ("conv", ("b",), "depthwise", ("b",)): ("identity", "identity"),  # channel c*M+m in both
    ("conv_transpose", ("w",), "conv_transpose", ("w",)): ("conv_transpose_to_keras", "conv_transpose_from_keras"),
    ("lstm", ("w_ih",), "lstm", ("w",)): ("lstm_kernel_to_keras", "lstm_kernel_from_keras"),
    ("lstm", ("w_hh",), "lstm", ("w_hh",)): ("lstm_kernel_to_keras", "lstm_kernel_from_keras"),
    ("lstm", ("b_ih", "b_hh"), "lstm", ("b",)): ("lstm_bias_to_keras", "lstm_bias_from_keras"),
    ("gru", ("w_ih",), "gru", ("w",)): ("gru_kernel_to_keras", "gru_kernel_from_keras"),
    ("gru", ("w_hh",), "gru", ("w_hh",)): ("gru_kernel_to_keras", "gru_kernel_from_keras"),
    ("gru", ("b_ih", "b_hh"), "gru", ("b",)): ("gru_bias_to_keras", "gru_bias_from_keras"),
    ("mha", ("in_w",), "mha", ("w", "w", "w")): ("mha_in_to_keras", "mha_in_from_keras"),
    ("mha", ("in_b",), "mha", ("b", "b", "b")): ("mha_in_bias_to_keras", "mha_in_bias_from_keras"),
    ("mha", ("proj_w",), "mha", ("w",)): ("mha_proj_to_keras", "mha_proj_from_keras"),
    ("mha", ("w",), "mha", ("w",)): ("mha_out_to_keras", "mha_out_from_keras"),  # out_proj.weight
    ("prelu", ("w",), "prelu", ("w",)): ("prelu_to_keras", "prelu_from_keras"),
    ("hf_conv1d", ("w",), "linear", ("w",)): ("identity", "identity"),
}
# Same family and role on both sides with no entry above: the layouts agree (biases, norms, embeddings).
_COPY_FAMILIES = {"linear", "conv", "depthwise", "conv_transpose", "norm", "embedding", "mha", "hf_conv1d"}
PRESETS = sorted({n for pair in _TABLE.values() for n in pair if n != "identity"} |
                 {"flatten_dense_to_keras", "flatten_dense_from_keras"})


@dataclass(frozen=True)
class _Side:
    framework: str
    families: tuple[str, ...]
    roles: tuple[str, ...]
    metas: tuple[TensorMeta, ...]

    @property
    def family(self) -> str:
        return self.families[0]

    def parents(self) -> tuple[str, ...]:
        return tuple((m.name.rsplit(".", 2)[-2] if m.name.count(".") else "") for m in self.metas)


def _role(meta: TensorMeta, framework: str) -> str:
    last = meta.name.rsplit(".", 1)[-1]
    if framework == "keras":
        return _KERAS_ROLES.get(last, last)
    m = _RNN_ROLE.match(last)
    if m:
        return ("w_" if m.group(1) == "weight" else "b_") + m.group(2)
    return _TORCH_ROLES.get(last, last)


def _framework(declared: str | None, metas: Sequence[TensorMeta]) -> str | None:
    if declared == "torch":
        return "torch"
    if declared in ("keras", "tf"):
        return "keras"
    kinds = {m.kind for m in metas}
    if kinds and kinds <= set(TORCH_FAMILIES) - _SHARED_KINDS:
        return "torch"
    if kinds and kinds <= set(KERAS_FAMILIES) - _SHARED_KINDS:
        return "keras"
    lasts = {m.name.rsplit(".", 1)[-1] for m in metas}
    if lasts <= set(_KERAS_ROLES) - {"bias"}:
        return "keras"
    if lasts and all(x in _TORCH_ROLES or _RNN_ROLE.match(x) for x in lasts) and lasts != {"bias"}:
        return "torch"
    return None


def _side(metas: Sequence[TensorMeta], declared: str | None, which: str) -> _Side:
    if not metas:
        raise _undecided(f"the rule has no {which} tensor metadata")
    missing = [m.name for m in metas if not m.kind]
    if missing:
        raise _undecided(f"{which} `{missing[0]}` {NO_KIND} (its owning module/layer class)")
    fw = _framework(declared, metas)
    if fw is None:
        raise _undecided(f"cannot tell the framework of {which} `{metas[0].name}` ({metas[0].kind})",
                         "declare the framework on the source/target (`source torch ...`), or")
    table = TORCH_FAMILIES if fw == "torch" else KERAS_FAMILIES
    unknown = [m.kind for m in metas if m.kind not in table]
    if unknown:
        raise _undecided(f"{which} layer kind `{unknown[0]}` ({fw}) has no known layout rule")
    return _Side(fw, tuple(table[str(m.kind)] for m in metas), tuple(_role(m, fw) for m in metas), tuple(metas))


NO_KIND = "has no layer kind"
"""What a WM304 says when a side carries no layer kinds (a checkpoint file): the compiler folds
these into one diagnostic for the whole spec, since the cause and the fix are the same everywhere."""


def _undecided(msg: str, pre: str | None = None) -> TransformError:
    hint = "name the preset explicitly: " + ", ".join(PRESETS)
    return TransformError(f"`layout(auto)`: {msg}", f"{pre} {hint}" if pre else hint, code="WM304")


def _mha_linear(torch: _Side, keras: _Side) -> str | None:
    """A Linear into an attention EinsumDense: a q/k/v projection or the output projection."""
    k = keras.metas[0].shape
    t = torch.metas[0].shape
    parent = keras.parents()[0]
    if torch.roles == ("b",):
        return "mha_proj" if len(k) == 2 else "identity"
    if len(t) != 2 or len(k) != 3:
        return None
    proj = k[0] == t[1] and k[1] * k[2] == t[0]
    out = k[2] == t[0] and k[0] * k[1] == t[1]
    if proj and out:  # only when NH*Dh == E and the head split is degenerate: let the name decide
        proj, out = parent in ("query", "key", "value"), parent == "attention_output"
    return "mha_proj" if proj and not out else "mha_out" if out and not proj else None


def choose(ctx: InferContext) -> tuple[str, str]:
    """(preset name, why) for the step described by `ctx`."""
    src = _side(ctx.sources, ctx.source_framework, "source")
    tgt = _side(ctx.targets, ctx.target_framework, "target")
    if len(set(src.families)) != 1 or len(set(tgt.families)) != 1:
        raise _undecided("the sources (or targets) belong to different kinds of layer")
    why = f"{src.framework} {src.metas[0].kind} {'+'.join(src.roles)} -> {tgt.framework} {tgt.metas[0].kind}"
    if src.framework == tgt.framework:
        if {src.family, tgt.family} == {"linear", "hf_conv1d"} and src.roles == tgt.roles == ("w",):
            return "transpose", why + ": HF Conv1D stores (in, out), Linear (out, in)"
        if src.family == tgt.family and src.roles == tgt.roles:
            return "identity", why + ": same layer kind and framework"
        raise _undecided(f"no rule maps {why} within {src.framework}")
    torch, keras = (src, tgt) if src.framework == "torch" else (tgt, src)
    to_keras = torch is src
    if torch.family == "linear" and keras.family == "mha":
        pick = _mha_linear(torch, keras)
        if pick is None:
            raise _undecided(f"{why}: shapes {U.fmt(torch.metas[0].shape)} and {U.fmt(keras.metas[0].shape)} "
                             "fit neither a q/k/v nor an output projection")
        if pick == "identity":
            return "identity", why + ": biases share the layout"
        return f"{pick}_{'to' if to_keras else 'from'}_keras", why
    if torch.roles == ("b_hh", "b_ih"):
        raise _undecided(f"{why}: list bias_ih before bias_hh", "write `{bias_ih,bias_hh}_l0`, or")
    if keras.family == "gru" and keras.roles == ("b",) and len(keras.metas[0].shape) == 1:
        raise _undecided(f"{why}: a (3H,) Keras GRU bias is GRU(reset_after=False), which PyTorch's GRU cannot "
                         "express", "build the Keras GRU with reset_after=True, or")
    if torch.family == "conv" and keras.family == "depthwise":
        _check_depthwise(torch.metas[0])
    pair = _TABLE.get((torch.family, torch.roles, keras.family, keras.roles))
    if pair is not None:
        if pair[0].startswith("mha_in"):
            _check_qkv_order(keras)
        return pair[0 if to_keras else 1], why
    if torch.family == keras.family and torch.family in _COPY_FAMILIES and torch.roles == keras.roles \
            and len(torch.roles) == 1 and torch.roles[0] in ("w", "b", "stat"):
        return "identity", why + ": the layouts agree"
    raise _undecided(f"no rule maps {why}")


def _check_depthwise(meta: TensorMeta) -> None:
    groups = meta.attr("groups")
    if len(meta.shape) >= 2 and meta.shape[1] != 1:
        raise _undecided(f"`{meta.name}` {U.fmt(meta.shape)} (groups={groups}) is not depthwise "
                         "(groups != in_channels), but the target is a DepthwiseConv",
                         "a grouped conv maps with conv_to_keras into ConvND(groups=...);")


def _check_qkv_order(keras: _Side) -> None:
    parents = keras.parents()
    if set(parents) == {"query", "key", "value"} and parents != ("query", "key", "value"):
        raise _undecided(f"the q/k/v tensors are listed as {', '.join(parents)}; PyTorch fuses them as "
                         "query, key, value", "list them as `{query,key,value}`, or")


@register
@dataclass(frozen=True)
class Layout(Transform):
    """Pick the PyTorch <-> Keras preset from the layer kinds, parameter roles and frameworks
    of the rule's tensors; the plan shows the preset it picked (e.g. `conv_to_keras`).
    Same kind in the same framework is `identity`; biases, norms and embeddings copy.
    It refuses to guess: ambiguous or unknown kinds are errors naming the explicit presets.
    Its arity is that of the preset it resolves to.

    Example: `**.weight -> **.kernel | layout`  Conv2d (64, 3, 7, 7) -> Conv2D (7, 7, 3, 64)
    """

    NAME = "layout"
    DISPATCH = True
    mode: str = "auto"

    def __post_init__(self) -> None:
        if self.mode != "auto":
            raise TransformError(f"`layout`: mode {self.mode!r} is not supported",
                                 "`layout` (auto) or an explicit preset: " + ", ".join(PRESETS))

    def infer(self, ins: Sequence[ArrayMeta], ctx: InferContext) -> tuple[Transform, tuple[ArrayMeta, ...]]:
        if not ctx.is_last:
            raise _undecided("must be the last transform of its chain: it reads the layer kinds of the "
                             "rule's own source and target tensors")
        name, why = choose(ctx)
        preset = REGISTRY[name]()
        try:
            return preset.infer(ins, ctx)
        except TransformError as e:
            raise TransformError(f"`layout(auto)` picked `{name}` ({why}), which does not fit: {e.message}",
                                 e.hint, e.code) from None
