"""The input vectors a verification runs: from --data, from --calib, or random
int8 vectors, each with the float input it stands for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..convert import dequantize, quantize
from ..data import (
    check_sample_file,
    load_boxes,
    load_labels,
    load_samples,
    random_vector_count,
    tell,
)
from ..errors import TinygenError
from ..ir import Model

DEFAULT_SAMPLES = 10


def make_vectors(ir: Model, samples: int | None, data: str | None, calib: str | None,
                 seed: int = 1234) -> list[list[np.ndarray]]:
    """int8 input vectors: from --data, else from --calib, else random."""
    return make_vector_set(ir, samples, data, calib, seed)[0]


def make_vector_set(ir: Model, samples: int | None, data: str | None, calib: str | None,
                    seed: int = 1234) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """(int8 vectors, the same vectors in float): the float ones are the
    samples as given when they were float, else the int8 ones dequantized."""
    vectors, floats, _labels = labelled_vector_set(ir, samples, data, calib, seed)
    return vectors, floats


def labelled_vector_set(ir: Model, samples: int | None, data: str | None, calib: str | None,
                        seed: int = 1234, class_names: list[str] | None = None,
                        boxes: bool = False):
    """make_vector_set, plus the labels of a --data file that holds them:
    ((labels, where they came from) or None); with ``boxes`` (a detector) the
    ground-truth boxes of each image instead of class labels."""
    ins = ir.input_tensors()
    n = samples if samples is not None else DEFAULT_SAMPLES
    if n <= 0:
        raise TinygenError("--samples must be at least 1")
    source = data or calib
    vectors, floats = [], []
    audio = _takes_audio(ir)
    frames = takes_frames(ir)
    if source:
        # --data may hold int8 vectors (any integer type within int8); --calib holds
        # what the conversion took: floats, integers converted to float, or int8 vectors.
        # A front end takes int16 audio from either.
        loaded = load_samples(Path(source), [t.shape for t in ins],
                              what="data" if data else "calibration",
                              integers=_integers(ir, "data" if data else "calibration"),
                              keep_int8=True)
        labels: tuple | None = None
        if data:
            labels = (load_boxes(Path(source), loaded) if boxes
                      else load_labels(Path(source), loaded, class_names))
        if samples is not None and samples > len(loaded):
            tell(f"--samples {samples:,}: {Path(source).name} holds {len(loaded):,} usable "
                 f"samples; verifying {len(loaded):,}")
        cut = None if data and samples is None else n
        if labels is not None and cut is not None:
            labels = (labels[0][:cut], labels[1])
        for s in loaded[:cut]:
            vec, fvec = [], []
            for x, t in zip(s, ins):
                x = np.asarray(x)
                if x.dtype == np.int8 or (audio and x.dtype == np.int16) \
                        or (frames and x.dtype == np.uint8):
                    q = x.reshape(t.shape)
                    fvec.append(dequantize(q, t).astype(np.float32) if t.quant
                                else q.astype(np.float32))
                else:
                    q = quantize(x, t)
                    fvec.append(np.asarray(x, np.float32).reshape(t.shape))
                vec.append(q)
            vectors.append(vec)
            floats.append(fvec)
        return vectors, floats, labels
    rng = np.random.default_rng(seed)
    n = random_vector_count(n, sum(int(np.prod(t.shape)) for t in ins))
    for _ in range(n):
        vec = [rng.integers(-32768, 32768, t.shape, dtype=np.int16) if t.dtype == "int16"
               else rng.integers(0, 256, t.shape, dtype=np.uint8) if t.dtype == "uint8"
               else rng.integers(-128, 128, t.shape, dtype=np.int8) for t in ins]
        vectors.append(vec)
        floats.append([dequantize(q, t).astype(np.float32) if t.quant else q.astype(np.float32)
                       for q, t in zip(vec, ins)])
    return vectors, floats, None


def takes_frames(ir: Model) -> bool:
    """A camera front end: every input is a uint8 frame, taken as the camera gives it."""
    return bool(ir.inputs) and all(t.dtype == "uint8" for t in ir.input_tensors())


def _integers(ir: Model, what: str) -> str:
    """How load_samples takes integer samples for this model's inputs."""
    if _takes_audio(ir):
        return "int16"
    if takes_frames(ir):
        return "uint8"
    return "int8" if what == "data" else "float"


def _takes_audio(ir: Model) -> bool:
    """A front end: every input is int16 audio, never quantized from floats."""
    return all(t.dtype == "int16" for t in ir.input_tensors())


def precheck_sample_files(model: str | Path, data: str | Path | None,
                          calib: str | Path | None) -> None:
    """Fail on an unusable --data/--calib file before minutes of building: unreadable,
    object or structured arrays, values that cannot be inputs, and non-finite samples
    (named precisely with the model's input shapes, read then); a .tflite's shapes
    are known now, so its files are loaded in full."""
    shapes = None
    for what, f in (("data", data), ("calibration", calib)):
        if not f:
            continue
        integers = "int8" if what == "data" else "float"
        if Path(model).suffix.lower() == ".tflite" and Path(model).exists():
            from ..load import load_ir
            ir = load_ir(model)
            load_samples(Path(f), [t.shape for t in ir.input_tensors()], what=what,
                         integers=_integers(ir, what), keep_int8=True,
                         note=lambda _m: None)
            continue
        if check_sample_file(Path(f), what, integers=integers):
            if shapes is None:
                from ..convert import model_input_shapes
                from ..load import load_model
                shapes = model_input_shapes(load_model(model))
            load_samples(Path(f), shapes, what=what, integers=integers, keep_int8=True)

