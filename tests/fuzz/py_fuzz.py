#!/usr/bin/env python3
"""Fuzz tinygen's Python readers of untrusted files with atheris (libFuzzer).

What a user hands tinygen is read here first: .tflite files (tinygen.load,
the bounds-checked flatbuffer reader, the IR, the consistency check, the
full-int8 check), custom operator options (the FlexBuffers reader and the
detection post-processing options built on it) and calibration / test data
(.npy and .npz through tinygen.data.load_samples and check_sample_file).

Input: byte 0 picks the target (low two bits) and its variant (the rest);
the remaining bytes are the file.

Oracle: each target may refuse its input only with the error the code
intends (TinygenError, ModelFormatError, FlexBufferError, LoweringError).
Anything else escaping is a crash; an input that takes more than
TIME_LIMIT seconds of CPU is a hang.  A finding is printed in one line and
its input saved to the regressions directory (one per distinct place it
happens), and fuzzing goes on.

    python3 tests/fuzz/py_fuzz.py --seconds 3600          # the long run
    python3 tests/fuzz/py_fuzz.py --runs 3000 --seed 1    # the CI budget
    python3 tests/fuzz/py_fuzz.py --replay FILE...        # re-run inputs, print outcomes

See docs/fuzzing.md, section 5.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import io
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "py_corpus"
REGRESSIONS = HERE / "py_regressions"
TARGETS = ("tflite", "flexbuffer", "npy", "npz")
TIME_LIMIT = 5.0            # CPU seconds per input; the largest seed takes ~0.05 s

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402  (imported before instrumentation: not under test)


class Finding(Exception):
    """An input the oracle rejects: kind is "crash" or "hang"."""

    def __init__(self, kind: str, target: str, detail: str, bucket: str):
        super().__init__(f"{kind} in {target}: {detail}")
        self.kind, self.target, self.detail, self.bucket = kind, target, detail, bucket


class _Hang(BaseException):
    # BaseException: an `except Exception` in the code under test must not
    # swallow the time limit.
    pass


def _on_alarm(signum, frame):
    raise _Hang()


_modules: dict = {}
_work = Path()     # where inputs are written as files (the loaders take paths)


def _import_targets() -> None:
    """Import the code under test (inside atheris.instrument_imports when fuzzing)."""
    global _work
    if _modules:
        return
    _work = Path(tempfile.mkdtemp(prefix="tg_pyfuzz_"))
    atexit.register(shutil.rmtree, _work, True)
    from tinygen import data, load
    from tinygen.convert import convert
    from tinygen.errors import TinygenError
    from tinygen.ir import Operator, flexbuffer
    from tinygen.ir.model import ModelFormatError
    from tinygen.plan.lowering import LoweringError
    from tinygen.plan.ops.detection import detection_options
    _modules.update(data=data, load=load, convert=convert, TinygenError=TinygenError,
                    ModelFormatError=ModelFormatError, flexbuffer=flexbuffer,
                    Operator=Operator, detection_options=detection_options,
                    LoweringError=LoweringError)


def _quiet(_message: str) -> None:
    pass


def _target_tflite(payload: bytes, variant: int) -> str:
    m = _modules
    path = _work / "model.tflite"
    path.write_bytes(payload)
    src = m["load"].load_model(path)
    ir = m["convert"](src).ir         # parse, consistency, full-int8: what inspect/build/verify run
    for op in ir.operators:
        if op.is_custom and op.custom_options:
            with contextlib.suppress(m["flexbuffer"].FlexBufferError):
                m["flexbuffer"].loads(op.custom_options)
    return "accepted"


def _target_flexbuffer(payload: bytes, variant: int) -> str:
    m = _modules
    fx = m["flexbuffer"]
    if variant & 1:
        op = m["Operator"](index=0, opcode="TFLite_Detection_PostProcess", builtin_code=None,
                           version=1, inputs=[], outputs=[], custom_options=payload)
        m["detection_options"](op)
        return "accepted"
    root = fx.root(payload)
    root.to_python()
    if root.is_map:
        for _key, v in root.as_map().items():
            for conv in (v.as_int32, v.as_float, v.as_bool, v.as_uint):
                with contextlib.suppress(fx.FlexBufferError):
                    conv()
    return "accepted"


_SHAPES = [[(1, 4)], [(1, 16, 16, 1)], [(1, 3, 2)], [(1, 10)], [(1, 4), (1, 3, 2)], [(1, 1)]]


def _target_samples(payload: bytes, variant: int, suffix: str) -> str:
    m = _modules
    path = _work / f"samples{suffix}"
    path.write_bytes(payload)
    shapes = _SHAPES[(variant & 7) % len(_SHAPES)]
    integers = "int8" if variant & 8 else "float"
    drop = bool(variant & 16)
    m["data"].check_sample_file(path, "calibration", integers=integers, drop_nonfinite=drop)
    m["data"].load_samples(path, shapes, "calibration", integers=integers,
                           drop_nonfinite=drop, note=_quiet)
    return "accepted"


def _allowed() -> dict:
    m = _modules
    return {
        "tflite": (m["TinygenError"], m["ModelFormatError"]),
        "flexbuffer": (m["flexbuffer"].FlexBufferError, m["LoweringError"]),
        "npy": (m["TinygenError"],),
        "npz": (m["TinygenError"],),
    }


def _bucket(exc: BaseException) -> str:
    """Where it happened: the exception type and the innermost tinygen frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/tinygen/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__}@{where}"


