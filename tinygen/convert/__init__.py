"""Convert stage: a Keras/SavedModel model -> full-integer int8 .tflite + quantization report.

Full integer means int8 input and output tensors and TFLITE_BUILTINS_INT8 only,
which is what both TFLM on a microcontroller and tinygen's aot runtime expect.
The model is traced with a fixed batch of 1: a dynamic batch makes the
converter emit SHAPE/STRIDED_SLICE/PACK ops around every Flatten.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import load_samples  # noqa: F401  (callers import it from here)
from ..errors import TinygenError
from ..ir import Model, parse_tflite
from ..ir.signal_ops import (
    FRONTEND_INPUT_DTYPES,
    FRONTEND_OUTPUT_DTYPES,
    is_frontend,
    is_image_frontend,
)
from ..load import SourceModel

MAX_REPORT_SAMPLES = 200
SYNTHETIC_SAMPLES = 64

# Ops allowed to carry float tensors in a "full int8" model.
_FLOAT_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass
class OutputQuality:
    name: str
    cosine: float
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None     # classifiers only


@dataclass
class QuantizationReport:
    model: str
    samples: int
    calibration: str                  # file name, or "synthetic"
    synthetic_calibration: bool
    outputs: list[OutputQuality] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Which Keras wrote the model file (h5 attribute keras_version / backend,
    # SavedModel keras_metadata.pb), and which library loaded it here.
    keras_version: str | None = None
    keras_backend: str | None = None
    loader: str | None = None
    calibration_samples_dropped: int = 0     # non-finite samples skipped (--drop-nonfinite)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        lines = [f"Quantization report for {self.model} "
                 f"({self.samples} samples, calibration: {self.calibration})"]
        if self.loader:
            written = (f", written by Keras {self.keras_version}" if self.keras_version
                       else "")
            lines.append(f"  loaded with {self.loader}{written}")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        for o in self.outputs:
            top1 = "" if o.top1_agreement is None else f"  top-1 agreement {o.top1_agreement:.1%}"
            lines.append(f"  {o.name}: cosine {o.cosine:.5f}  max |err| {o.max_abs_error:.4g}"
                         f"  mean |err| {o.mean_abs_error:.4g}{top1}")
        return "\n".join(lines)


@dataclass
class ConversionResult:
    tflite: bytes
    ir: Model
    report: QuantizationReport | None
    source: str


# ---------------------------------------------------------------------------
# calibration data (read and checked in data.py; load_samples stays importable from here)


def synthetic_samples(input_shapes, input_dtypes=None, n=SYNTHETIC_SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal((1,) + tuple(s[1:])).astype(np.float32) for s in input_shapes]
            for _ in range(n)]


# ---------------------------------------------------------------------------
# conversion


def convert(source: SourceModel, calib: Path | None = None,
            progress: Callable[[str], None] | None = None,
            detection: Path | None = None) -> ConversionResult:
    """Quantize to full int8.  `detection` names a JSON file describing SSD
    post-processing (anchors and TFLite_Detection_PostProcess options) to
    append to a detector's raw box/class outputs; see load_detection_spec."""
    note = progress or (lambda _msg: None)
    if source.kind == "tflite":
        ir = parse_checked(source.tflite, str(source.path))
        check_full_int8(ir, str(source.path))
        return ConversionResult(tflite=source.tflite, ir=ir, report=None, source="tflite")

    if calib is not None:
        # Unreadable or object-array files fail here, before TensorFlow is imported.
        from ..data import check_sample_file
        check_sample_file(calib)
    from .. import tfenv
    tf = tfenv.tf()
    if detection is not None:
        return _convert_detector(source, calib, Path(detection), note, tf)
    fn, input_shapes, input_names, float_model = traceable_float_model(source, tf)

    samples = load_samples(calib, input_shapes)
    warnings = []
    if samples is None:
        msg = ("no calibration data given (--calib): quantized with synthetic random inputs; "
               "int8 accuracy will likely be poor. Pass real samples as .npy/.npz")
        warnings.append(msg)
        samples = synthetic_samples(input_shapes)
        calib_name = "synthetic"
    else:
        calib_name = Path(calib).name

    def representative():
        for s in samples:
            yield [x.astype(np.float32) for x in s]

    note(f"converting to int8 with {len(samples)} calibration samples")
    concrete = fn.get_concrete_function()
    if source.kind == "keras":
        from . import keras_compat
        # The route that keeps fused LSTMs and freezes Keras 3 variables.
        conv = keras_compat.tflite_converter(float_model, concrete_function=concrete)
    else:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with tfenv.quiet():
            tflite = conv.convert()
    except Exception as exc:  # the converter raises many types, all with long texts
        raise TinygenError(f"the TFLite converter failed: {_converter_reason(exc)}") from None
    ir = parse_checked(tflite, source.name)
    check_full_int8(ir, source.name)

    note("measuring quantization error")
    report = quantization_report(ir, fn, samples[:MAX_REPORT_SAMPLES], source.name, calib_name)
    report.warnings[:0] = warnings
    _describe_source(report, source, samples)
    return ConversionResult(tflite=tflite, ir=ir, report=report, source=source.kind)


