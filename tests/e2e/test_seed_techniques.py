"""The weight-replacement techniques this project grew from, each run twice in one test: the
hand-written code (Keras `set_weights` loops, PyTorch `copy_`/`load_state_dict`, NumPy masks,
optimizer parameter lists) and the wmap spec that replaces it. The two results are compared bit
for bit: every tensor's bytes, and for freezing and learning rates the exact sets of parameters.

Models are small stand-ins for the architectures the techniques name (a ResNet-style backbone
for torchvision's ResNets, a VGG-style Keras stack for VGG16), built locally with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import wmap

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
nn = torch.nn
L = keras.layers


def _same(a: Any, b: Any) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def _kweights(model: Any) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def _tweights(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _spec(text: str) -> Any:
    return wmap.parse_spec("wmap 1\n" + text)


# -- replacing weights wholesale -------------------------------------------------------------------


def test_keras_layer_by_layer_set_weights_from_a_pretrained_model() -> None:
    """Direct weight assignment in Keras: a pretrained model and a new model of the same architecture;
    every layer of the new one gets `set_weights(pretrained.layers[i].get_weights())` in a loop. The
    spec maps every variable by name, and checks shapes before anything is assigned."""
    def build() -> Any:
        return keras.Sequential([keras.Input((784,)), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    keras.utils.set_random_seed(0)
    pretrained, by_hand, by_wmap = build(), build(), build()
    for i in range(len(by_hand.layers)):
        by_hand.layers[i].set_weights(pretrained.layers[i].get_weights())
    wmap.apply(_spec("{p:**} -> {p}\n"), source=pretrained, target=by_wmap)
    for a, b in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, b)


def test_torch_load_state_dict_from_a_pth_file(tmp_path: Path) -> None:
    """Loading pretrained weights into a freshly defined model: `model.load_state_dict(torch.load(path))`.
    wmap reads the same `.pth` (weights only, memory-mapped) and accounts for every tensor."""
    class MyModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear1, self.linear2 = nn.Linear(10, 20), nn.Linear(20, 1)
    torch.manual_seed(0)
    torch.save(MyModel().state_dict(), tmp_path / "pretrained_weights.pth")
    by_hand, by_wmap = MyModel(), MyModel()
    by_hand.load_state_dict(torch.load(tmp_path / "pretrained_weights.pth", weights_only=True))
    wmap.apply(_spec("{p:**} -> {p}\n"), source=str(tmp_path / "pretrained_weights.pth"), target=by_wmap)
    for k, v in _tweights(by_hand).items():
        _same(v, _tweights(by_wmap)[k])


def test_online_update_w_minus_lr_times_gradient() -> None:
    """Incremental updates in online learning: `model.set_weights([w - lr * g for w, g in ...])`. The
    gradient and its learning-rate scaling come from the training code; the spec applies the step to
    every variable by name (`sub`, rounded once, as the float32 subtraction is)."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), L.Dense(4), L.Dense(1)])
    weights = model.get_weights()
    rng = np.random.default_rng(0)
    gradient = [rng.standard_normal(w.shape).astype(np.float32) for w in weights]
    learning_rate = np.float32(0.01)
    by_hand = [w - learning_rate * g for w, g in zip(weights, gradient, strict=True)]
    names = [n for n, _ in keras_names(model)]
    step = {n: learning_rate * g for n, g in zip(names, gradient, strict=True)}
    wmap.apply(_spec("base:{p:**}, step:{p:**} -> {p} | sub\n"), source={"base": model, "step": step}, target=model)
    for a, b in zip(by_hand, _kweights(model), strict=True):
        _same(a, b)


def keras_names(model: Any) -> list[tuple[str, Any]]:
    from wmap.formats.keras_naming import keras_names as names
    return list(names(model))


# -- replacing some weights, keeping the rest ------------------------------------------------------


