"""Sample files (--calib, --data): .npy/.npz -> per-sample input arrays, checked.

Data comes from users' own pipelines, so every way a NumPy file can be unfit
for a model ends here in one line naming the file and what to do, before any
conversion starts: the TFLite calibrator segfaults on one +Inf and turns NaN
into a report that says "cosine nan", so non-finite samples are refused (or
dropped, when the user asks for it with --drop-nonfinite).  Dtypes other than
the one the model takes are converted with a note when the meaning is
unambiguous, refused otherwise.

The CLI sets the policy (drop or refuse non-finite samples, where notes go)
once per command with :func:`sample_policy`; every loader below follows it,
however deep in the pipeline it runs (convert called from build, verify).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import TinygenError

# Keys that name the inputs in a .npz also holding labels (x/y, inputs/labels).
INPUT_KEYS = ("x", "inputs", "calib", "data")

DROP_FLAG = "--drop-nonfinite"


@dataclass(frozen=True)
class SamplePolicy:
    drop_nonfinite: bool = False
    note: Callable[[str], None] | None = None     # None: "tinygen: warning: ..." on stderr


_POLICY: contextvars.ContextVar[SamplePolicy | None] = contextvars.ContextVar(
    "tinygen_sample_policy", default=None)


@contextlib.contextmanager
def sample_policy(drop_nonfinite: bool = False,
                  note: Callable[[str], None] | None = None) -> Iterator[SamplePolicy]:
    policy = SamplePolicy(drop_nonfinite=drop_nonfinite, note=note)
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def current_policy() -> SamplePolicy:
    return _POLICY.get() or SamplePolicy()


def tell(message: str, note: Callable[[str], None] | None = None) -> None:
    """A note the user must see (data converted, dropped or cut): to the policy's sink."""
    sink = note or current_policy().note
    if sink is not None:
        sink(message)
    else:
        print(f"tinygen: warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# reading


def _unreadable(what: str, path: Path, exc: BaseException) -> TinygenError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Object arrays cannot be loaded" in text:
        return TinygenError(
            f"{what} file {path} holds Python objects (an array of dtype object), which tinygen "
            "does not unpickle; save numeric arrays, e.g. np.save(f, np.asarray(x, np.float32))")
    return TinygenError(f"{what} file {path} is not a readable NumPy .npy/.npz file "
                        f"({text.split('. ')[0][:160]})")


# What a damaged file can raise from inside np.load or an NpzFile member read
# (the .npy header is a Python literal parsed with tokenize/ast; zipfile raises
# RuntimeError for a member whose encryption flag is set).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                KeyError, TypeError, OverflowError, MemoryError, NotImplementedError,
                SyntaxError, tokenize.TokenError, RecursionError, RuntimeError)


