"""Hardware-in-the-loop tests of the quickstart model, written as a user would.

The board computes what Python computes: same top-1 as the tflite_micro
reference, bit-exact outputs, and an inference fast enough.  Run on the
emulated Cortex-M4 (the plugin builds the firmware and starts QEMU):

    pytest --tinygen-board qemu-cortex-m4 \
           --tinygen-model examples/quickstart/model.h5 \
           --tinygen-calib examples/quickstart/calib.npy examples/hil_tests/

or on a flashed board (`tinygen build --board nucleo_f446re --firmware protocol ...`,
flash it):

    pytest --tinygen-board nucleo_f446re --tinygen-port /dev/ttyACM0 \
           --tinygen-model examples/quickstart/model.h5 \
           --tinygen-calib examples/quickstart/calib.npy \
           --max-latency 5000000 examples/hil_tests/
"""

from pathlib import Path

import numpy as np
import pytest

QUICKSTART = Path(__file__).resolve().parent.parent / "quickstart"
CLASSES = ["horizontal", "vertical", "diagonal", "noise"]


@pytest.fixture(scope="module")
def images():
    """16 held-out test images (float, 16x16x1), as the model was trained on."""
    return np.load(QUICKSTART / "test.npz")["x"][:16]


def test_the_board_runs_this_model(dut, tinygen_build):
    info = dut.info()
    assert info.model_ready
    assert info.signature == tinygen_build.signature       # the firmware of this build
    assert [t.shape for t in info.outputs] == [(1, len(CLASSES))]


@pytest.mark.parametrize("i", range(8))
def test_top1_equals_reference(dut, images, i):
    device = dut.infer(images[i])                            # float in: quantized for you
    reference = dut.reference(images[i])                     # tflite_micro, same int8 input
    assert np.argmax(device.outputs[0]) == np.argmax(reference[0]), \
        f"image {i}: device says {CLASSES[np.argmax(device.outputs[0])]}, " \
        f"reference {CLASSES[np.argmax(reference[0])]}"


def test_outputs_bit_exact(dut, images):
    for i, x in enumerate(images):
        np.testing.assert_array_equal(dut.infer(x).outputs[0], dut.reference(x)[0],
                                      err_msg=f"image {i}")


def test_int8_inputs_are_sent_as_they_are(dut):
    x = np.random.default_rng(7).integers(-128, 128, (1, 16, 16, 1), dtype=np.int8)
    raw = dut.infer_raw([x])
    assert raw.outputs[0].dtype == np.int8
    np.testing.assert_array_equal(raw.outputs[0], dut.reference(x)[0])


def test_latency_below_bound(dut, images, request):
    bound = request.config.getoption("--max-latency")
    counters = [dut.infer(x).counter for x in images[:4]]
    unit = dut.info().counter_unit
    assert max(counters) <= bound, f"{max(counters):,} {unit} per inference > {bound:,}"


def test_builds_and_fits_the_board(tinygen_board, tmp_path):
    """Needs only --tinygen-board: render a project for the board (no compile)
    and check the model fits its RAM and flash."""
    from tinygen.project.build import build
    result = build(QUICKSTART / "model.h5", tinygen_board.id,
                   calib=QUICKSTART / "calib.npy", out_dir=tmp_path / "project",
                   compile_firmware=False)
    assert result.arena_bytes < tinygen_board.ram_bytes
    assert result.model_flash < tinygen_board.flash_bytes
