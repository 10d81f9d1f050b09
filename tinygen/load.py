"""Load stage: a model file or directory -> a loaded source model.

Keras models (.h5, .keras), TensorFlow SavedModel directories and .tflite
flatbuffers are accepted.  TensorFlow is imported only when a Keras or
SavedModel input needs it, so .tflite work stays fast.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
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
    keras_version: str | None = None     # the Keras that wrote the file, as the file says
    keras_backend: str | None = None
    loader: str | None = None            # what loaded it here: "keras 3.x", "tf_keras 2.x", ...

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
        return SourceModel(path=path, kind=kind, tflite=read_tflite(path), loader="tflite")
    if kind == "saved_model":
        return _load_saved_model(path)
    found = keras_file_info(path)
    model, loader = _load_keras(path, found)
    return SourceModel(path=path, kind=kind, keras_model=model, loader=loader,
                       keras_version=found.keras_version, keras_backend=found.backend)


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


# ---------------------------------------------------------------------------
# Keras files: which Keras wrote them, and which Keras loads them
#
# Keras 3 refuses many files written by Keras 2.x (the .h5 files of most
# tutorials and model zoos): layer configs carry keys it no longer accepts
# (DepthwiseConv2D's `groups`, ...).  tf_keras is Keras 2 and loads them as
# they were written, so a file written by Keras 2 is loaded with tf_keras and
# converts as it did under Keras 2 (convert.py takes tf_keras models as they
# are).  Keras 3 is the fallback for it, and the first choice for the rest.


@dataclass
class KerasFileInfo:
    is_keras: bool                 # a well-formed file that holds a Keras model
    problem: str = ""              # why not, for the one-line error
    keras_version: str | None = None
    backend: str | None = None

    @property
    def written_by_keras2(self) -> bool:
        return bool(self.keras_version) and self.keras_version.split(".")[0] in ("1", "2")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def keras_file_info(path: Path) -> KerasFileInfo:
    """Look inside a .h5/.keras file without Keras: is it a Keras model, and from which Keras."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        import h5py
        try:
            with h5py.File(path, "r") as h5:
                attrs = dict(h5.attrs)
        except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError... for damage
            return KerasFileInfo(False, _first_line(exc))
        if "model_config" not in attrs:
            return KerasFileInfo(False, "an HDF5 file without a model_config (weights only?)")
        return KerasFileInfo(True, keras_version=_text(attrs.get("keras_version")),
                             backend=_text(attrs.get("backend")))
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                if "config.json" not in names:
                    return KerasFileInfo(False, "a zip file without config.json")
                meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            return KerasFileInfo(False, _first_line(exc))
        return KerasFileInfo(True, keras_version=_text(meta.get("keras_version")))
    return KerasFileInfo(False, "neither an HDF5 (.h5) nor a zip (.keras) file")


def _first_line(exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _keras3_loader():
    from . import tfenv
    keras = tfenv.keras()
    return f"keras {keras.__version__}", lambda p: keras.models.load_model(p, compile=False)


def _tf_keras_loader():
    from . import tfenv
    tfenv.tf()
    import tf_keras
    return f"tf_keras {tf_keras.__version__}", lambda p: tf_keras.models.load_model(p, compile=False)


def _load_keras(path: Path, found: KerasFileInfo | None = None):
    """(model, loader name): Keras 2 files through tf_keras first, others through Keras 3."""
    from . import tfenv
    found = found or keras_file_info(path)
    if not found.is_keras:
        raise TinygenError(
            f"cannot load Keras model {path}: the file is corrupt, truncated or not a Keras "
            f"model ({found.problem})")
    order = [_tf_keras_loader, _keras3_loader] if found.written_by_keras2 else \
        [_keras3_loader, _tf_keras_loader]
    reasons = []
    for make in order:
        try:
            name, load = make()
        except ImportError:        # tf_keras is a dependency, but be plain if it is gone
            continue
        try:
            with tfenv.quiet():
                return load(path), name
        except Exception as exc:  # h5py, zipfile, json and Keras all raise their own types
            reasons.append(f"{name.split()[0]}: {_first_line(exc)}")
    written = f"written by Keras {found.keras_version}" if found.keras_version else \
        "a Keras model file"
    # The first loader tried is the one for the Keras that wrote the file: its reason counts.
    raise TinygenError(f"cannot load Keras model {path} ({written}): neither Keras 3 nor tf_keras "
                       f"could rebuild it ({reasons[0] if reasons else 'no Keras installed'}); "
                       "a model with custom layers needs their code: export it as a SavedModel "
                       "or .tflite where that code runs, and give tinygen that")


def _load_saved_model(path: Path) -> SourceModel:
    """A SavedModel directory.  One written by Keras 2 (keras_metadata.pb beside it) is
    loaded as the Keras model it is, with tf_keras; any other, or one tf_keras cannot
    revive, is converted from its serving signature."""
    meta_file = path / "keras_metadata.pb"
    if meta_file.exists():
        meta = meta_file.read_bytes()[:1 << 20]
        version = re.search(rb'"keras_version": "([^"]{1,40})"', meta)
        backend = re.search(rb'"backend": "([^"]{1,40})"', meta)
        version_text = version.group(1).decode("ascii", "replace") if version else None
        backend_text = backend.group(1).decode("ascii", "replace") if backend else None
        try:
            name, load = _tf_keras_loader()
            from . import tfenv
            with tfenv.quiet():
                model = load(path)
        except Exception:  # custom objects, a TF-only graph...: the signature route still works
            return SourceModel(path=path, kind="saved_model", saved_model_dir=path,
                               loader="tf.saved_model", keras_version=version_text,
                               keras_backend=backend_text)
        return SourceModel(path=path, kind="keras", keras_model=model, saved_model_dir=path,
                           loader=name, keras_version=version_text, keras_backend=backend_text)
    return SourceModel(path=path, kind="saved_model", saved_model_dir=path,
                       loader="tf.saved_model")