def read_arrays(path: Path, what: str = "calibration",
                n_inputs: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The arrays of a .npy/.npz that feed the model, as (label, array), in input order.

    A .npz holds one array per input, in order; with one input and several
    arrays, the one named x / inputs / calib / data is taken (the others are
    labels).  ``n_inputs`` None (model not known yet) applies the same rule.
    """
    path = Path(path)
    if not path.exists():
        raise TinygenError(f"{what} file {path} does not exist")
    if path.is_dir():
        if what != "data":
            raise TinygenError(f"{what} file {path} is a directory; give a .npy or .npz file")
        parts = [_check_kind(_load_npy(f, what), what, f, "input 0")
                 for _, f in class_folder(path)]
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1 or any(p.ndim == 0 for p in parts):
            raise TinygenError(f"data folder {path}: the class files hold samples of different "
                               f"shapes ({', '.join(str(list(s)) for s in sorted(shapes))}); "
                               "each file is [samples, ...input shape]")
        return [("input 0", np.concatenate(parts))]
    try:
        loaded = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise _unreadable(what, path, exc) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        if not isinstance(loaded, np.ndarray):
            raise TinygenError(f"{what} file {path} is not a NumPy .npy/.npz file")
        return [("input 0", _check_kind(loaded, what, path, "input 0"))]
    with loaded:
        keys = list(loaded.files)
        if not keys:
            raise TinygenError(f"{what} file {path} is an empty .npz (no arrays in it)")
        named = [k for k in INPUT_KEYS if k in keys]
        if (n_inputs in (None, 1)) and len(keys) > 1 and named:
            keys = named[:1]        # e.g. test.npz holding x (inputs) and y (labels)
        out = []
        for i, k in enumerate(keys):
            label = f"input {i} (array '{k}')"
            try:
                arr = loaded[k]
            except _READ_ERRORS as exc:
                err = _unreadable(what, path, exc)
                raise TinygenError(str(err).replace(f"file {path}", f"file {path}, {label},", 1)
                                   ) from None
            if not isinstance(arr, np.ndarray):
                # NpzFile returns the raw bytes of a member that is not a .npy file
                raise TinygenError(f"{what} file {path}, {label}, is not a NumPy array (every "
                                   "member of a .npz must be a .npy, as np.savez writes them)")
            out.append((label, _check_kind(arr, what, path, label)))
    return out


def _check_kind(arr: np.ndarray, what: str, path: Path, label: str) -> np.ndarray:
    """Refuse arrays whose values cannot be model inputs, in one line."""
    where = f"{what} file {path}, {label}"
    if arr.dtype.names is not None:
        fields = ", ".join(arr.dtype.names[:6])
        raise TinygenError(f"{where} is a structured array (fields {fields}); save one plain "
                           "numeric array per model input (float32, or int8 already quantized)")
    if arr.dtype.kind not in "fiub":
        raise TinygenError(f"{where} holds {arr.dtype} values; expected numbers: float32 "
                           "samples (or int8 values already quantized)")
    if arr.size == 0:
        raise TinygenError(f"{what} file {path} holds no samples ({label} has shape "
                           f"{list(arr.shape)})")
    return arr


# ---------------------------------------------------------------------------
# non-finite values


def _bad_rows(arr: np.ndarray) -> np.ndarray:
    """Per sample (axis 0): True where the sample holds NaN or +-Inf."""
    if arr.dtype.kind != "f":
        return np.zeros(arr.shape[0], bool)
    return ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)


def _kinds(values: np.ndarray) -> str:
    v = values.reshape(-1)
    found = [name for name, mask in (("NaN", np.isnan(v)), ("+Inf", np.isposinf(v)),
                                     ("-Inf", np.isneginf(v))) if mask.any()]
    return "/".join(found)


def _nonfinite_error(what: str, path: Path, labels: Sequence[str],
                     per_input_bad: Sequence[np.ndarray], arrays: Sequence[np.ndarray],
                     n: int) -> TinygenError:
    bad = np.logical_or.reduce(per_input_bad)
    first = int(np.argmax(bad))
    k = next(i for i, b in enumerate(per_input_bad) if b[first])
    count = int(bad.sum())
    return TinygenError(
        f"{what} file {path}: {count} of {n} samples hold non-finite values (the first is "
        f"sample {first}, {labels[k]}: {_kinds(arrays[k][first])}); remove them, or pass "
        f"{DROP_FLAG} to skip such samples")


# ---------------------------------------------------------------------------
# dtypes


def _as_model_dtype(arr: np.ndarray, what: str, path: Path, label: str, integers: str,
                    keep_int8: bool, note) -> np.ndarray:
    """float32 for a float input; int8 kept (or made) for quantized inputs, see load_samples."""
    kind, name = arr.dtype.kind, str(arr.dtype)
    where = f"{what} file {path}, {label}"
    if integers == "uint8":
        # camera frames for an image front end's uint8 input: taken as they are
        if arr.dtype.kind not in "iu" or (arr.size and (int(arr.min()) < 0
                                                        or int(arr.max()) > 255)):
            raise TinygenError(f"{where} holds {name} values; the model's input is a uint8 "
                               "camera frame: give uint8 pixels (bytes as the camera gives them)")
        return arr.astype(np.uint8, copy=False)
    if integers == "int16":
        # audio samples for a front end's int16 input: taken as they are
        if arr.dtype.kind not in "iu" or (arr.size and (int(arr.min()) < -32768
                                                        or int(arr.max()) > 32767)):
            raise TinygenError(f"{where} holds {name} values; the model's input is int16 "
                               "audio: give int16 samples")
        return arr.astype(np.int16, copy=False)
    if kind == "f":
        if arr.dtype.itemsize > 4:
            finite = np.isfinite(arr)
            big = finite & (np.abs(np.where(finite, arr, 0)) > np.finfo(np.float32).max)
            if big.any():
                raise TinygenError(f"{where} is {name} with values beyond the float32 range "
                                   f"(up to {np.abs(arr[big]).max():.3g}); the model takes "
                                   "float32: scale the data")
            tell(f"{where} is {name}: converted to float32, the model's input type", note)
        return arr.astype(np.float32, copy=False)
    if arr.dtype == np.int8 and (keep_int8 or integers == "int8"):
        return arr
    if integers == "float" or kind in "ub":
        # quantized samples are int8 by definition; uint8 (camera pixels) and bool are real values
        tell(f"{where} holds {name} values: converted to float32 (the model's float input)",
              note)
        return arr.astype(np.float32)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < -128 or hi > 127:
        raise TinygenError(
            f"{where} holds {name} values in [{lo}, {hi}], outside int8 [-128, 127]; give "
            "float32 samples (tinygen quantizes them) or int8 values already quantized")
    tell(f"{where} holds {name} values within [-128, 127]: taken as int8 quantized inputs "
          "(save float32 if they are real-valued samples)", note)
    return arr.astype(np.int8)


# ---------------------------------------------------------------------------
# the loader


class Samples(list):
    """load_samples' result: a list of samples, plus how many the file held and
    how many were dropped for non-finite values."""

    def __init__(self, samples, total: int, dropped: int = 0, kept: np.ndarray | None = None):
        super().__init__(samples)
        self.total = total
        self.dropped = dropped
        # Which of the file's samples survived --drop-nonfinite: labels must drop the same.
        self.kept = kept


def load_samples(path: Path | str | None, input_shapes: Sequence[Sequence[int]],
                 what: str = "calibration", *, integers: str = "float",
                 keep_int8: bool = False, drop_nonfinite: bool | None = None,
                 note: Callable[[str], None] | None = None) -> Samples | None:
    """Read samples for every model input from a .npy/.npz file.

    Shapes accepted per input: (N, *shape) or one sample (*shape), where shape is
    the model's input shape without its batch dimension (a same-size flat
    sample is reshaped).  Returns one list per sample, one (1, *shape) array
    per input.

    Dtypes: floats come back as float32 (float64 with a note).  Integer arrays
    depend on what the caller feeds: ``integers="float"`` (calibrating the
    float model) converts them to float32 with a note, int8 too unless
    ``keep_int8``; ``integers="int8"`` (test vectors for the int8 model) keeps
    int8 as quantized values and takes other integers as such only when they
    fit in int8, refusing them otherwise.

    Samples holding NaN or +-Inf are an error naming the file, the first such
    sample and their count; with ``drop_nonfinite`` (default: the CLI's
    --drop-nonfinite, see sample_policy) they are dropped with a note.
    """
    if path is None:
        return None
    path = Path(path)
    drop = current_policy().drop_nonfinite if drop_nonfinite is None else drop_nonfinite
    named = read_arrays(path, what, n_inputs=len(input_shapes))
    if len(named) != len(input_shapes):
        raise TinygenError(
            f"{what} file {path} holds {len(named)} arrays but the model has "
            f"{len(input_shapes)} inputs")
    labels = [label for label, _ in named]
    per_input = []
    for (label, arr), shape in zip(named, input_shapes):
        if any(d is None for d in shape[1:]):
            raise TinygenError(f"model {label.split(' (')[0]} has an unknown dimension "
                               f"{list(shape)}; firmware needs a fixed input shape (set it in "
                               "the Keras Input layer)")
        sample_shape = tuple(int(d) for d in shape[1:])
        if tuple(arr.shape) == sample_shape:
            arr = arr[None]
        elif tuple(arr.shape[1:]) != sample_shape:
            if arr.ndim >= 1 and int(np.prod(arr.shape[1:])) == int(np.prod(sample_shape)):
                arr = arr.reshape((arr.shape[0],) + sample_shape)
            else:
                raise TinygenError(
                    f"{what} file {path}: {label} has shape {list(arr.shape)}, expected "
                    f"[N, {', '.join(map(str, sample_shape))}]")
        per_input.append(arr)
    counts = [a.shape[0] for a in per_input]
    n = min(counts)
    if len(set(counts)) > 1:
        tell(f"{what} file {path}: the inputs hold different numbers of samples "
              f"({', '.join(map(str, counts))}); using the first {n}", note)
        per_input = [a[:n] for a in per_input]

    bad = [_bad_rows(a) for a in per_input]
    n_bad = int(np.logical_or.reduce(bad).sum())
    if n_bad:
        if not drop:
            raise _nonfinite_error(what, path, labels, bad, per_input, n)
        if n_bad == n:
            raise TinygenError(f"{what} file {path}: all {n} samples hold non-finite values "
                               "(NaN or +-Inf); nothing is left after dropping them")
        keep = ~np.logical_or.reduce(bad)
        per_input = [a[keep] for a in per_input]
        tell(f"{what} file {path}: dropped {n_bad} of {n} samples holding NaN or +-Inf "
              f"({DROP_FLAG}); {n - n_bad} remain", note)

    per_input = [_as_model_dtype(a, what, path, label, integers, keep_int8, note)
                 for a, label in zip(per_input, labels)]
    return Samples([[a[j:j + 1] for a in per_input] for j in range(n - n_bad)],
                   total=n, dropped=n_bad if drop else 0,
                   kept=~np.logical_or.reduce(bad) if n_bad else None)


def check_sample_file(path: Path | str, what: str = "calibration", *, integers: str = "float",
                      drop_nonfinite: bool | None = None) -> bool:
    """Cheap checks of a sample file before the model's input shapes are known.

    Raises for anything that makes the file unusable whatever the model
    (missing, unreadable, object or structured arrays, strings, integers
    outside int8 where ``integers="int8"``).  Returns
    True when it holds non-finite values that the policy does not drop: the
    caller then loads it with the model's shapes (load_samples) for the
    precise message.
    """
    drop = current_policy().drop_nonfinite if drop_nonfinite is None else drop_nonfinite
    arrays = read_arrays(Path(path), what)
    if integers == "int8":
        for label, a in arrays:
            if a.dtype.kind in "iub" and a.dtype != np.int8:
                _as_model_dtype(a, what, Path(path), label, integers, False, lambda _m: None)
    if drop:
        return False
    return any(a.dtype.kind == "f" and not np.isfinite(a).all() for _, a in arrays)


# Random test vectors are held in memory (int8 + their float32 twin) before the
# first is sent; past this they would exhaust RAM long before a board ran them.
MAX_RANDOM_VECTORS = 100_000
MAX_RANDOM_VECTOR_BYTES = 512 << 20


def random_vector_count(requested: int, elements_per_vector: int,
                        note: Callable[[str], None] | None = None) -> int:
    """How many random vectors verify makes for --samples N without a data file."""
    by_memory = MAX_RANDOM_VECTOR_BYTES // max(1, 5 * elements_per_vector)
    cap = max(1, min(MAX_RANDOM_VECTORS, by_memory))
    if requested <= cap:
        return requested
    tell(f"--samples {requested:,}: tinygen makes at most {cap:,} random vectors for this model "
         f"(they are held in memory); verifying {cap:,}. Give --data FILE to run more", note)
    return cap


# ---------------------------------------------------------------------------
# labels and class names (verify --data, --labels)

# Keys that hold the labels in a .npz next to the inputs (x/y, inputs/labels).
LABEL_KEYS = ("y", "labels", "label", "targets")


def labels_file_beside(path: Path) -> Path | None:
    """A labels .npy saved beside an inputs .npy: foo_labels.npy or foo_y.npy for
    foo.npy, and test_y.npy for test_x.npy (the usual np.save(x)/np.save(y) pair)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return None
    stem = path.stem
    names = [f"{stem}_labels.npy", f"{stem}_y.npy"]
    if stem.endswith("_x"):
        names.insert(0, f"{stem[:-2]}_y.npy")
    if stem in ("x", "inputs"):
        names.insert(0, "y.npy" if stem == "x" else "labels.npy")
    for name in names:
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def class_folder(path: Path) -> list[tuple[str, Path]]:
    """(class name, file) of a --data folder holding one .npy per class, named after
    the class (yes.npy, no.npy, ...), sorted by name: the class order when no
    --labels file gives another (as Keras's image_dataset_from_directory does)."""
    files = sorted((f.stem, f) for f in Path(path).iterdir()
                   if f.suffix.lower() == ".npy" and f.is_file())
    if not files:
        raise TinygenError(f"data folder {path} holds no .npy files; give one .npy per class, "
                           "named after the class (e.g. yes.npy, no.npy), or a .npy/.npz file")
    return files


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise _unreadable(what, path, exc) from None
    if not isinstance(arr, np.ndarray):
        raise TinygenError(f"{what} file {path} is not a NumPy .npy file")
    return arr


