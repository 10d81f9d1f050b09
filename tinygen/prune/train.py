"""`tinygen prune`: gradual magnitude pruning with fine-tuning (Zhu & Gupta,
"To prune, or not to prune", 2017; the algorithm of
tensorflow-model-optimization's prune_low_magnitude).

tensorflow-model-optimization 0.8.1 installs here but wraps only tf_keras
models, and tinygen loads Keras 3 files with Keras 3, so the same algorithm
is written against the Keras API both libraries share (a training callback):

  * the target sparsity s rises from 0 to s_f along s_f * (1 - (1 - t)^3)
    over the first 2/3 of the fine-tuning steps, then stays;
  * every `frequency` steps each layer's mask is recomputed: the smallest
    |w| (unstructured) or the output channels with the smallest L2 norm
    (structured) are zeroed; after every step the masked weights are set
    back to zero, so the optimizer cannot revive them.

Structured pruning zeroes a whole channel *group*: the convolution's filter
and bias, the batch normalization after it (gamma and beta, so its output is
an exact 0 whatever its statistics) and a depthwise convolution that only
carries the channel (its filter column and bias, and its batch
normalization).  The channel is then exactly 0.0 in float and exactly the
zero point in int8, which `prune/channels.py` can remove from any reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import TinygenError

PASS_THROUGH = ("BatchNormalization", "ReLU", "Activation", "Dropout", "LeakyReLU",
                "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "ZeroPadding2D")
MIXER_LAYERS = ("Conv2D", "Dense")
# Unstructured pruning leaves depthwise filters alone: each weight is one of a
# channel's few taps (9 of a 3x3), they hold a few percent of a model's
# weights, and zeroing most of them cost kws_cnn most of its accuracy.
PRUNABLE = ("Conv2D", "Dense")
SCHEDULE_FRACTION = 2 / 3


@dataclass
class PruneResult:
    accuracy_before: float
    accuracy_after: float
    evaluated_on: str
    samples: int
    layers: dict[str, float] = field(default_factory=dict)     # layer -> zero share of its kernel
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)  # structured: (zeroed, of)
    output: Path | None = None
    epochs: int = 0


# ---------------------------------------------------------------------------
# the Keras graph, as much as pruning needs


def _class(layer) -> str:
    return type(layer).__name__


def _inbound_layers(layer) -> list:
    """Layers whose outputs this layer reads (functional and Sequential models)."""
    try:
        inputs = layer.input
    except (AttributeError, ValueError):
        return []
    found = []
    for t in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        hist = getattr(t, "_keras_history", None)
        if hist is None:
            continue
        op = getattr(hist, "operation", None) or getattr(hist, "layer", None) or hist[0]
        found.append(op)
    return found


def _readers(model) -> dict[int, list]:
    readers: dict[int, list] = {}
    for layer in model.layers:
        for src in _inbound_layers(layer):
            readers.setdefault(id(src), []).append(layer)
    return readers


def channel_group(model, layer, readers=None) -> tuple[list, list, bool]:
    """(batch norms, depthwise layers) that carry `layer`'s output channels
    unchanged up to the next mixer, and whether the channels reach a model
    output that way (then they cannot be pruned)."""
    readers = readers if readers is not None else _readers(model)
    outputs = {id(getattr(t, "_keras_history", [None])[0]) for t in model.outputs}
    bns, dws, to_output = [], [], False
    todo = [layer]
    while todo:
        cur = todo.pop()
        if id(cur) in outputs:
            to_output = True
        for r in readers.get(id(cur), []):
            kind = _class(r)
            if kind == "BatchNormalization":
                bns.append(r)
                todo.append(r)
            elif kind == "DepthwiseConv2D" and int(getattr(r, "depth_multiplier", 1)) == 1:
                dws.append(r)
                todo.append(r)
            elif kind in PASS_THROUGH or kind in ("Softmax", "Flatten", "Reshape"):
                todo.append(r)
    return bns, dws, to_output


# ---------------------------------------------------------------------------
# masks


def sparsity_at(step: int, total: int, final: float) -> float:
    """Zhu & Gupta's cubic ramp, reaching `final` at SCHEDULE_FRACTION of the steps."""
    end = max(1, int(total * SCHEDULE_FRACTION))
    t = min(1.0, (step + 1) / end)
    return final * (1.0 - (1.0 - t) ** 3)


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|: exactly floor(sparsity * size) weights are zeroed."""
    k = int(np.floor(sparsity * w.size))
    mask = np.ones(w.size, bool)
    if k > 0:
        mask[np.argsort(np.abs(w).reshape(-1), kind="stable")[:k]] = False
    return mask.reshape(w.shape)


def channel_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Output channels (last kernel axis) to keep: the largest L2 norms; one at least."""
    norms = np.sqrt((w.reshape(-1, w.shape[-1]).astype(np.float64) ** 2).sum(axis=0))
    k = min(int(np.floor(sparsity * len(norms))), len(norms) - 1)
    keep = np.ones(len(norms), bool)
    if k > 0:
        keep[np.argsort(norms, kind="stable")[:k]] = False
    return keep


