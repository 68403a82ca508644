"""What Keras calls each stored variable, by layer class: the table behind `.weights.h5` names.

Keras 3 stores a layer's variables positionally (`layers/dense/vars/0`) in the order
`layer._trainable_variables + layer._non_trainable_variables`, i.e. creation order with
trainable ones first. To plan against the names a built model uses (`dense.kernel`), we
need each class's variable order; `config.json` (in `.keras` files) supplies the class
and the flags that drop optional variables (`use_bias`, `center`, `scale`). Without a
config the class is inferred from the group key (Keras writes `to_snake_case(class)`,
deduplicated `dense_1`, `dense_2`) or a known attribute name (`cell`, `query_dense`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_KERNEL_BIAS = ("kernel", "bias")
_RNN_CELL = ("kernel", "recurrent_kernel", "bias")

# class -> variable names in storage order (optional trailing ones may be absent).
VARIABLE_ORDER: dict[str, tuple[str, ...]] = {
    **{c: _KERNEL_BIAS for c in (
        "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
        "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "LocallyConnected1D", "LocallyConnected2D",
    )},
    **{c: ("depthwise_kernel", "pointwise_kernel", "bias") for c in ("SeparableConv1D", "SeparableConv2D")},
    **{c: _RNN_CELL for c in (
        "LSTMCell", "GRUCell", "SimpleRNNCell", "ConvLSTMCell", "ConvLSTM1DCell", "ConvLSTM2DCell",
        "ConvLSTM3DCell",
    )},
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "LayerNormalization": ("gamma", "beta"),
    "GroupNormalization": ("gamma", "beta"),
    "RMSNormalization": ("scale",),
    "Embedding": ("embeddings",),
    "PReLU": ("alpha",),
}

# Classes whose own variables are none (their sublayers hold them).
NO_OWN_VARIABLES = frozenset({
    "LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional",
    "TimeDistributed", "MultiHeadAttention", "GroupedQueryAttention", "Sequential", "Functional", "Model",
    "InputLayer", "Flatten", "Reshape", "Dropout", "Activation", "ReLU", "Softmax", "Add", "Concatenate",
    "Multiply", "Permute", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
})

# Attribute keys Keras uses for sublayers, by attribute name.
ATTRIBUTE_CLASSES: dict[str, str] = {
    "query_dense": "EinsumDense", "key_dense": "EinsumDense", "value_dense": "EinsumDense",
    "output_dense": "EinsumDense",
}
_CELL_OF = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "SimpleRNNCell", "ConvLSTM1D": "ConvLSTMCell",
            "ConvLSTM2D": "ConvLSTMCell", "ConvLSTM3D": "ConvLSTMCell"}

_KNOWN = set(VARIABLE_ORDER) | NO_OWN_VARIABLES | {"Conv", "Normalization"}


def to_snake_case(name: str) -> str:
    """Keras' own `naming.to_snake_case`, which names the groups in `.weights.h5` files."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


_SNAKE_TO_CLASS = {to_snake_case(c): c for c in _KNOWN}


def class_from_key(key: str) -> str | None:
    """`dense_3` -> `Dense`, `conv2d` -> `Conv2D`; None when the prefix is not a known class."""
    return _SNAKE_TO_CLASS.get(re.sub(r"_\d+$", "", key))


def sublayer_class(attr: str, parent_class: str | None, stored_name: str | None) -> str | None:
    """The class of a sublayer stored under an attribute key (`cell`, `query_dense`, `forward_layer`)."""
    if attr in ATTRIBUTE_CLASSES:
        return ATTRIBUTE_CLASSES[attr]
    if attr == "cell" and parent_class in _CELL_OF:
        return _CELL_OF[parent_class]
    for guess in (stored_name, stored_name and re.sub(r"^(forward|backward)_", "", stored_name), attr):
        if guess and class_from_key(guess):
            return class_from_key(guess)
    return None


def variable_names(cls: str | None, count: int, config: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    """Names of a layer's `count` stored variables, or None when they cannot be told apart."""
    if cls is None or cls not in VARIABLE_ORDER:
        return None
    names = VARIABLE_ORDER[cls]
    if cls in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        if config is not None:
            keep = {"gamma": bool(config.get("scale", True)), "beta": bool(config.get("center", True))}
            if cls == "LayerNormalization" and config.get("rms_scaling"):
                keep["beta"] = False
            names = tuple(n for n in names if keep.get(n, True))
        elif count == 2 and cls == "BatchNormalization":
            names = ("moving_mean", "moving_variance")
        if count != len(names):
            return None  # which of gamma/beta is missing is not recorded in the file
    if count > len(names):
        return None
    # Optional variables (bias) come last, so a shorter list is a prefix.
    return names[:count]

# Layers that never own variables, so being unbuilt costs nothing (checked when planning).
WEIGHTLESS = NO_OWN_VARIABLES - {
    "LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional",
    "TimeDistributed", "MultiHeadAttention", "GroupedQueryAttention", "Sequential", "Functional", "Model",
}