def folder_labels(path: Path, names: list[str] | None) -> np.ndarray:
    """Each sample's class index in a class folder: its file's place in ``names``
    (--labels), else in the sorted file names."""
    files = class_folder(path)
    order = names if names is not None else [stem for stem, _ in files]
    unknown = [stem for stem, _ in files if stem not in order]
    if unknown:
        raise TinygenError(f"data folder {path}: {', '.join(f + '.npy' for f in unknown)} "
                           f"name{'s' if len(unknown) == 1 else ''} no class of --labels "
                           f"({', '.join(order[:8])}{', ...' if len(order) > 8 else ''}); "
                           "name each file after its class")
    counts = [len(np.load(f, mmap_mode="r", allow_pickle=False)) for _, f in files]
    return np.repeat([order.index(stem) for stem, _ in files], counts).astype(np.int64)


def load_labels(path: Path | str, samples: Samples | None = None,
                names: list[str] | None = None) -> tuple[np.ndarray, str] | None:
    """The integer class label of every sample of a --data file, or None when it
    has none: the array y/labels/label/targets of a .npz, a labels .npy beside
    an inputs .npy (labels_file_beside), or the file each sample came from in a
    class folder (``names``: the --labels class order).  One-hot rows are turned into indices.
    Returns (labels, where they came from); the labels follow ``samples``
    (its length, and the samples --drop-nonfinite dropped)."""
    path = Path(path)
    source: Path | None
    arr = None
    where = ""
    if path.is_dir():
        arr = folder_labels(path, names)
        where = f"{path.name}/ (one file per class)"
    elif path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in LABEL_KEYS if k in z.files), None)
                if key is None:
                    return None
                arr = z[key]
                where = f"{path.name} (array '{key}')"
        except _READ_ERRORS as exc:
            raise _unreadable("data", path, exc) from None
    else:
        source = labels_file_beside(path)
        if source is None:
            return None
        try:
            arr = np.load(source, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise _unreadable("labels", source, exc) from None
        where = source.name
    if not isinstance(arr, np.ndarray):
        raise TinygenError(f"labels {where} are not a NumPy array")
    if arr.ndim == 2 and arr.shape[1] > 1:        # one-hot or per-class scores
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1) if arr.ndim == 2 else arr
    if arr.ndim != 1:
        raise TinygenError(f"labels {where} have shape {list(arr.shape)}; expected one class "
                           "index per sample [N] (or one-hot [N, classes])")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise TinygenError(f"labels {where} hold non-integer values; expected class indices")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iub":
        raise TinygenError(f"labels {where} hold {arr.dtype} values; expected integer class "
                           "indices")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise TinygenError(f"labels {where} hold a negative class index ({int(arr.min())})")
    if samples is not None:
        if len(arr) != samples.total:
            raise TinygenError(f"labels {where} hold {len(arr):,} labels for {samples.total:,} "
                               "samples; give one label per sample")
        if samples.kept is not None:
            arr = arr[samples.kept]
    return arr, where