def _describe_source(report: QuantizationReport, source: SourceModel, samples) -> None:
    report.keras_version = source.keras_version
    report.keras_backend = source.keras_backend
    report.loader = source.loader
    report.calibration_samples_dropped = getattr(samples, "dropped", 0)


def load_detection_spec(path: Path):
    """A JSON file: {"anchors": "anchors.npy", "num_classes": 3, ...DetectionOptions fields}.
    The anchors path is relative to the JSON file."""
    from . import ssd_postprocess as sp
    if not path.exists():
        raise TinygenError(f"detection post-processing file {path} does not exist")
    try:
        spec = json.loads(path.read_text())
        anchors_file = path.parent / spec.pop("anchors")
        outputs = tuple(spec.pop("outputs", (0, 1)))
        anchors = np.load(anchors_file).astype(np.float32)
        opts = sp.DetectionOptions(**spec)
    except (json.JSONDecodeError, KeyError, TypeError, OSError, ValueError) as exc:
        raise TinygenError(f"detection post-processing file {path}: {exc}") from None
    return anchors, opts, outputs


def _convert_detector(source: SourceModel, calib: Path | None, spec_path: Path, note, tf):
    """An SSD-style Keras detector + TFLite_Detection_PostProcess, int8 except the op."""
    from .. import tfenv
    from . import ssd_postprocess as sp
    if source.kind != "keras":
        raise TinygenError("--detection needs the Keras detector (.h5/.keras), not "
                           f"a {source.kind}")
    anchors, opts, outputs = load_detection_spec(spec_path)
    model = source.keras_model
    shapes = [(1,) + tuple(int(d) for d in t.shape[1:]) for t in model.inputs]
    samples = load_samples(calib, shapes)
    warnings = []
    if samples is None:
        warnings.append("no calibration data given (--calib): quantized with synthetic random "
                        "inputs; int8 accuracy will likely be poor. Pass real samples as .npy")
        samples = synthetic_samples(shapes)
    note(f"converting the detector to int8 with {len(samples)} calibration samples")
    try:
        conv = sp.tflite_converter(model, anchors, opts, outputs)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x.astype(np.float32) for x in s] for s in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.float32
        with tfenv.quiet():
            tflite = sp.finalize(conv.convert(), opts)
    except sp.SSDError as exc:
        raise TinygenError(f"detection post-processing: {exc}") from None
    except Exception as exc:  # converter errors
        raise TinygenError(f"the TFLite converter failed: {_converter_reason(exc)}") from None
    ir = parse_checked(tflite, source.name)
    check_full_int8(ir, source.name)
    note("measuring detection agreement float vs int8")
    report = _detection_report(ir, model, anchors, opts, outputs, samples[:MAX_REPORT_SAMPLES],
                               source.name, Path(calib).name if calib else "synthetic")
    report.warnings[:0] = warnings
    _describe_source(report, source, samples)
    return ConversionResult(tflite=tflite, ir=ir, report=report, source="keras")


def _detection_report(ir, model, anchors, opts, outputs, samples, name, calib_name):
    """Float Keras heads + NumPy post-processing vs the int8 model on TFLM: compared
    on the first min(count) detections (rows past count are undefined)."""
    from ..reference import TflmReference
    from . import ssd_postprocess as sp
    ref = TflmReference(ir.tflite)
    tin = ir.input_tensors()[0]
    box_err, same_class, same_count = [], [], []
    for (x,) in samples:
        heads = model(x, training=False)
        heads = heads if isinstance(heads, (list, tuple)) else [heads]
        fb, fc, fs, fn = sp.reference_postprocess(np.asarray(heads[outputs[0]]),
                                                  np.asarray(heads[outputs[1]]), anchors, opts)
        qb, qc, qs, qn = ref.run([quantize(x, tin)])
        n = int(min(np.asarray(fn).reshape(-1)[0], np.asarray(qn).reshape(-1)[0]))
        same_count.append(int(np.asarray(fn).reshape(-1)[0]) == int(np.asarray(qn).reshape(-1)[0]))
        if n:
            box_err.append(np.abs(np.asarray(fb).reshape(-1, 4)[:n]
                                  - np.asarray(qb).reshape(-1, 4)[:n]).max())
            same_class.append(float(np.mean(np.asarray(fc).reshape(-1)[:n]
                                            == np.asarray(qc).reshape(-1)[:n])))
    report = QuantizationReport(model=name, samples=len(samples), calibration=calib_name,
                                synthetic_calibration=calib_name == "synthetic")
    report.outputs.append(OutputQuality(
        name="detections", cosine=float("nan"),
        max_abs_error=float(max(box_err)) if box_err else 0.0,
        mean_abs_error=float(np.mean(box_err)) if box_err else 0.0,
        top1_agreement=float(np.mean(same_class)) if same_class else None))
    report.warnings.append(f"detection count equal on {np.mean(same_count):.0%} of samples; "
                           "max_abs_error is the largest box-corner difference of matched rows, "
                           "top1_agreement the class agreement")
    return report