def test_torch_assign_literal_weights_with_copy() -> None:
    """Manual assignment under `torch.no_grad()`: `weight.copy_(torch.tensor([[0.1, ..., 0.5]]))`,
    `bias.copy_(torch.tensor([0.0]))`. The spec writes the values as literals; their shape is checked."""
    class MyModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(5, 1)
    by_hand, by_wmap = MyModel(), MyModel()
    with torch.no_grad():
        by_hand.linear.weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]]))
        by_hand.linear.bias.copy_(torch.tensor([0.0]))
    wmap.apply(_spec("init linear.weight = constant([[0.1, 0.2, 0.3, 0.4, 0.5]])\n"
                     "init linear.bias = constant([0.0])\n"), target=by_wmap)
    for k, v in _tweights(by_hand).items():
        _same(v, _tweights(by_wmap)[k])


def test_torch_weights_from_numpy_arrays(tmp_path: Path) -> None:
    """Weights saved by NumPy: the hand-written code `np.load(..., allow_pickle=True)`s a pickled dict
    and copies `torch.from_numpy(d['weight']).float()`. wmap never unpickles (a pickle can run code);
    it reads the same arrays saved by name (`np.savez`, what its WM508 hint says) and casts float64
    to the model's float32 under `option dtype = "target"`."""
    class MyModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(10, 5)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "weights.npy", {"weight": rng.random((5, 10)), "bias": rng.random(5)}, allow_pickle=True)
    by_hand, by_wmap = MyModel(), MyModel()
    weights_np = np.load(tmp_path / "weights.npy", allow_pickle=True).item()
    with torch.no_grad():
        by_hand.linear.weight.copy_(torch.from_numpy(weights_np["weight"]).float())
        by_hand.linear.bias.copy_(torch.from_numpy(weights_np["bias"]).float())
    with pytest.raises(wmap.WmapError) as e:  # the pickle itself is refused, with the way out
        wmap.inventory_of(str(tmp_path / "weights.npy"))
    assert e.value.diagnostics[0].code == "WM508"
    np.savez(tmp_path / "weights.npz", **weights_np)
    wmap.apply(_spec(f'source "{tmp_path / "weights.npz"}"\noption dtype = "target"\n'
                     "{p} -> linear.{p}\n"), target=by_wmap)
    for k, v in _tweights(by_hand).items():
        _same(v, _tweights(by_wmap)[k])