def load_class_names(path: Path | str) -> list[str]:
    """--labels FILE: one class name per line, in class-index order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TinygenError(f"--labels file {path} does not exist") from None
    except IsADirectoryError:
        raise TinygenError(f"--labels file {path} is a directory; give a text file with one "
                           "class name per line") from None
    except UnicodeDecodeError:
        raise TinygenError(f"--labels file {path} is not UTF-8 text; give one class name "
                           "per line") from None
    except OSError as exc:
        raise TinygenError(f"cannot read --labels file {path}: {exc.strerror}") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise TinygenError(f"--labels file {path} is empty; give one class name per line")
    return names


def read_raw_audio(path: Path | str, sample_rate: int) -> list[np.ndarray]:
    """Clips of int16 samples from a .wav (mono, 16-bit PCM, at sample_rate) or
    a .npy of int16 samples ([N] one clip, [clips, N] several); TinygenError,
    one line saying what differs and what to do, for anything else."""
    import wave
    path = Path(path)
    if not path.is_file():
        raise TinygenError(f"--raw {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
                frames = w.readframes(w.getnframes())
        except (wave.Error, EOFError, OSError) as exc:
            raise TinygenError(f"--raw {path}: not a PCM .wav file ({exc})") from None
        problems = []
        if rate != sample_rate:
            problems.append(f"{rate} Hz, the front end takes {sample_rate} Hz")
        if channels != 1:
            problems.append(f"{channels} channels, the front end takes 1 (mono)")
        if width != 2:
            problems.append(f"{8 * width}-bit samples, the front end takes 16-bit")
        if problems:
            raise TinygenError(
                f"--raw {path}: {'; '.join(problems)}: convert it, e.g. `sox {path.name} -r "
                f"{sample_rate} -c 1 -b 16 out.wav`, or make the front end with "
                f"`tinygen frontend --sample-rate {rate}`")
        clip = np.frombuffer(frames, "<i2").astype(np.int16)
        if clip.size == 0:
            raise TinygenError(f"--raw {path}: the .wav holds no samples")
        return [clip]
    if suffix == ".npy":
        arr = _load_npy(path, "--raw")
        if arr.dtype != np.int16:
            raise TinygenError(f"--raw {path}: the samples are {arr.dtype}; give int16 samples "
                               f"at {sample_rate} Hz (np.int16)")
        if arr.ndim == 1 and arr.size:
            return [arr]
        if arr.ndim == 2 and arr.size:
            return [row for row in arr]
        raise TinygenError(f"--raw {path}: shape {list(arr.shape)}; give [samples] (one clip) "
                           "or [clips, samples]")
    raise TinygenError(f"--raw {path}: a {suffix or 'file without extension'}; give a .wav "
                       "(mono, 16-bit) or a .npy of int16 samples")


def stride_chunks(clips: Sequence[np.ndarray], stride: int) -> np.ndarray:
    """The clips one after another, cut into strides of int16 samples ([K, stride]);
    each clip's last stride is completed with zeros."""
    rows = []
    for clip in clips:
        n = -(-len(clip) // stride) * stride
        padded = np.zeros(n, np.int16)
        padded[:len(clip)] = clip
        rows.append(padded.reshape(-1, stride))
    return np.concatenate(rows)


# Where a stream of vectors starts a new clip (`verify --raw` with several
# clips): the device and the reference reset their state there, so each clip
# is answered from a fresh start, as it was featurized for training.
_CLIP_STARTS: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "tinygen_clip_starts", default=frozenset())


