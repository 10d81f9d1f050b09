"""tinygen's pytest plugin: hardware-in-the-loop tests of tinygen firmware.

Registered through the ``pytest11`` entry point, so it is loaded in every
pytest session of an environment where tinygen is installed.  Without any
``--tinygen-*`` option it does nothing: it adds its options and fixtures,
imports nothing beyond pytest, and its fixtures skip the tests that use them.

Options (documented in docs/pytest-plugin.md):

  --tinygen-board BOARD   board id (``tinygen boards``); with only a model given,
                          the default emulated board
  --tinygen-port URL      pyserial URL of a flashed board; for an emulated board
                          without it the plugin builds the firmware and runs QEMU
  --tinygen-model PATH    Keras .h5/.keras, SavedModel or int8 .tflite
  --tinygen-calib FILE    calibration inputs for the conversion
  --tinygen-runtime RT    aot or tflm (default: the board's)
  --tinygen-build-dir DIR where to build (default: a session temporary directory)

Fixtures: ``tinygen_board`` (a :class:`tinygen.boards.Board`),
``tinygen_build`` (session-scoped :class:`tinygen.project.build.BuildResult`),
``dut`` (session-scoped :class:`Dut`: the device under test).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import pytest

_OPTIONS = ("board", "port", "model", "calib", "runtime", "build_dir")


@dataclasses.dataclass(frozen=True)
class TinygenOptions:
    board: str | None = None
    port: str | None = None
    model: str | None = None
    calib: str | None = None
    runtime: str | None = None
    build_dir: str | None = None

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in _OPTIONS)


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tinygen", "tinygen hardware-in-the-loop testing "
                                       "(docs/pytest-plugin.md)")
    group.addoption("--tinygen-board", metavar="BOARD", default=None,
                    help="board id (see `tinygen boards`); default with --tinygen-model: the "
                         "default emulated board")
    group.addoption("--tinygen-port", metavar="URL", default=None,
                    help="serial port or pyserial URL of a flashed board (/dev/ttyUSB0, "
                         "socket://..., rfc2217://...); emulated boards without it are built "
                         "and run in QEMU")
    group.addoption("--tinygen-model", metavar="PATH", default=None,
                    help="the model: Keras .h5/.keras, SavedModel directory or int8 .tflite")
    group.addoption("--tinygen-calib", metavar="FILE", default=None,
                    help="calibration inputs (.npy/.npz) for quantizing a Keras model")
    group.addoption("--tinygen-runtime", metavar="RUNTIME", default=None,
                    choices=("aot", "tflm"), help="aot or tflm (default: the board's)")
    group.addoption("--tinygen-build-dir", metavar="DIR", default=None,
                    help="project directory for the build (default: a temporary directory)")


def _options(config) -> TinygenOptions:
    return TinygenOptions(**{name: config.getoption(f"tinygen_{name}") for name in _OPTIONS})


def pytest_report_header(config) -> list[str] | None:
    opts = _options(config)
    if not opts.active:
        return None
    where = opts.port or ("QEMU, started by the plugin" if opts.model else "-")
    return [f"tinygen: board {opts.board or '(default emulated)'}, model {opts.model or '-'}, "
            f"device {where}"]


# ---------------------------------------------------------------------------
# the device under test


def _inputs_of(x: Any, n_inputs: int) -> list:
    """One input array, or a list/tuple with one array per input."""
    import numpy as np
    if isinstance(x, (list, tuple)) and len(x) == n_inputs and \
            all(isinstance(v, np.ndarray) for v in x):
        return list(x)
    if n_inputs != 1:
        raise ValueError(f"the model takes {n_inputs} inputs: pass a list of {n_inputs} arrays")
    return [np.asarray(x)]


class Dut:
    """A tinygen device under test: a handshaken :class:`DeviceClient` plus
    what the test needs around it (quantization, the TFLM reference).

    ``infer(x)`` takes float inputs (quantized with the model's input scale
    and zero point) or int8 ones, with or without the batch dimension of 1;
    for several inputs a list.  It returns the device's
    :class:`~tinygen.device.protocol.InferenceResult` (``outputs``,
    ``counter``, ``counter_unit``).  ``reference(x)`` returns what the
    tflite_micro interpreter computes for the same (quantized) input."""

    def __init__(self, client, board, url: str, ir=None, qemu=None, model_path=None):
        self._model_path = model_path
        self.client = client
        self.board = board
        self.url = url
        self.model = ir
        self.qemu = qemu
        self._reference = None

    # -- device --------------------------------------------------------------

    def info(self):
        """The device's handshake (protocol, board, runtime, signature, tensors)."""
        return self.client.info()

    def infer(self, x):
        """Quantize if needed, run one inference on the device."""
        return self.client.infer(self.quantize(x))

    def infer_raw(self, inputs: Sequence):
        """Send int8 (or the model's own dtype) arrays as they are."""
        import numpy as np
        return self.client.infer([np.asarray(v) for v in _inputs_of(inputs, len(self.info().inputs))])

    def reset_state(self) -> None:
        """Reset a stateful model (LSTM) on the device and in the reference."""
        self.client.reset_state()
        if self._reference is not None:
            self._reference.reset()

    def read_profile(self) -> list[int]:
        """Per-operator counters of the last inference (firmware built with --profile)."""
        return self.client.read_profile()

    # -- host side -----------------------------------------------------------

    def _tensors(self):
        """Input tensor descriptions: the model's when known, else the device's."""
        if self.model is not None:
            return [(tuple(t.shape), t.dtype, t.quant is not None and t.scale,
                     t.zero_point if t.quant else 0) for t in self.model.input_tensors()]
        return [(tuple(t.shape), t.dtype.name, t.scale, t.zero_point) for t in self.info().inputs]

    def quantize(self, x) -> list:
        """The int8 arrays the device gets for input ``x`` (float or int8)."""
        import numpy as np
        tensors = self._tensors()
        out = []
        for value, (shape, dtype, scale, zero_point) in zip(_inputs_of(x, len(tensors)), tensors):
            value = np.asarray(value)
            if value.size != int(np.prod(shape)):
                raise ValueError(f"input of shape {value.shape} does not fit the model's {shape}")
            if value.dtype.kind == "f" and np.dtype(dtype).kind in "iu":
                if not scale:
                    raise ValueError("the model input is not quantized: pass integer data")
                info = np.iinfo(np.dtype(dtype))
                q = np.round(value.astype(np.float64) / scale) + zero_point
                value = np.clip(q, info.min, info.max)
            out.append(value.astype(np.dtype(dtype)).reshape(shape))
        return out

    def dequantize(self, outputs: Sequence) -> list:
        """Device or reference outputs in float (output scale and zero point)."""
        import numpy as np
        tensors = self.model.output_tensors() if self.model is not None else None
        result = []
        for k, v in enumerate(outputs):
            if tensors is not None:
                t = tensors[k]
                scale, zp = (t.scale, t.zero_point) if t.quant else (0.0, 0)
            else:
                t = self.info().outputs[k]
                scale, zp = t.scale, t.zero_point
            v = np.asarray(v)
            result.append((v.astype(np.float64) - zp) * scale if scale else v.astype(np.float64))
        return result

    def reference(self, x) -> list:
        """Outputs of the tflite_micro interpreter for the same input."""
        if self.model is None:
            pytest.fail("dut.reference() needs the model: give --tinygen-model", pytrace=False)
        if self._reference is None:
            from tinygen.reference import TflmReference
            self._reference = TflmReference(self.model.tflite)
        return self._reference.run(self.quantize(x))

    def evaluate(self, x, y, class_names: Sequence[str] | None = None,
                 float_model: bool = True):
        """Top-1 accuracy of the device, of the int8 model on the tflite_micro
        interpreter and (for a Keras/SavedModel --tinygen-model) of the float
        model, on samples ``x`` (float or int8, one per row; for several inputs
        a list of arrays) with integer labels ``y``.  Returns a
        :class:`tinygen.verify.accuracy.Accuracy`: ``.device``, ``.int8``,
        ``.float``, ``.float_vs_int8_top1``, ``.confusion`` -- so a test can
        assert a floor: ``assert dut.evaluate(x, y).device >= 0.9``."""
        import numpy as np

        from tinygen.verify.accuracy import classifier_output, measure_accuracy, top1
        if self.model is None:
            pytest.fail("dut.evaluate() needs the model: give --tinygen-model", pytrace=False)
        k = classifier_output(self.model)
        if k is None:
            pytest.fail("dut.evaluate(): the model has no int8 classifier output", pytrace=False)
        xs = list(x) if isinstance(x, (list, tuple)) else [np.asarray(x)]
        n = len(xs[0])
        rows = [[np.asarray(a[j]) for a in xs] for j in range(n)]
        rows_in = [r if len(r) > 1 else r[0] for r in rows]
        device, reference = [], []
        for row in rows_in:
            device.append(self.infer(row).outputs)
            reference.append(self.reference(row))
        float_pred = None
        if float_model and self._model_path and not str(self._model_path).endswith(".tflite"):
            from tinygen.convert import dequantize
            from tinygen.verify.device_run import run_float_model
            ins = self.model.input_tensors()
            # int8 samples stand for the float values they quantize
            floats = [[np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f"
                       else dequantize(q, t).astype(np.float32)
                       for v, q, t in zip(r, self.quantize(r if len(r) > 1 else r[0]), ins)]
                      for r in rows]
            outs = run_float_model(self._model_path, self.model, floats)
            float_pred = top1(outs, k) if outs else None
        t = self.model.output_tensors()[k]
        return measure_accuracy(np.asarray(y).reshape(-1).astype(np.int64), top1(reference, k),
                                int(np.prod(t.shape)), output=t.name,
                                device_preds={self.url: top1(device, k)}, float_pred=float_pred,
                                names=list(class_names) if class_names else None,
                                labels_from="dut.evaluate")

    def evaluate_detections(self, x, boxes, classes, count=None,
                            class_names: Sequence[str] | None = None):
        """mAP@0.5 of a detector (a model ending in TFLite_Detection_PostProcess) on
        the device and of the int8 model on the tflite_micro interpreter, on images
        ``x`` with ground truth ``boxes`` [N, G, 4] (ymin, xmin, ymax, xmax) and
        ``classes`` [N, G] (-1 pads; ``count`` [N] optional).  Returns a
        :class:`tinygen.verify.detection.DetectionAccuracy`: ``.device``, ``.int8``,
        ``.ap`` -- ``assert dut.evaluate_detections(x, b, c).device >= 0.6``."""
        import numpy as np

        from tinygen.verify.detection import (
            detection_outputs,
            detector_classes,
            measure_detection,
        )
        if self.model is None or not detection_outputs(self.model):
            pytest.fail("dut.evaluate_detections() needs a detector model (--tinygen-model "
                        "ending in TFLite_Detection_PostProcess)", pytrace=False)
        boxes, classes = np.asarray(boxes), np.asarray(classes)
        truth = []
        for i in range(len(boxes)):
            keep = classes[i] >= 0
            if count is not None:
                keep &= np.arange(classes.shape[1]) < int(np.asarray(count)[i])
            truth.append((boxes[i][keep], classes[i][keep].astype(np.int64)))
        device = [self.infer(np.asarray(img)).outputs for img in x]
        reference = [self.reference(np.asarray(img)) for img in x]
        return measure_detection(truth, reference, n_classes=detector_classes(self.model),
                                 device_outs={self.url: device},
                                 names=list(class_names) if class_names else None,
                                 truth_from="dut.evaluate_detections")

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.qemu is not None:
                self.qemu.stop()

    def __repr__(self) -> str:
        return f"<Dut {self.board.id} at {self.url}>"


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def tinygen_options(request) -> TinygenOptions:
    """The --tinygen-* options of this session."""
    return _options(request.config)


