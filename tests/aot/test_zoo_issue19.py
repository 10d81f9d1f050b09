"""The zoo's issue-19 shapes, converted here from data they make and run by
the aot runtime on the emulated Cortex-M4F (dsp kernels, real SMLAD/SMMULR):
0 LSB against the tflite_micro interpreter on every output.

* streaming_kws: four inputs (a frame and three layer states) and four
  outputs (scores and the updated states), Conv1D / DepthwiseConv1D written
  by the converter as CONV_2D / DEPTHWISE_CONV_2D on a one-row image,
  CONCATENATION of state and frame, STRIDED_SLICE for the new state;
* person_detection_96: MobileNetV1 on a one-channel 96x96 image (its first
  convolution has K = 9 taps of one channel), reduced width here;
* tiny_conv_kws and lstm_classifier at reduced width (the bench runs them at
  full width).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import assert_bit_exact_m4, qemu_available

pytestmark = pytest.mark.skipif(not qemu_available(), reason="no QEMU")


def _tflite(name: str, width: float, tmp_path: Path) -> bytes:
    from tinygen.convert import convert
    from tinygen.load import load_model
    from tinygen.models import zoo

    model = zoo.build(name, width)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    data = zoo.calibration_data(model, 16)
    if isinstance(data, list):
        calib = tmp_path / "calib.npz"
        np.savez(calib, *data)
    else:
        calib = tmp_path / "calib.npy"
        np.save(calib, data)
    return convert(load_model(path), calib).ir.tflite


def test_streaming_kws_on_cortex_m4(tmp_path):
    from tinygen.ir import parse_tflite

    tfl = _tflite("streaming_kws", 1.0, tmp_path)
    model = parse_tflite(tfl)
    assert len(model.inputs) == 4 and len(model.outputs) == 4
    binary = assert_bit_exact_m4(tfl, tmp_path / "m4", n_inputs=3, seed=1)
    kernels = {c.kernel for c in binary.result.calls}
    assert "tg_concatenation" in kernels and "tg_depthwise_dsp_s8" in kernels, kernels


@pytest.mark.slow
@pytest.mark.parametrize("name,width", [("person_detection_96", 0.5), ("tiny_conv_kws", 0.5),
                                        ("lstm_classifier", 0.5)])
def test_zoo_model_on_cortex_m4(name, width, tmp_path):
    assert_bit_exact_m4(_tflite(name, width, tmp_path), tmp_path / "m4", n_inputs=2, seed=2)