@contextlib.contextmanager
def clip_starts(starts: Sequence[int]) -> Iterator[None]:
    token = _CLIP_STARTS.set(frozenset(int(i) for i in starts))
    try:
        yield
    finally:
        _CLIP_STARTS.reset(token)


_MODEL_EVERY: contextvars.ContextVar[int] = contextvars.ContextVar(
    "tinygen_model_every", default=1)


@contextlib.contextmanager
def model_turns(every: int) -> Iterator[None]:
    """A pipeline built with --model-every N: its model answers at every N-th
    stride of each clip only (outputs 1...; output 0, the features, every stride)."""
    token = _MODEL_EVERY.set(max(1, int(every)))
    try:
        yield
    finally:
        _MODEL_EVERY.reset(token)


def answer_rows(n_vectors: int) -> list[int] | None:
    """The vectors (strides) at which the model ran, counted from each clip's
    first stride (the device resets there); None when it runs at every one."""
    every = _MODEL_EVERY.get()
    if every <= 1:
        return None
    starts = sorted(set(_CLIP_STARTS.get()) | {0})
    rows, s = [], 0
    for j in range(n_vectors):
        while s + 1 < len(starts) and starts[s + 1] <= j:
            s += 1
        if (j - starts[s]) % every == every - 1:
            rows.append(j)
    return rows