class _Pruner:
    """The masks of one model, recomputed on schedule and applied after every step."""

    def __init__(self, model, sparsity: float, structured: bool, total_steps: int,
                 frequency: int):
        self.model, self.final, self.structured = model, sparsity, structured
        self.total = max(1, total_steps)
        # the ramp ends at SCHEDULE_FRACTION of the steps with the final masks;
        # at least ten mask updates on the way, the last third recovers
        self.end = max(1, int(self.total * SCHEDULE_FRACTION))
        self.frequency = max(1, min(frequency, self.end // 10))
        self.step = 0
        readers = _readers(model)
        self.units: list[dict[str, Any]] = []
        for layer in model.layers:
            kind = _class(layer)
            if kind not in PRUNABLE or not layer.get_weights():
                continue
            if structured:
                if kind not in MIXER_LAYERS:
                    continue
                bns, dws, to_output = channel_group(model, layer, readers)
                if to_output:
                    continue
                self.units.append(dict(layer=layer, bns=bns, dws=dws, keep=None))
            else:
                self.units.append(dict(layer=layer, mask=None))
        if not self.units:
            raise TinygenError("the model has no layer to prune (Conv2D, DepthwiseConv2D or "
                               "Dense" + (" whose channels do not feed an output directly"
                                          if structured else "") + ")")

    def update_masks(self, target: float) -> None:
        for u in self.units:
            w = u["layer"].get_weights()[0]
            if self.structured:
                u["keep"] = channel_mask(w, target)
            else:
                u["mask"] = magnitude_mask(w, target)

    def apply(self) -> None:
        for u in self.units:
            layer = u["layer"]
            ws = layer.get_weights()
            if self.structured:
                keep = u["keep"]
                if keep is None:
                    continue
                ws[0] = ws[0] * keep
                if len(ws) > 1:
                    ws[1] = ws[1] * keep
                layer.set_weights(ws)
                for bn in u["bns"]:
                    _zero_bn(bn, keep)
                for dw in u["dws"]:
                    d = dw.get_weights()
                    d[0] = d[0] * keep[None, None, :, None]
                    if len(d) > 1:
                        d[1] = d[1] * keep
                    dw.set_weights(d)
            elif u["mask"] is not None:
                ws[0] = ws[0] * u["mask"]
                layer.set_weights(ws)

    def before_step(self) -> None:
        if self.step < self.end and (self.step % self.frequency == 0
                                     or self.step == self.end - 1):
            self.update_masks(sparsity_at(self.step, self.total, self.final))
            self.apply()

    def after_step(self) -> None:
        self.apply()
        self.step += 1

    def finish(self) -> None:
        self.update_masks(self.final)
        self.apply()


def recalibrate_batch_norm(model, keras, x: np.ndarray) -> int:
    """Set every batch normalization's moving mean and variance to the
    statistics of its input over `x`, in layer order.  A short fine-tuning
    leaves them describing the unpruned network (momentum 0.99 forgets too
    slowly), which costs more accuracy in inference than the pruning does."""
    count = 0
    for layer in model.layers:
        if _class(layer) != "BatchNormalization":
            continue
        sub = keras.Model(model.inputs, layer.input)
        a = np.asarray(sub.predict(x, batch_size=256, verbose=0), np.float64)
        axes = tuple(range(a.ndim - 1))
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        ws = layer.get_weights()
        for i, name in enumerate(names):
            if name == "moving_mean":
                ws[i] = a.mean(axis=axes).astype(ws[i].dtype)
            elif name == "moving_variance":
                ws[i] = a.var(axis=axes).astype(ws[i].dtype)
        layer.set_weights(ws)
        count += 1
    return count


def _zero_bn(bn, keep: np.ndarray) -> None:
    """gamma and beta of removed channels to 0: the layer then outputs exact 0 there."""
    names = [w.name.split("/")[-1].split(":")[0] for w in bn.weights]
    ws = bn.get_weights()
    for i, name in enumerate(names):
        if name in ("gamma", "beta"):
            ws[i] = ws[i] * keep
    bn.set_weights(ws)


# ---------------------------------------------------------------------------
# the command


def _labelled(path: Path, shape, what: str) -> tuple[np.ndarray, np.ndarray]:
    from ..data import load_labels, load_samples
    samples = load_samples(path, [(1, *shape)], what=what, integers="float")
    if not samples:
        raise TinygenError(f"{path.name} holds no samples")
    labels = load_labels(path, samples)
    if labels is None:
        raise TinygenError(f"{path.name} holds no labels: pruning fine-tunes on labelled data "
                           "(a .npz with x and y, or a labels .npy beside the inputs; "
                           "docs/data.md)")
    x = np.concatenate([s[0] for s in samples]).astype(np.float32)
    return x, labels[0].astype(np.int64)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(pred.reshape(len(x), -1).argmax(axis=1) == y))


def _outputs_probabilities(model, x: np.ndarray) -> bool:
    p = np.asarray(model.predict(x[:32], verbose=0)).reshape(min(32, len(x)), -1)
    return bool(np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-3))


