"""tinygen prune: magnitude pruning with fine-tuning, and what the build then
makes of a structurally pruned model (channels removed, still bit-exact)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT
from tinygen.cli import main

sys.path.insert(0, str(ROOT / "tests" / "aot"))


def _data(n: int, seed: int):
    """Three classes of noisy 8x8 images: bright, dark or a checkerboard."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.5, (n, 8, 8, 1)).astype(np.float32)
    x[y == 0] += 1.0
    x[y == 1] -= 1.0
    x[y == 2] += (np.indices((8, 8)).sum(axis=0) % 2 * 2 - 1)[..., None]
    return x, y


@pytest.fixture(scope="module")
def trained(keras, tmp_path_factory):
    d = tmp_path_factory.mktemp("prune")
    keras.utils.set_random_seed(2)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(12, 3, padding="same")(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(12, 1)(x)))
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    x_tr, y_tr = _data(600, 0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_tr, y_tr, epochs=6, batch_size=32, verbose=0)
    path = d / "small.keras"
    model.save(path)
    np.savez(d / "train.npz", x=x_tr, y=y_tr)
    x_te, y_te = _data(200, 1)
    np.savez(d / "test.npz", x=x_te, y=y_te)
    np.save(d / "calib.npy", x_tr[:64])
    return d, path


def test_unstructured_prune_zeroes_the_share_asked_and_reports_accuracy(trained, keras, capsys):
    d, path = trained
    out = d / "u.keras"
    assert main(["prune", str(path), "--sparsity", "0.75", "--data", str(d / "train.npz"),
                 "--test", str(d / "test.npz"), "--epochs", "3", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy on test.npz (200 samples)" in text and "before" in text
    pruned = keras.models.load_model(out)
    for layer in pruned.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense"):
            w = layer.get_weights()[0]
            assert np.sum(w == 0) >= int(0.75 * w.size), layer.name
    # the model still does its job (3 classes: chance is 33 %)
    x, y = _data(200, 1)
    assert np.mean(pruned.predict(x, verbose=0).argmax(axis=1) == y) > 0.8


def test_structured_prune_then_build_removes_channels_bit_exact(trained, keras, tmp_path, capsys):
    from harness import assert_bit_exact

    from tinygen.convert import convert
    from tinygen.load import load_model
    from tinygen.prune.channels import remove_channels
    d, path = trained
    out = d / "s.keras"
    assert main(["prune", str(path), "--sparsity", "0.5", "--structured", "--data",
                 str(d / "train.npz"), "--epochs", "3", "-o", str(out)]) == 0
    assert "6 of 12 channels" in capsys.readouterr().out
    pruned = keras.models.load_model(out)
    convs = [la for la in pruned.layers if type(la).__name__ == "Conv2D"]
    assert all(np.sum(np.all(c.get_weights()[0] == 0, axis=(0, 1, 2))) == 6 for c in convs)
    conv = convert(load_model(out), d / "calib.npy")
    smaller, report = remove_channels(conv.ir)
    # both convolutions lose 6 channels, and the depthwise layer between them too
    widths = [smaller.tensors[op.outputs[0]].shape[-1] for op in smaller.operators
              if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert widths == [6, 6, 6], widths
    assert report.weights_after < report.weights_before
    assert_bit_exact(smaller.tflite, tmp_path, n_inputs=20, reference=conv.tflite)


@pytest.mark.parametrize("args,message", [
    (["--sparsity", "1.5"], "not a fraction"),
    (["--sparsity", "0.5", "--epochs", "0"], "--epochs"),
])
def test_bad_arguments_are_one_line_errors(trained, capsys, args, message):
    d, path = trained
    assert main(["prune", str(path), "--data", str(d / "train.npz"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_data_without_labels_is_refused(trained, capsys, tmp_path):
    d, path = trained
    np.save(tmp_path / "inputs.npy", np.zeros((4, 8, 8, 1), np.float32))
    out = tmp_path / "never.keras"
    assert main(["prune", str(path), "--sparsity", "0.5", "--data", str(tmp_path / "inputs.npy"),
                 "-o", str(out)]) == 2
    assert "no labels" in capsys.readouterr().err
    assert not out.exists()