def starts_clip(index: int) -> bool:
    """True when vector `index` (after the first) begins a new clip."""
    return index > 0 and index in _CLIP_STARTS.get()


# ---------------------------------------------------------------------------
# ground-truth boxes (verify --data for detectors)

BOX_KEYS = ("boxes", "classes")


def boxes_file_beside(path: Path) -> Path | None:
    """test_gt.npz (or test_boxes.npz) beside test.npz / test.npy."""
    for name in (f"{path.stem}_gt.npz", f"{path.stem}_boxes.npz"):
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def load_boxes(path: Path | str, samples: Samples | None = None
               ) -> tuple[list[tuple[np.ndarray, np.ndarray]], str] | None:
    """Each image's ground truth (boxes [g, 4] ymin/xmin/ymax/xmax, classes [g]) for
    a detector's --data, or None when there is none: arrays ``boxes`` [N, G, 4] and
    ``classes`` [N, G] (class -1 pads; an optional ``count`` [N] says how many rows
    are real) in the data .npz itself or in a <stem>_gt.npz beside it."""
    path = Path(path)
    if path.is_dir():
        return None
    sources = [path] if path.suffix.lower() == ".npz" else []
    beside = boxes_file_beside(path)
    if beside is not None:
        sources.append(beside)
    for source in sources:
        try:
            with np.load(source, allow_pickle=False) as z:
                if not all(k in z.files for k in BOX_KEYS):
                    continue
                boxes, classes = z["boxes"], z["classes"]
                count = z["count"] if "count" in z.files else None
        except _READ_ERRORS as exc:
            raise _unreadable("ground truth", source, exc) from None
        where = source.name
        if boxes.ndim != 3 or boxes.shape[2] != 4 or classes.shape != boxes.shape[:2]:
            raise TinygenError(f"ground truth {where}: boxes {list(boxes.shape)} and classes "
                               f"{list(classes.shape)}; expected boxes [N, G, 4] and classes "
                               "[N, G] (class -1 for padding rows)")
        if not np.isfinite(boxes).all():
            raise TinygenError(f"ground truth {where}: boxes hold NaN or infinite values")
        if count is not None and count.shape != (len(boxes),):
            raise TinygenError(f"ground truth {where}: count {list(count.shape)}; expected "
                               f"[{len(boxes)}]")
        truth = []
        for i in range(len(boxes)):
            keep = np.asarray(classes[i]) >= 0
            if count is not None:
                keep &= np.arange(boxes.shape[1]) < int(count[i])
            truth.append((boxes[i][keep].astype(np.float64), classes[i][keep].astype(np.int64)))
        if samples is not None:
            if len(truth) != samples.total:
                raise TinygenError(f"ground truth {where} holds {len(truth):,} images for "
                                   f"{samples.total:,} samples; give one entry per sample")
            if samples.kept is not None:
                truth = [t for t, k in zip(truth, samples.kept) if k]
        return truth, where
    return None