def test_keras_zero_the_first_layer() -> None:
    """Custom initialisation of one layer: `first_layer.set_weights([np.zeros_like(W), np.zeros_like(b)])`,
    every other layer left as it is."""
    keras.utils.set_random_seed(2)
    by_hand = keras.Sequential([keras.Input((10,)), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    by_wmap = keras.models.clone_model(by_hand)
    by_wmap.set_weights(by_hand.get_weights())
    w, b = by_hand.layers[0].get_weights()
    by_hand.layers[0].set_weights([np.zeros_like(w), np.zeros_like(b)])
    wmap.apply(_spec("init dense.{kernel,bias} = zeros\nkeep dense_1.*\n"), target=by_wmap)
    for a, c in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, c)


def test_torch_random_uniform_init_of_the_first_layer() -> None:
    """Custom random initialisation: `first_layer.weight.data = torch.rand_like(weight)` (uniform on
    [0, 1)), the other layers untouched. wmap draws from its own seeded generator, so the random values
    cannot equal torch's draw; what is compared bit for bit is everything that is not drawn (the other
    layers) and that the draw is uniform on [0, 1) and the same in every run."""
    torch.manual_seed(3)
    by_hand = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    by_wmap = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    by_wmap.load_state_dict(by_hand.state_dict())
    with torch.no_grad():
        by_hand[0].weight.data = torch.rand_like(by_hand[0].weight)
        by_hand[0].bias.data = torch.rand_like(by_hand[0].bias)
    spec = _spec("init 0.{weight,bias} = uniform(0, 1)\nkeep 2.*\n")
    wmap.apply(spec, target=by_wmap)
    got, want = _tweights(by_wmap), _tweights(by_hand)
    for k in ("2.weight", "2.bias"):
        _same(got[k], want[k])
    for k in ("0.weight", "0.bias"):
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype
        assert got[k].min() >= 0 and got[k].max() < 1 and got[k].std() > 0.2
    again = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    wmap.apply(spec, target=again)
    _same(_tweights(again)["0.weight"], got["0.weight"])


def test_keras_magnitude_pruning_keeps_weights_above_the_threshold() -> None:
    """Pruning while loading: `mask = np.abs(W) > threshold; set_weights([W * mask, b])`. The spec says
    which side of the threshold survives: `prune(0.1, keep="gt")`."""
    keras.utils.set_random_seed(4)
    by_hand = keras.Sequential([keras.Input((10,)), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    by_wmap = keras.models.clone_model(by_hand)
    by_wmap.set_weights(by_hand.get_weights())
    source = keras.models.clone_model(by_hand)
    source.set_weights(by_hand.get_weights())
    weight_matrix, bias_vector = by_hand.layers[0].get_weights()
    threshold = 0.1
    mask = np.abs(weight_matrix) > threshold
    by_hand.layers[0].set_weights([weight_matrix * mask, bias_vector])
    wmap.apply(_spec('dense.kernel -> dense.kernel | prune(0.1, keep="gt")\ndrop dense.bias, dense_1.*\n'
                     "keep dense.bias, dense_1.*\n"), source=source, target=by_wmap)
    for a, b in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, b)
    assert (by_wmap.layers[0].get_weights()[0] == 0).sum() > 0


def test_keras_set_two_named_layers_from_numpy() -> None:
    """Selective layer assignment by name: `model.get_layer('dense_1').set_weights([np.random.rand(5, 10),
    np.random.rand(10)])` and the same for `dense_3`, `dense_2` untouched. `np.random.rand` gives float64;
    `set_weights` casts it to the layer's float32, and the spec says so with `option dtype = "target"`.
    Counter-style names (`dense_1`..`dense_3`) are numbered within their parent, the same in every process
    (`dense`, `dense_1`, `dense_2`: see `keras_naming.auto_named`), so the spec names the script's `dense_1`
    `dense` and its `dense_3` `dense_2`, as `wmap inspect` shows them."""
    keras.backend.clear_session()

    def build() -> Any:
        return keras.Sequential([keras.Input((5,)), L.Dense(10, activation="relu", name="dense_1"),
                                 L.Dense(20, activation="relu", name="dense_2"),
                                 L.Dense(5, activation="softmax", name="dense_3")])
    keras.utils.set_random_seed(5)
    by_hand = build()
    by_wmap = build()
    by_wmap.set_weights(by_hand.get_weights())
    rng = np.random.default_rng(0)
    weights_1 = [rng.random((5, 10)), rng.random(10)]
    weights_3 = [rng.random((20, 5)), rng.random(5)]
    by_hand.get_layer("dense_1").set_weights(weights_1)
    by_hand.get_layer("dense_3").set_weights(weights_3)
    arrays = {"dense.kernel": weights_1[0], "dense.bias": weights_1[1],
              "dense_2.kernel": weights_3[0], "dense_2.bias": weights_3[1]}
    wmap.apply(_spec('option dtype = "target"\n{p:**} -> {p}\nkeep dense_1.*\n'), source=arrays, target=by_wmap)
    for a, b in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, b)


def test_keras_transfer_a_conv_layer_between_differently_named_models() -> None:
    """Partial transfer by layer name: a pretrained Conv2D -> MaxPool -> Flatten -> Dense model and a
    target whose conv is named differently and whose dense layers are new; `target.get_layer('conv_1')
    .set_weights(pretrained.get_layer('conv_1_pretrained').get_weights())` (the pool has no weights).
    The spec renames the conv's variables, drops the old head and keeps the new layers (named
    `dense_1`, `dense_2` by hand; wmap numbers such names within their parent: `dense`, `dense_1`)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(6)
    pretrained = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), name="conv_1_pretrained"),
                                   L.MaxPool2D((2, 2), name="pool_1_pretrained"), L.Flatten(name="flatten_pretrained"),
                                   L.Dense(10, activation="softmax", name="dense_pretrained")])

    def target() -> Any:
        return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), name="conv_1"),
                                 L.MaxPool2D((2, 2), name="pool_1"), L.Flatten(name="flatten"),
                                 L.Dense(20, activation="relu", name="dense_1"),
                                 L.Dense(5, activation="softmax", name="dense_2")])
    by_hand = target()
    by_wmap = target()
    by_wmap.set_weights(by_hand.get_weights())
    by_hand.get_layer("conv_1").set_weights(pretrained.get_layer("conv_1_pretrained").get_weights())
    by_hand.get_layer("pool_1").set_weights(pretrained.get_layer("pool_1_pretrained").get_weights())
    wmap.apply(_spec("conv_1_pretrained.{kernel,bias} -> conv_1.{kernel,bias}\ndrop dense_pretrained.*\n"
                     "keep dense.*, dense_1.*\n"), source=pretrained, target=by_wmap)
    for a, b in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, b)


@pytest.mark.parametrize("which", ["kernel", "bias"])
def test_keras_set_only_the_kernel_or_only_the_bias(which: str) -> None:
    """Replacing one variable of a layer and keeping the other: `layer.set_weights([new_kernel,
    layer.get_weights()[1]])`, then the same for the bias."""
    keras.utils.set_random_seed(7)
    by_hand = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), name="conv_layer_test")])
    by_wmap = keras.models.clone_model(by_hand)
    by_wmap.set_weights(by_hand.get_weights())
    rng = np.random.default_rng(0)
    kernel_weights, bias_weights = rng.random((3, 3, 1, 32)), rng.random(32)
    layer = by_hand.get_layer("conv_layer_test")
    if which == "kernel":
        layer.set_weights([kernel_weights, layer.get_weights()[1]])
        new, keep = {"conv_layer_test.kernel": kernel_weights}, "bias"
    else:
        layer.set_weights([layer.get_weights()[0], bias_weights])
        new, keep = {"conv_layer_test.bias": bias_weights}, "kernel"
    wmap.apply(_spec(f'option dtype = "target"\n{{p:**}} -> {{p}}\nkeep conv_layer_test.{keep}\n'),
               source=new, target=by_wmap)
    for a, b in zip(_kweights(by_hand), _kweights(by_wmap), strict=True):
        _same(a, b)


# -- freezing and learning rates -------------------------------------------------------------------


class Backbone(nn.Module):
    """A ResNet-style classifier: stem, two stages, a `fc` head (as torchvision's ResNets name it)."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.layer4 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, classes)


def _trainable(model: Any) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_torch_freeze_the_backbone_and_replace_the_head() -> None:
    """Fine-tuning a pretrained ResNet: freeze every parameter (`requires_grad = False`), replace `fc` with
    a new `nn.Linear(in_features, 10)`, and optimise `fc.parameters()` only. The spec copies the backbone,
    drops the old head, initialises the new one, freezes the rest; `param_groups` gives the optimizer the
    same parameters."""
    torch.manual_seed(8)
    pretrained = Backbone()
    base_model = Backbone()
    base_model.load_state_dict(pretrained.state_dict())
    for param in base_model.parameters():
        param.requires_grad = False
    base_model.fc = nn.Linear(base_model.fc.in_features, 10)
    hand_params = {id(p) for p in base_model.fc.parameters()}

    model = Backbone(classes=10)
    p = wmap.plan(_spec("{p:**} -> {p}\ndrop fc.*\ninit fc.weight = kaiming_uniform(a=2.23606797749979)\n"
                        "init fc.bias = zeros\nfreeze conv1.**, bn1.**, layer1.**, layer4.**\n"),
                  source=pretrained, target=model)
    p.apply()
    got = _tweights(model)
    for k, v in _tweights(base_model).items():
        if not k.startswith("fc."):
            _same(v, got[k])
    assert _trainable(model) == _trainable(base_model) == {"fc.weight", "fc.bias"}
    groups = p.param_groups(model, base_lr=0.001)
    assert [g["names"] for g in groups] == [["fc.weight", "fc.bias"]] and len(hand_params) == 2
    assert [g["lr"] for g in groups] == [0.001]


def test_torch_per_stage_learning_rates() -> None:
    """Discriminative learning rates: the last stage (`layer4`) and the new head at 1e-4, everything else
    at 1e-5, as two optimizer parameter groups built by hand from `named_parameters()`. The spec states
    the multipliers (`lr layer4.** * 10`, `lr fc.* * 10` on a base of 1e-5); `param_groups` builds the
    groups."""
    torch.manual_seed(9)
    pretrained = Backbone()
    model = Backbone(classes=2)
    fine_tune = [p for n, p in model.named_parameters() if n.startswith(("layer4.", "fc."))]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("layer4.", "fc."))]
    hand = [{"params": fine_tune, "lr": 0.0001}, {"params": rest, "lr": 0.00001}]
    p = wmap.plan(_spec("{p:**} -> {p}\ndrop fc.*\ninit fc.weight = normal(std=0.01)\ninit fc.bias = zeros\n"
                        "lr layer4.** * 10\nlr fc.* * 10\n"), source=pretrained, target=model)
    p.apply()
    groups = {round(g["lr"], 12): {id(x) for x in g["params"]} for g in p.param_groups(model, base_lr=0.00001)}
    assert groups == {round(g["lr"], 12): {id(x) for x in g["params"]} for g in hand}
    for k, v in _tweights(pretrained).items():
        if not k.startswith("fc."):
            _same(v, _tweights(model)[k])