def model_input_shapes(source: SourceModel) -> list[tuple]:
    """The model's input shapes with a batch of 1, as load_samples takes them (unknown
    dimensions stay None; the conversion refuses them with its own message)."""
    if source.kind == "tflite":
        return [tuple(t.shape) for t in parse_checked(source.tflite, str(source.path)).input_tensors()]
    from .. import tfenv
    tf = tfenv.tf()
    if source.kind == "keras":
        return [(1,) + tuple(t.shape[1:]) for t in source.keras_model.inputs]
    with tfenv.quiet():
        sig = tf.saved_model.load(str(source.saved_model_dir)).signatures.get("serving_default")
    if sig is None:
        raise TinygenError(f"SavedModel {source.path} has no serving_default signature")
    return [(1,) + tuple(spec.shape[1:])
            for _name, spec in sorted(sig.structured_input_signature[1].items())]


def traceable_float_model(source: SourceModel, tf):
    """A tf.function with a fixed batch-1 signature, plus what the converter needs."""
    if source.kind == "keras":
        model = source.keras_model
        model_for_conversion = model
        from . import keras_compat
        if keras_compat.needs_legacy_conversion(model):
            try:
                model_for_conversion = keras_compat.to_tf_keras(model)
            except keras_compat.TranslationError as exc:
                raise TinygenError(str(exc)) from None
        shapes = [tuple(t.shape) for t in model_for_conversion.inputs]
        names = [getattr(t, "name", f"input_{i}") for i, t in enumerate(model_for_conversion.inputs)]
        for s, n in zip(shapes, names):
            if any(d is None for d in s[1:]):
                raise TinygenError(
                    f"model input '{n}' has an unknown dimension {list(s)}; firmware needs a "
                    "fixed input shape (set it in the Keras Input layer)")
        shapes = [(1,) + tuple(int(d) for d in s[1:]) for s in shapes]
        specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
        m = model_for_conversion
        if len(specs) == 1:
            fn = tf.function(lambda x: m(x, training=False), input_signature=specs)
        else:
            fn = tf.function(lambda *xs: m(list(xs), training=False), input_signature=specs)
        return fn, shapes, names, m

    loaded = tf.saved_model.load(str(source.saved_model_dir))
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        raise TinygenError(f"SavedModel {source.path} has no serving_default signature")
    spec_items = sorted(sig.structured_input_signature[1].items())
    shapes, names, specs = [], [], []
    for name, spec in spec_items:
        dims = list(spec.shape)
        if any(d is None for d in dims[1:]):
            raise TinygenError(f"SavedModel input '{name}' has an unknown dimension {dims}")
        shape = (1,) + tuple(int(d) for d in dims[1:])
        shapes.append(shape)
        names.append(name)
        specs.append(tf.TensorSpec(shape, tf.float32, name=name))

    def call(*xs):
        out = sig(**{n: x for n, x in zip(names, xs)})
        return [out[k] for k in sorted(out)] if len(out) > 1 else next(iter(out.values()))

    fn = tf.function(call, input_signature=specs)
    return fn, shapes, names, loaded


def _converter_reason(exc: Exception) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


def parse_checked(tflite: bytes, what: str) -> Model:
    """The IR of a model inspect, build and verify may use: readable and consistent."""
    from ..ir import ModelFormatError
    from ..ir.consistency import check_consistency
    try:
        ir = parse_tflite(tflite)
        check_consistency(ir)
        return ir
    except ModelFormatError as exc:
        raise TinygenError(f"{what}: {exc}") from None