def _read_pnm(path: Path) -> np.ndarray:
    """A binary PGM (P5) or PPM (P6) with 8-bit samples -> [H, W, 1 or 3] uint8."""
    raw = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(raw) and raw[pos:pos + 1].isspace():
            pos += 1
        if raw[pos:pos + 1] == b"#":
            while pos < len(raw) and raw[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(raw) and not raw[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            break
        fields.append(raw[start:pos])
    if len(fields) < 4 or fields[0] not in (b"P5", b"P6") or not all(
            f.isdigit() for f in fields[1:]):
        raise TinygenError(f"--raw {path}: not a binary PGM (P5) or PPM (P6) file")
    w, h, maxval = (int(f) for f in fields[1:])
    if maxval > 255:
        raise TinygenError(f"--raw {path}: {maxval + 1} levels per sample; give 8-bit "
                           "(maxval 255) images")
    c = 1 if fields[0] == b"P5" else 3
    data = raw[pos + 1:pos + 1 + w * h * c]
    if len(data) != w * h * c:
        raise TinygenError(f"--raw {path}: the file ends before its {w}x{h} pixels")
    return np.frombuffer(data, np.uint8).reshape(h, w, c)


def pack_rgb565(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] uint8 RGB -> [..., 2] big-endian RGB565 bytes (what esp32-camera gives)."""
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    return np.stack([v >> 8, v & 255], -1).astype(np.uint8)


def read_raw_frames(path: Path | str, width: int, height: int, pixel_format: str,
                    bytes_per_pixel: int) -> np.ndarray:
    """Camera frames [N, 1, height, width, bytes per pixel] uint8 from a .npy
    ([N, H, W, C] or [H, W, C] uint8, the bytes as the camera gives them) or a
    binary PGM/PPM (a PPM packed to RGB565 for an RGB565 front end); one line
    saying what differs for anything else."""
    path = Path(path)
    if not path.is_file():
        raise TinygenError(f"--raw {path}: no such file")
    want = f"[N, {height}, {width}, {bytes_per_pixel}] uint8 ({pixel_format})"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _load_npy(path, "--raw")
        if arr.dtype != np.uint8:
            raise TinygenError(f"--raw {path}: the frames are {arr.dtype}; give {want}")
        if arr.ndim == 3:
            arr = arr[None]
    elif suffix in (".pgm", ".ppm", ".pnm"):
        img = _read_pnm(path)
        if pixel_format == "rgb565" and img.shape[2] == 3:
            img = pack_rgb565(img)
        elif img.shape[2] != bytes_per_pixel:
            kind = "a grayscale PGM" if img.shape[2] == 1 else "an RGB PPM"
            raise TinygenError(f"--raw {path}: {kind}; the front end takes {pixel_format} "
                               "frames")
        arr = img[None]
    else:
        raise TinygenError(f"--raw {path}: give camera frames as a .npy {want} or a binary "
                           ".pgm/.ppm")
    if arr.ndim != 4 or list(arr.shape[1:]) != [height, width, bytes_per_pixel] \
            or arr.shape[0] == 0:
        raise TinygenError(f"--raw {path}: frames of shape {list(arr.shape)}; the front end "
                           f"takes {want}")
    return np.ascontiguousarray(arr[:, None])
