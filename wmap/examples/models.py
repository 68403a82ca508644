"""Twin example models: one network written in PyTorch and in Keras, for the example specs.

`torch_cnn()` and `keras_cnn()` compute the same function when their weights are mapped by
`specs/examples/torch_to_keras_cnn.wmap` (or its reverse). Together they hold one layer of
every family the README's PyTorch <-> Keras table gives a rule for: Conv2d, BatchNorm, PReLU,
a depthwise conv, ConvTranspose, MaxPool, Flatten -> Linear, LSTM, GRU and
MultiheadAttention. Sizes are tiny so the equivalence tests run in seconds.

    image (3, 16, 16) -> conv1 -> bn1 -> act (PReLU) -> dw (depthwise, x2) -> maxpool 2
      -> up (transposed conv, stride 2) -> maxpool 4 -> f (8 channels, 4 x 4)
    f -> flatten -> fc (10)                                             (the NCHW/NHWC trap)
    f -> 16 positions of 8 features -> lstm (12) -> gru (8) -> attn (2 heads) -> mean -> head (10)
    output = fc + head

Importing this module imports no framework: torch and Keras are imported by the factories,
so a `module:callable` target such as `wmap.examples.models:keras_cnn` costs only the
framework it builds. Keras layers are named explicitly, so variable names do not drift
with what else was built in the process (`dense_1`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import torch

IMAGE = (3, 16, 16)  # C, H, W (PyTorch order); the Keras input is (16, 16, 3)
CLASSES = 10
TORCH_BN_EPS = 1e-5


def torch_cnn() -> torch.nn.Module:
    """The PyTorch network (NCHW input, e.g. `torch.randn(2, 3, 16, 16)`), in eval mode."""
    from torch import nn

    class TwinCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8, eps=TORCH_BN_EPS)
            self.act = nn.PReLU(8)
            self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.pool2 = nn.MaxPool2d(4)
            self.fc = nn.Linear(8 * 4 * 4, CLASSES)
            self.lstm = nn.LSTM(8, 12, batch_first=True)
            self.gru = nn.GRU(12, 8, batch_first=True)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.pool2(self.up(self.pool(self.dw(self.act(self.bn1(self.conv1(x)))))))
            y1 = self.fc(f.flatten(1))
            s = f.flatten(2).transpose(1, 2)  # (N, H*W, C): positions in row-major order
            s, _ = self.lstm(s)
            s, _ = self.gru(s)
            a, _ = self.attn(s, s, s, need_weights=False)
            return y1 + self.head(a.mean(1))

    return TwinCNN().eval()


def keras_cnn(bn_epsilon: float = TORCH_BN_EPS) -> keras.Model:
    """The Keras twin (NHWC input, e.g. shape (2, 16, 16, 3)), built.

    `bn_epsilon` defaults to PyTorch's 1e-5 (Keras' own default, 1e-3, gives outputs that
    differ by ~1e-3, and the plan warns WM313).
    """
    import keras
    from keras import layers

    inp = keras.Input((IMAGE[1], IMAGE[2], IMAGE[0]), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=0.9, name="bn1")(x)  # momentum = 1 - torch's 0.1
    x = layers.PReLU(shared_axes=[1, 2], name="act")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2DTranspose(8, 2, strides=2, name="up")(x)
    f = layers.MaxPooling2D(4, name="pool2")(x)
    y1 = layers.Dense(CLASSES, name="fc")(layers.Flatten(name="flatten")(f))
    s = layers.Reshape((16, 8), name="to_sequence")(f)
    s = layers.LSTM(12, return_sequences=True, name="lstm")(s)
    s = layers.GRU(8, return_sequences=True, reset_after=True, name="gru")(s)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attn")(s, s)
    y2 = layers.Dense(CLASSES, name="head")(layers.GlobalAveragePooling1D(name="mean")(a))
    out = layers.Add(name="add")([y1, y2])
    return keras.Model(inp, out, name="twin_cnn")


def keras_cnn_keras_eps() -> keras.Model:
    """The Keras twin with Keras' default BatchNorm epsilon (1e-3): planning warns WM313."""
    return keras_cnn(bn_epsilon=1e-3)


def keras_unbuilt() -> keras.Model:
    """A Sequential model with no input shape: it has no variables until called (WM502)."""
    import keras

    return keras.Sequential([keras.layers.Dense(4, name="fc")], name="unbuilt")