@pytest.fixture(scope="session")
def tinygen_board(tinygen_options):
    """The board under test (a tinygen.boards.Board); skips without --tinygen-board
    or --tinygen-model."""
    opts = tinygen_options
    if not (opts.board or opts.model or opts.port):
        pytest.skip("no --tinygen-board given")
    from tinygen.boards import DEFAULT_EMULATED_BOARD, get_board
    from tinygen.errors import TinygenError
    try:
        return get_board(opts.board or DEFAULT_EMULATED_BOARD)
    except TinygenError as exc:
        pytest.fail(f"--tinygen-board: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def tinygen_build(tinygen_board, tinygen_options, tmp_path_factory, request):
    """The model built for the board (a tinygen.project.build.BuildResult; the
    firmware is compiled unless --tinygen-port names an already flashed
    board); skips without --tinygen-model."""
    opts = tinygen_options
    if not opts.model:
        pytest.skip("no --tinygen-model given")
    from tinygen.errors import TinygenError
    from tinygen.project.build import build
    model = Path(opts.model)
    stem = model.stem if model.suffix else model.name
    out = Path(opts.build_dir) if opts.build_dir else \
        tmp_path_factory.mktemp("tinygen") / f"{stem}-{tinygen_board.id}"
    try:
        # With --tinygen-port or a labgrid place the board is flashed already:
        # render, do not compile.
        return build(model, tinygen_board.id, runtime=opts.runtime, calib=opts.calib, out_dir=out,
                     compile_firmware=not (opts.port or _labgrid_env(request.config)),
                     firmware="protocol")
    except TinygenError as exc:
        pytest.fail(f"tinygen build failed: {exc}", pytrace=False)


def _labgrid_env(config) -> bool:
    """labgrid's own plugin is loaded and given an environment (--lg-env or LG_ENV)."""
    import os
    return bool(getattr(config.option, "lg_env", None) or
                (hasattr(config.option, "lg_env") and os.environ.get("LG_ENV")))


def _labgrid_url(request) -> str:
    """The serial port of labgrid's ``target`` fixture (a RemotePlace the job
    acquired, or a port in the environment file)."""
    from tinygen.errors import TinygenError
    from tinygen.farm.places import serial_url_of_target
    target = request.getfixturevalue("target")
    try:
        return serial_url_of_target(target)[0]
    except TinygenError as exc:
        pytest.fail(f"--lg-env: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def dut(tinygen_board, tinygen_options, request):
    """The device under test, connected and handshaken; stopped at session end.

    Emulated boards without --tinygen-port: the firmware of ``tinygen_build``
    runs in QEMU.  With --tinygen-port: the board there (its firmware must be
    the build of --tinygen-model when one is given).  Under labgrid's plugin
    (``pytest --lg-env env.yaml``) without --tinygen-port: the serial port of
    labgrid's ``target`` (a RemotePlace acquired before the run)."""
    opts = tinygen_options
    board = tinygen_board
    build = request.getfixturevalue("tinygen_build") if opts.model else None
    ir = build.conversion.ir if build is not None else None
    from tinygen.device.protocol import DeviceClient
    from tinygen.errors import TinygenError
    qemu = None
    if opts.port:
        url = opts.port
    elif _labgrid_env(request.config):
        url = _labgrid_url(request)
    elif board.emulated:
        if build is None:
            pytest.skip("an emulated board needs --tinygen-model (or --tinygen-port)")
        if build.elf is None:
            pytest.fail(f"the build for {board.id} produced no firmware", pytrace=False)
        from tinygen.device.qemu import QemuProcess
        qemu = QemuProcess(board.qemu_machine, build.elf)
        try:
            url = qemu.start()
        except TinygenError as exc:
            pytest.fail(f"cannot start QEMU: {exc}", pytrace=False)
    else:
        pytest.skip(f"{board.id} is a real board: give its port with --tinygen-port")
    try:
        client = DeviceClient.open(url, board.baud)
        device = Dut(client, board, url, ir=ir, qemu=qemu, model_path=opts.model)
        info = device.info()
        if ir is not None:
            from tinygen.verify import check_device_matches
            check_device_matches(info, ir, board, info.runtime)
    except TinygenError as exc:
        if qemu is not None:
            qemu.stop()
        pytest.fail(f"device at {url}: {exc}", pytrace=False)
    try:
        yield device
    finally:
        device.close()