def run_one(data: bytes, time_limit: float = TIME_LIMIT) -> str:
    """Run one input; returns "accepted" or "refused: <error type>", raises Finding."""
    _import_targets()
    if not data:
        return "empty"
    target = TARGETS[data[0] & 3]
    variant = data[0] >> 2
    payload = bytes(data[1:])
    fn = {"tflite": _target_tflite, "flexbuffer": _target_flexbuffer,
          "npy": lambda p, v: _target_samples(p, v, ".npy"),
          "npz": lambda p, v: _target_samples(p, v, ".npz")}[target]
    old = signal.signal(signal.SIGVTALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, time_limit)
    try:
        # the code under test must say nothing on stdout/stderr but its one-line errors;
        # a warning printed for a refused file is not a finding, so it is dropped here
        with contextlib.redirect_stderr(io.StringIO()):
            return fn(payload, variant)
    except _allowed()[target] as exc:
        return f"refused: {type(exc).__name__}"
    except _Hang:
        raise Finding("hang", target, f"more than {time_limit:g} s of CPU",
                      f"hang-{target}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the oracle: every other exception is a crash
        bucket = _bucket(exc)
        line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise Finding("crash", target, f"{bucket}: {line}", f"{target}-{bucket}") from exc
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


# ---------------------------------------------------------------------------
# fuzzing

class _Recorder:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.seen: set[str] = set()
        self.count = 0

    def __call__(self, data: bytes) -> None:
        try:
            run_one(data)
        except Finding as f:
            self.count += 1
            if f.bucket in self.seen:
                return
            self.seen.add(f.bucket)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            name = f"{f.kind}-{f.target}-{hashlib.sha1(data).hexdigest()[:16]}"
            (self.out_dir / name).write_bytes(data)
            print(f"FINDING {f} -> {self.out_dir / name}", flush=True)


# ---------------------------------------------------------------------------
# structure-aware mutation: byte mutations of a flatbuffer mostly break its
# offsets, so half the mutations of a readable .tflite edit it through the
# schema's object API instead (shapes, types, quantization, options, indices,
# operator order): readable models that contradict themselves, which is
# what the IR and the consistency check must refuse cleanly.

_SCHEMA = None


def _schema():
    global _SCHEMA
    if _SCHEMA is None:
        import flatbuffers  # noqa: F401
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated
        _SCHEMA = schema_py_generated
    return _SCHEMA


def _pick_int(rnd, old: int) -> int:
    return rnd.choice([0, 1, 2, 3, -1, old + 1, old - 1, old * 2, rnd.randrange(-9, 300),
                       2 ** 31 - 1, -2 ** 31])


def _edit_model(m, rnd) -> None:
    sg = m.subgraphs[0]
    what = rnd.randrange(9)
    tensors = sg.tensors or []
    ops = sg.operators or []
    if what == 0 and tensors:                                   # a dimension
        t = rnd.choice(tensors)
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        if shape and rnd.random() < 0.8:
            i = rnd.randrange(len(shape))
            shape[i] = max(0, _pick_int(rnd, shape[i])) if rnd.random() < 0.9 else -1
        elif rnd.random() < 0.5:
            shape.insert(rnd.randrange(len(shape) + 1), rnd.choice([1, 2]))
        elif shape:
            shape.pop(rnd.randrange(len(shape)))
        t.shape = shape
    elif what == 1 and tensors:                                 # a type
        rnd.choice(tensors).type = rnd.randrange(20)
    elif what == 2 and tensors:                                 # quantization
        t = rnd.choice(tensors)
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            k = rnd.randrange(4)
            if k == 0:
                q.quantizedDimension = _pick_int(rnd, q.quantizedDimension)
            elif k == 1:
                q.scale = list(q.scale)[:-1] or [0.5, 0.25]
                q.zeroPoint = list(q.zeroPoint or [])[:len(q.scale)]
            elif k == 2:
                q.zeroPoint = list(q.zeroPoint or []) + [0]
            else:
                q.scale = [rnd.choice([0.0, -1.0, 1e-45, 3e38, float("nan")])] * len(q.scale)
    elif what == 3 and ops:                                     # an option field
        op = rnd.choice(ops)
        o = op.builtinOptions
        if o is not None:
            fields = [k for k, v in vars(o).items() if isinstance(v, (int, bool, float))]
            if fields:
                k = rnd.choice(fields)
                setattr(o, k, type(getattr(o, k))(_pick_int(rnd, int(getattr(o, k))))
                        if not isinstance(getattr(o, k), bool) else not getattr(o, k))
    elif what == 4 and ops:                                     # an operand
        op = rnd.choice(ops)
        lst = rnd.choice([x for x in ("inputs", "outputs") if getattr(op, x) is not None]
                         or ["inputs"])
        vals = [int(v) for v in (getattr(op, lst) if getattr(op, lst) is not None else [])]
        if vals and rnd.random() < 0.7:
            vals[rnd.randrange(len(vals))] = rnd.choice([-1, rnd.randrange(max(1, len(tensors)))])
        elif vals:
            vals.pop()
        else:
            vals.append(rnd.randrange(max(1, len(tensors))))
        setattr(op, lst, vals)
    elif what == 5 and len(ops) > 1:                            # operator order
        i, j = rnd.randrange(len(ops)), rnd.randrange(len(ops))
        ops[i], ops[j] = ops[j], ops[i]
    elif what == 6 and ops and m.operatorCodes:                 # which operator
        rnd.choice(ops).opcodeIndex = rnd.randrange(len(m.operatorCodes))
        if rnd.random() < 0.3:
            oc = rnd.choice(m.operatorCodes)
            oc.builtinCode = oc.deprecatedBuiltinCode = rnd.randrange(127)
    elif what == 7 and m.buffers and len(m.buffers) > 1:        # constant data
        b = rnd.choice(m.buffers[1:])
        if b.data is not None and len(b.data):
            b.data = b.data[:rnd.randrange(len(b.data))] if rnd.random() < 0.5 else \
                np.asarray(rnd.choices(range(256), k=len(b.data)), np.uint8)
    elif what == 8:                                             # graph inputs/outputs
        lst = rnd.choice(["inputs", "outputs"])
        vals = [int(v) for v in (getattr(sg, lst) if getattr(sg, lst) is not None else [])]
        vals.append(rnd.randrange(max(1, len(tensors))))
        if rnd.random() < 0.5:
            vals = vals[1:]
        setattr(sg, lst, vals)


def structured_mutation(data: bytes, seed: int) -> bytes | None:
    """An edited copy of a .tflite input that tinygen's reader accepts, else None."""
    import random
    if not data or data[0] & 3 != 0:
        return None
    _import_targets()
    try:
        from tinygen.ir import parse_tflite
        parse_tflite(data[1:])          # the object API trusts its input: only readable ones
    except Exception:
        return None
    import flatbuffers
    fb = _schema()
    try:
        m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data[1:], 0))
        rnd = random.Random(seed)
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            _edit_model(m, rnd)
        b = flatbuffers.Builder(len(data) + 1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return data[:1] + bytes(b.Output())
    except Exception:
        return None         # an edit the object API cannot pack: not an input


def _custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris
    if seed & 1:
        edited = structured_mutation(data, seed >> 1)
        if edited is not None and len(edited) <= max_size:
            return edited
    return atheris.Mutate(data, max_size)


def seed_files() -> list[Path]:
    """The seed corpus plus the repository's example .tflite files (prefixed for the tflite target)."""
    return sorted(SEEDS.glob("*")) if SEEDS.exists() else []


def _prepare_corpus(work: Path) -> Path:
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for f in seed_files():
        shutil.copy(f, corpus / f.name)
    for f in sorted((ROOT / "examples").rglob("*.tflite")):
        (corpus / f"example-{f.stem}").write_bytes(b"\x00" + f.read_bytes())
    return corpus


def fuzz(args) -> None:
    import atheris
    with atheris.instrument_imports(include=["tinygen"]):
        _import_targets()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tg_pyfuzz_run_"))
    corpus = _prepare_corpus(work)
    recorder = _Recorder(Path(args.regressions))
    lf = [sys.argv[0], str(corpus), f"-seed={args.seed}", "-timeout=60", "-rss_limit_mb=4096",
          f"-max_len={args.max_len}", "-print_final_stats=1", f"-artifact_prefix={work}/"]
    if args.runs:
        lf.append(f"-runs={args.runs}")
    if args.seconds:
        lf.append(f"-max_total_time={args.seconds}")
    print(f"py_fuzz: corpus {corpus}, findings to {args.regressions}", flush=True)
    atheris.Setup(lf, recorder, custom_mutator=_custom_mutator)
    atheris.Fuzz()


def replay(files: list[str]) -> int:
    bad = 0
    for name in files:
        try:
            outcome = run_one(Path(name).read_bytes())
        except Finding as f:
            outcome, bad = f"FINDING {f}", bad + 1
        print(f"{name}: {outcome}")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=0, help="fuzz for this long")
    p.add_argument("--runs", type=int, default=0, help="fuzz this many inputs")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    p.add_argument("--max-len", type=int, default=40000, help="largest input libFuzzer makes")
    p.add_argument("--regressions", default=str(REGRESSIONS),
                   help="where findings are saved (default tests/fuzz/py_regressions)")
    p.add_argument("--work", help="directory for the growing corpus (default: a temp dir)")
    p.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs and exit")
    args = p.parse_args()
    if args.replay:
        return replay(args.replay)
    if not (args.seconds or args.runs):
        p.error("give --seconds or --runs (or --replay)")
    fuzz(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