def check_full_int8(ir: Model, what: str) -> None:
    """Refuse float or mixed models: firmware needs int8 inputs, outputs and ops."""
    if is_frontend(ir):
        check_frontend(ir, what)
        return
    if is_image_frontend(ir):
        _check_integer_compute(ir, what, "tinygen takes integer image front ends only")
        return
    # Post-processing custom ops (SSD's TFLite_Detection_PostProcess) produce float
    # boxes and scores by design; their outputs are model outputs, not compute.
    custom_outputs = {i for op in ir.operators if op.is_custom for i in op.outputs}
    for t in ir.input_tensors() + ir.output_tensors():
        if t.dtype != "int8" and t.index not in custom_outputs:
            role = "input" if t.index in ir.inputs else "output"
            raise TinygenError(
                f"{what} is not a full-int8 model: {role} '{t.name}' is {t.dtype}; "
                "give tinygen the Keras model (it quantizes it) or a full-integer int8 .tflite")
    for op in ir.operators:
        if op.opcode in _FLOAT_EDGE_OPS or op.is_custom:
            continue
        for ti in op.inputs + op.outputs:
            if ti >= 0 and ir.tensors[ti].dtype in ("float32", "float16") \
                    and not ir.tensors[ti].is_variable:
                raise TinygenError(
                    f"{what} is not a full-int8 model: {op.describe()} computes in float "
                    f"(tensor '{ir.tensors[ti].name}'); quantize it to int8 first")


def check_frontend(ir: Model, what: str) -> None:
    """A signal-op front end: int16 audio in, int8 (or int16) features out; the
    ops between compute in integers of other widths by design, not in float."""
    for t in ir.input_tensors():
        if t.dtype not in FRONTEND_INPUT_DTYPES:
            raise TinygenError(
                f"{what} is a front end (signal ops) but its input '{t.name}' is {t.dtype}; "
                "a front end takes int16 audio samples")
    for t in ir.output_tensors():
        if t.dtype not in FRONTEND_OUTPUT_DTYPES:
            raise TinygenError(
                f"{what} is a front end (signal ops) but its output '{t.name}' is {t.dtype}; "
                "tinygen takes int8 or int16 features")
    _check_integer_compute(ir, what, "tinygen takes integer front ends only")


def _check_integer_compute(ir: Model, what: str, advice: str) -> None:
    for op in ir.operators:
        if op.is_custom:
            continue
        for ti in op.inputs + op.outputs:
            if ti >= 0 and ir.tensors[ti].dtype in ("float32", "float16"):
                raise TinygenError(
                    f"{what}: {op.describe()} computes in float (tensor "
                    f"'{ir.tensors[ti].name}'); {advice}")


# ---------------------------------------------------------------------------
# quantization report


def quantization_report(ir: Model, fn, samples, model_name: str, calib_name: str
                        ) -> QuantizationReport:
    from ..reference import TflmReference
    ref = TflmReference(ir.tflite)
    ins = ir.input_tensors()
    outs = ir.output_tensors()
    float_outs: list[list[np.ndarray]] = [[] for _ in outs]
    int8_outs: list[list[np.ndarray]] = [[] for _ in outs]
    stateful = any(op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in ir.operators)
    for sample in samples:
        f = fn(*[x.astype(np.float32) for x in sample])
        f = f if isinstance(f, (list, tuple)) else [f]
        q_in = [quantize(x, t) for x, t in zip(sample, ins)]
        if stateful:
            ref.reset()
        q = ref.run(q_in)
        for k, t in enumerate(outs):
            float_outs[k].append(np.asarray(f[k]).reshape(t.shape))
            int8_outs[k].append(dequantize(q[k], t))
    report = QuantizationReport(model=model_name, samples=len(samples), calibration=calib_name,
                                synthetic_calibration=calib_name == "synthetic")
    for k, t in enumerate(outs):
        a = np.stack(float_outs[k]).astype(np.float64)
        b = np.stack(int8_outs[k]).astype(np.float64)
        report.outputs.append(OutputQuality(
            name=t.name, cosine=cosine(a, b),
            max_abs_error=float(np.max(np.abs(a - b))),
            mean_abs_error=float(np.mean(np.abs(a - b))),
            top1_agreement=top1_agreement(a, b, t.shape)))
    return report


def quantize(x: np.ndarray, t) -> np.ndarray:
    q = np.round(np.asarray(x, np.float64) / t.scale) + t.zero_point
    return np.clip(q, -128, 127).astype(np.int8).reshape(t.shape)


def dequantize(q: np.ndarray, t) -> np.ndarray:
    return (np.asarray(q, np.float64) - t.zero_point) * t.scale


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def is_classifier_shape(shape) -> bool:
    return len(shape) == 2 and shape[-1] > 1


def top1_agreement(a: np.ndarray, b: np.ndarray, shape) -> float | None:
    if not is_classifier_shape(shape):
        return None
    a2 = a.reshape(a.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    return float(np.mean(np.argmax(a2, axis=1) == np.argmax(b2, axis=1)))
