"""Load stage: a model file or directory -> a loaded source model.

Keras models (.h5, .keras), TensorFlow SavedModel directories and .tflite
flatbuffers are accepted.  TensorFlow is imported only when a Keras or
SavedModel input needs it, so .tflite work stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TinygenError
from .ir import Model, ModelFormatError, parse_tflite

KERAS_SUFFIXES = {".h5", ".hdf5", ".keras"}


@dataclass
class SourceModel:
    path: Path
    kind: str                    # "keras", "saved_model" or "tflite"
    keras_model: Any = None      # a keras.Model for kind == "keras"
    saved_model_dir: Path | None = None
    tflite: bytes | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path.suffix else self.path.name


def detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "saved_model"
        raise TinygenError(f"{path} is a directory but not a SavedModel (no saved_model.pb in it)")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix in KERAS_SUFFIXES:
        return "keras"
    raise TinygenError(
        f"{path}: unknown model format '{suffix or path.name}'; "
        "give a Keras .h5/.keras file, a SavedModel directory or a .tflite file")


def load_model(path: str | os.PathLike) -> SourceModel:
    path = Path(path)
    if not path.exists():
        raise TinygenError(f"model file {path} does not exist")
    kind = detect_kind(path)
    if kind == "tflite":
        return SourceModel(path=path, kind=kind, tflite=read_tflite(path))
    if kind == "saved_model":
        return SourceModel(path=path, kind=kind, saved_model_dir=path)
    return SourceModel(path=path, kind=kind, keras_model=_load_keras(path))


def read_tflite(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TinygenError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise TinygenError(f"{path} is empty")
    return data


def load_ir(path: str | os.PathLike) -> Model:
    """Parse a .tflite file into the IR, with a one-line error when it is unusable."""
    path = Path(path)
    if not path.exists():
        raise TinygenError(f"model file {path} does not exist")
    try:
        return parse_tflite(read_tflite(path))
    except ModelFormatError as exc:
        raise TinygenError(f"{path}: {exc}") from None


def _load_keras(path: Path):
    from . import tfenv
    keras = tfenv.keras()
    try:
        with tfenv.quiet():
            return keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py, zipfile, json and Keras all raise their own types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise TinygenError(
            f"cannot load Keras model {path}: the file is corrupt, truncated or not a Keras "
            f"model ({reason})") from None
