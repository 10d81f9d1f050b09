"""Structured pruning: zero-weight channels removed from the int8 model stay
bit-exact with the tflite_micro interpreter running the original model."""

from __future__ import annotations

import numpy as np
import pytest
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available, random_inputs, run_tflm
from pruned_models import EXPECTED_SHAPES, channels_cnn

from tinygen.ir import parse_tflite
from tinygen.prune.channels import remove_channels, requantize


@pytest.fixture(scope="module")
def pruned():
    original = channels_cnn()
    model = parse_tflite(original)
    smaller, report = remove_channels(model)
    return original, model, smaller, report


def test_removes_the_channels_nothing_needs(pruned):
    _, model, smaller, report = pruned
    for op in smaller.operators:
        if op.index in EXPECTED_SHAPES:
            assert smaller.tensors[op.outputs[0]].shape[-1] == EXPECTED_SHAPES[op.index], op
    assert report.count == 2 + 2 + 1 + 1 + 2 + 2
    assert report.weights_after < report.weights_before
    assert len(smaller.tflite) < len(model.tflite)
    # the interface is untouched
    assert [smaller.tensors[i].shape for i in smaller.inputs + smaller.outputs] == \
        [model.tensors[i].shape for i in model.inputs + model.outputs]


def test_tflm_runs_the_smaller_model_bit_exact(pruned):
    original, model, smaller, _ = pruned
    batches = random_inputs(model, np.random.default_rng(7), 40)
    ref = run_tflm(original, batches)
    got = run_tflm(smaller.tflite, batches)
    for r, g in zip(ref, got):
        assert np.array_equal(r[0], g[0])
    # the model is not degenerate: its outputs vary with the input
    assert len({bytes(r[0]) for r in ref}) > 10


def test_aot_smaller_model_bit_exact_with_tflm_on_the_original(pruned, tmp_path):
    original, _, smaller, _ = pruned
    assert_bit_exact(smaller.tflite, tmp_path, n_inputs=20, reference=original)


def test_a_model_without_zero_channels_is_returned_as_is():
    from keras_models import keras_cnn
    model = parse_tflite(keras_cnn())
    same, report = remove_channels(model)
    assert same is model and report.count == 0


@pytest.mark.parametrize("acc,mult,shift,want", [
    # (x * m / 2^31) * 2^shift rounded half away from zero, as gemmlowp computes it
    (1000, 1 << 30, -1, 250), (-1000, 1 << 30, -1, -250), (3, 1 << 30, -1, 1),
    (-3, 1 << 30, -1, -1), (5, 1 << 30, 0, 3), (-5, 1 << 30, 0, -2),
    (7, 1 << 30, 2, 14), (-(1 << 31), -(1 << 31), 0, (1 << 31) - 1),
])
def test_requantize_matches_gemmlowp_rounding(acc, mult, shift, want):
    assert requantize(acc, mult, shift) == want


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cortex_m4_smaller_model_bit_exact_with_tflm_on_the_original(pruned, tmp_path):
    original, _, smaller, _ = pruned
    assert_bit_exact_m4(smaller.tflite, tmp_path, n_inputs=10, reference=original)


def test_export_removes_the_channels_too(tmp_path):
    from tinygen.project.export import export
    path = tmp_path / "pruned.tflite"
    path.write_bytes(channels_cnn())
    notes: list[str] = []
    export(path, "c", tmp_path / "lib", progress=notes.append)
    assert any(n.startswith("pruned channels: removed 10 channels") for n in notes), notes


def test_inspect_says_what_a_build_removes(tmp_path, capsys):
    from tinygen.cli import main
    path = tmp_path / "pruned.tflite"
    path.write_bytes(channels_cnn())
    assert main(["-q", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pruning (what a build does): removed 10 channels" in out
    assert "exact int8 zeros in CONV_2D (operator #0) 26%" in out


def test_a_layer_of_zero_filters_keeps_one_channel_and_stays_bit_exact(tmp_path):
    from pruned_models import all_zero_layer
    original = all_zero_layer()
    model = parse_tflite(original)
    smaller, report = remove_channels(model)
    widths = [smaller.tensors[op.outputs[0]].shape[-1] for op in smaller.operators
              if op.opcode == "CONV_2D"]
    # the zero layer keeps one channel; c0's channels are read by nothing but
    # that layer's zero weights, so they are dead too (one stays)
    assert widths == [1, 1, 5], widths
    batches = random_inputs(model, np.random.default_rng(3), 20)
    for r, g in zip(run_tflm(original, batches), run_tflm(smaller.tflite, batches)):
        assert np.array_equal(r[0], g[0])
    assert_bit_exact(smaller.tflite, tmp_path, n_inputs=10, reference=original)