def prune_model(model_path: str | Path, sparsity: float, data: str | Path,
                structured: bool = False, test: str | Path | None = None,
                epochs: int = 20, batch_size: int = 64, learning_rate: float = 1e-3,
                frequency: int = 20, output: str | Path | None = None, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> PruneResult:
    note = progress or (lambda _m: None)
    if not 0.0 < sparsity < 1.0:
        raise TinygenError(f"--sparsity {sparsity} is not a fraction between 0 and 1 "
                           "(0.75 prunes three weights in four)")
    if epochs < 1:
        raise TinygenError("--epochs must be at least 1")
    from ..load import load_model
    src = load_model(model_path)
    if src.kind != "keras":
        raise TinygenError(f"{Path(model_path).name} is a {src.kind.replace('_', ' ')}: "
                           "pruning fine-tunes a Keras model (.h5 or .keras)")
    model = src.keras_model
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TinygenError("tinygen prune handles models with one input and one output")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    x, y = _labelled(Path(data), shape, "training data")
    xt, yt = (x, y) if test is None else _labelled(Path(test), shape, "test data")
    out = Path(output) if output else Path(model_path).with_name(
        Path(model_path).stem + (".channels" if structured else ".pruned")
        + Path(model_path).suffix)
    keras = _keras_of(src)
    keras.utils.set_random_seed(seed)
    n_classes = int(np.prod(model.outputs[0].shape[1:]))
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise TinygenError(f"labels run from {int(y.min())} to {int(y.max())}, but the model "
                           f"has {n_classes} outputs")
    note(f"accuracy before pruning on {len(xt)} samples")
    before = accuracy(model, xt, yt)
    steps = epochs * -(-len(x) // batch_size)
    pruner = _Pruner(model, sparsity, structured, steps, frequency)

    class Hook(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            pruner.before_step()

        def on_train_batch_end(self, batch, logs=None):
            pruner.after_step()

    probs = _outputs_probabilities(model, x)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probs),
                  metrics=["accuracy"])
    note(f"fine-tuning {epochs} epochs ({steps} steps) to "
         f"{sparsity:.0%} {'of the channels' if structured else 'zero weights'}")
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[Hook()])
    pruner.finish()
    recalibrate_batch_norm(model, keras, x[:4096])
    after = accuracy(model, xt, yt)
    result = PruneResult(accuracy_before=before, accuracy_after=after,
                         evaluated_on=Path(test or data).name, samples=len(xt), epochs=epochs)
    for u in pruner.units:
        w = u["layer"].get_weights()[0]
        result.layers[u["layer"].name] = float(np.mean(w == 0))
        if structured:
            result.channels[u["layer"].name] = (int((~u["keep"]).sum()), len(u["keep"]))
    _save(model, out)
    result.output = out
    return result


def _keras_of(src):
    """The Keras library that loaded the model (Keras 3, or tf_keras for Keras 2 files)."""
    if src.loader and src.loader.startswith("tf_keras"):
        import tf_keras
        return tf_keras
    from .. import tfenv
    return tfenv.keras()


def _save(model, out: Path) -> None:
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(tmp)
        tmp.replace(out)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise TinygenError(f"cannot write {out}: {exc}") from None