def test_keras_freeze_the_first_layers_of_a_vgg_and_add_a_classifier() -> None:
    """Fine-tuning a pretrained VGG-style Keras base: `for layer in base_model.layers[:10]: layer.trainable
    = False`, then a new classifier on top (GlobalAveragePooling2D, Dense 256, Dense 5). The spec copies
    the base into the assembled model, freezes the same layers, initialises the new ones."""
    def vgg() -> Any:
        x = inp = keras.Input((32, 32, 3))
        for b, (n, f) in enumerate(((2, 8), (2, 8), (3, 16)), 1):
            for c in range(1, n + 1):
                x = L.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
            x = L.MaxPooling2D(name=f"block{b}_pool")(x)
        return keras.Model(inp, x, name="vgg")

    def assembled(base: Any) -> Any:
        x = L.GlobalAveragePooling2D()(base.output)
        x = L.Dense(256, activation="relu", name="fc1")(x)
        return keras.Model(base.input, L.Dense(5, activation="softmax", name="predictions")(x))
    keras.utils.set_random_seed(10)
    pretrained = vgg()
    base_model = vgg()
    base_model.set_weights(pretrained.get_weights())
    for layer in base_model.layers[:10]:
        layer.trainable = False
    by_hand = assembled(base_model)

    by_wmap = assembled(vgg())
    wmap.apply(_spec("{p:**} -> {p}\ninit fc1.kernel = xavier_uniform\ninit predictions.kernel = xavier_uniform\n"
                     "init fc1.bias = zeros\ninit predictions.bias = zeros\n"
                     "freeze block1_*.*, block2_*.*, block3_conv{1,2,3}.*\n"), source=pretrained, target=by_wmap)
    hand = {v.path: v for v in by_hand.weights}
    for v in by_wmap.weights:
        if not v.path.startswith(("fc1", "predictions")):
            _same(np.array(v), np.array(hand[v.path]))
    assert {v.path for v in by_wmap.trainable_weights} == {v.path for v in by_hand.trainable_weights}
