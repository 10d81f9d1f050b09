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
        w = layer.get_weights()[0] if layer.get_weights() else None
        if type(layer).__name__ in ("Conv2D", "Dense"):
            assert np.sum(w == 0) >= int(0.75 * w.size), layer.name
        elif type(layer).__name__ == "DepthwiseConv2D":
            assert np.all(w != 0), "depthwise filters are not pruned"
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


def _damaged(model, keras, lsb: float, seed: int = 0):
    """75 % of every kernel zeroed by magnitude, then (lsb > 0) the zeros
    nudged by up to `lsb` int8 steps of their channel: pruned, then fine-tuned
    without the masks (or quantized through a path that moved them)."""
    rng = np.random.default_rng(seed)
    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    for layer in m.layers:
        if type(layer).__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        ws = layer.get_weights()
        w = ws[0]
        flat = np.abs(w).reshape(-1, w.shape[-1]) if type(layer).__name__ != "DepthwiseConv2D" \
            else np.abs(w).reshape(-1, w.shape[2])
        step = flat.max(axis=0) / 127
        cut = np.quantile(np.abs(w), 0.75)
        zero = np.abs(w) <= cut
        shape = [1] * (w.ndim - 1) + [-1] if type(layer).__name__ != "DepthwiseConv2D" \
            else [1, 1, -1, 1]
        noise = rng.uniform(-lsb, lsb, w.shape) * step.reshape(shape)
        ws[0] = np.where(zero, noise, w).astype(np.float32)
        layer.set_weights(ws)
    return m


def test_pruned_model_whose_zeros_were_lost_is_refused(trained, keras, capsys, tmp_path):
    from tinygen.convert import convert
    from tinygen.load import load_model
    from tinygen.prune.sparsity import lost_zero_layers, weight_sparsity
    d, path = trained
    model = keras.models.load_model(path)
    exact, lost = tmp_path / "exact.keras", tmp_path / "lost.keras"
    _damaged(model, keras, 0.0).save(exact)
    _damaged(model, keras, 2.4).save(lost)
    calib = str(d / "calib.npy")
    assert main(["build", str(exact), "--calib", calib, "--no-compile",
                 "-o", str(tmp_path / "p1")]) == 0
    capsys.readouterr()
    assert main(["-q", "build", str(lost), "--calib", calib, "--no-compile",
                 "-o", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "looks pruned" in err[0] and "--accept-dense" in err[0], err
    assert not (tmp_path / "p2").exists()
    assert main(["build", str(lost), "--calib", calib, "--no-compile", "--accept-dense",
                 "-o", str(tmp_path / "p3")]) == 0
    # which layers: the 1x1 convolution (144 weights); the others have fewer than 128
    ir = convert(load_model(lost), d / "calib.npy").ir
    flagged = {s.op.split()[0] for s in lost_zero_layers(ir)}
    assert flagged == {"CONV_2D"}, weight_sparsity(ir)


def test_dense_models_are_not_taken_for_damaged_pruned_ones():
    from keras_models import keras_cnn, keras_dscnn

    from tinygen.convert import convert
    from tinygen.ir import parse_tflite
    from tinygen.load import load_model
    from tinygen.prune.sparsity import lost_zero_layers, weight_sparsity
    kws = convert(load_model(ROOT / "examples" / "kws_cnn" / "model.h5"),
                  ROOT / "examples" / "kws_cnn" / "calib.npy").ir
    for ir in (parse_tflite(keras_cnn()), parse_tflite(keras_dscnn()), kws):
        assert weight_sparsity(ir) and not lost_zero_layers(ir), weight_sparsity(ir)
