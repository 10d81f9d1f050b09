"""Running the vectors on connected devices and the TFLM reference on the host.

The host never gives a verdict on a broken exchange: any protocol failure
raises a ProtocolError (a TinygenError) before metrics are computed, so a
report exists only when every vector came back in a valid reply.  Several
boards run at once, one worker thread per port, against one reference run."""

from __future__ import annotations

import contextvars
import re
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..boards import Board
from ..data import starts_clip
from ..errors import TinygenError
from ..ir import Model
from .compare import compare_outputs
from .measure import latency_figures, memory_figures, model_macs, profile_figures, time_and_energy
from .results import BoardRun, VerifyReport


def check_device_matches(info, ir: Model, board: Board, runtime: str) -> None:
    if info.signature != ir.signature:
        raise TinygenError(
            f"the device runs a different model (signature {info.signature[:16]}..., expected "
            f"{ir.signature[:16]}...); flash the build of this model first")
    if not info.model_ready:
        said = getattr(info, "model_error", "")
        if said:
            raise TinygenError(f"the device's model failed to initialise (status "
                               f"{info.model_status}, arena {info.arena_bytes:,} B): {said}"
                               + arena_hint(said, info.arena_bytes, ir))
        raise TinygenError(f"the device's model failed to initialise (status {info.model_status}); "
                           "check the arena size and the op resolver")
    if len(info.inputs) != len(ir.inputs) or len(info.outputs) != len(ir.outputs):
        raise TinygenError("the device reports a different number of inputs/outputs than the model")


def arena_hint(message: str, arena_bytes: int, ir: Model | None = None) -> str:
    """What to do when TFLM says its arena ran out ("... missing: N").

    The device's figure is only what the failing allocation lacked; later
    allocations need more.  The whole need is what TFLM's recording allocator
    measures for this model on the host (64-bit, so an upper bound for a
    32-bit MCU): the size tinygen reserves by default, before its margin."""
    found = re.search(r"missing:\s*(\d+)", message)
    if not found:
        return ""
    need = arena_bytes + int(found.group(1))
    if ir is not None:
        try:
            from ..analyze.analysis import zero_inputs
            from ..reference import TflmReference
            ref = TflmReference(ir.tflite)
            ref.run(zero_inputs(ir))
            need = max(need, ref.arena_usage().total)
        except TinygenError:
            pass
    return (f"; the model needs about {need:,} B of arena (TFLM's recording allocator on the "
            f"host): rebuild with --arena-bytes {need} or more, or without --arena-bytes to "
            "let tinygen size it")

def is_stateful(ir: Model) -> bool:
    return any(op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in ir.operators)


def run_vectors(client, ir: Model, vectors, progress=None, on_vector=None,
                profiles: list | None = None) -> tuple[list, list[int]]:
    """Every vector on the device.  ``on_vector(i)`` is called after each;
    ``profiles``, when given and the firmware was built with --profile,
    receives each vector's per-operator counters."""
    stateful = is_stateful(ir)
    profiled = profiles is not None and getattr(client.info(), "profile", False)
    outs, counters = [], []
    for i, vec in enumerate(vectors):
        if stateful or starts_clip(i):
            client.reset_state()
        res = client.infer(vec)
        outs.append(res.outputs)
        counters.append(int(res.counter))
        if profiled:
            profiles.append(client.read_profile())
        if on_vector is not None:
            on_vector(i)
        elif progress and (i + 1) % max(1, len(vectors) // 10) == 0:
            progress(f"device: {i + 1}/{len(vectors)} vectors")
    return outs, counters


def run_reference(ir: Model, vectors) -> list:
    from ..reference import TflmReference
    ref = TflmReference(ir.tflite)
    stateful = is_stateful(ir)
    outs = []
    for i, vec in enumerate(vectors):
        if stateful or starts_clip(i):
            ref.reset()
        outs.append(ref.run(vec))
    return outs


def run_float_model(model_path: str | Path, ir: Model, float_vectors) -> list | None:
    """The float model's outputs for the same inputs (quantization drift): a
    Keras/SavedModel, or a float .tflite on TensorFlow Lite's interpreter; None
    for an int8 .tflite (it is not a float model)."""
    from ..load import load_model
    src = load_model(model_path)
    if src.kind == "tflite":
        return _run_float_tflite(src.tflite, str(model_path), ir, float_vectors)
    from .. import tfenv
    from ..convert import traceable_float_model
    tf = tfenv.tf()
    fn, shapes, _names, _model = traceable_float_model(src, tf)
    outs = []
    with tfenv.quiet():
        for vec in float_vectors:
            f = fn(*[np.asarray(x, np.float32).reshape(s) for x, s in zip(vec, shapes)])
            f = f if isinstance(f, (list, tuple)) else [f]
            outs.append([np.asarray(v) for v in f])
    if outs and len(outs[0]) != len(ir.outputs):
        return None
    return outs


def _run_float_tflite(tflite: bytes, name: str, ir: Model, float_vectors) -> list | None:
    """A float .tflite (the model before int8 quantization) on tf.lite.Interpreter,
    checked to have the int8 model's inputs and outputs."""
    from .. import tfenv
    from ..ir import parse_tflite
    fir = parse_tflite(tflite)
    fins, fouts = fir.input_tensors(), fir.output_tensors()
    if all(t.dtype != "float32" for t in fins):
        return None                                     # an int8 model: no float level
    if [list(t.shape) for t in fins] != [list(t.shape) for t in ir.input_tensors()] or \
            [list(t.shape) for t in fouts] != [list(t.shape) for t in ir.output_tensors()]:
        raise TinygenError(
            f"float model {name} has inputs {[list(t.shape) for t in fins]} and outputs "
            f"{[list(t.shape) for t in fouts]}; the int8 model has "
            f"{[list(t.shape) for t in ir.input_tensors()]} and "
            f"{[list(t.shape) for t in ir.output_tensors()]}: give the float model it was "
            "quantized from")
    tf = tfenv.tf()
    with tfenv.quiet():
        interp = tf.lite.Interpreter(model_content=tflite)
        interp.allocate_tensors()
        ins, outs_d = interp.get_input_details(), interp.get_output_details()
        outs = []
        for vec in float_vectors:
            for d, x in zip(ins, vec):
                interp.set_tensor(d["index"], np.asarray(x, d["dtype"]).reshape(d["shape"]))
            interp.invoke()
            outs.append([np.array(interp.get_tensor(d["index"])) for d in outs_d])
    return outs


def run_float_detector_tflite(model_path: str | Path, ir: Model, float_vectors) -> list:
    """A float detector .tflite (ending in TFLite_Detection_PostProcess, as the
    int8 one does) on the tflite_micro interpreter: the float level of a
    detector's mAP when the user names the float model it was quantized from."""
    from ..ir import parse_tflite
    from ..load import load_model
    from .detection import detection_outputs
    name = Path(model_path).name
    src = load_model(model_path)
    if src.kind != "tflite":
        raise TinygenError(
            f"--float-model {name}: a detector's float level takes a float .tflite ending in "
            "TFLite_Detection_PostProcess; for the Keras detector, verify the Keras model "
            "with --detection")
    fir = parse_tflite(src.tflite)
    if not detection_outputs(fir):
        raise TinygenError(f"--float-model {name} does not end in TFLite_Detection_PostProcess "
                           "(boxes, classes, scores, count): it gives no detections to score")
    if all(t.dtype != "float32" for t in fir.input_tensors()):
        raise TinygenError(f"--float-model {name} is an int8 model: give the float .tflite it "
                           "was quantized from")
    if [list(t.shape) for t in fir.input_tensors()] != \
            [list(t.shape) for t in ir.input_tensors()]:
        raise TinygenError(f"--float-model {name} takes inputs "
                           f"{[list(t.shape) for t in fir.input_tensors()]}; the int8 model "
                           f"takes {[list(t.shape) for t in ir.input_tensors()]}")
    post = next(op for op in fir.operators if op.opcode == "TFLite_Detection_PostProcess")
    # the op's own output order (boxes, classes, scores, count): the model's output
    # vector may list them in another order
    order = [list(fir.outputs).index(t) for t in post.outputs]
    # TFLM, as for the int8 level: TensorFlow Lite's Python interpreter gave
    # uninitialised outputs for this custom op in a converted float detector
    from ..reference import TflmReference
    ref = TflmReference(src.tflite)
    outs = []
    for vec in float_vectors:
        got = ref.run([np.asarray(x, np.float32).reshape(t.shape)
                       for x, t in zip(vec, fir.input_tensors())])
        outs.append([got[k] for k in order])
    return outs


def run_float_detector(model_path: str | Path, spec: Path, float_vectors) -> list:
    """The float detector on the same inputs: the Keras model's box/class heads
    through the same post-processing as the int8 model's op (a NumPy port of
    TFLM's kernel, convert.ssd_postprocess), with the --detection spec's options."""
    from .. import tfenv
    from ..convert import load_detection_spec, traceable_float_model
    from ..convert.ssd_postprocess import reference_postprocess
    from ..load import load_model
    anchors, opts, (box_k, cls_k) = load_detection_spec(spec)
    tf = tfenv.tf()
    fn, shapes, _names, _model = traceable_float_model(load_model(model_path), tf)
    outs = []
    with tfenv.quiet():
        for vec in float_vectors:
            heads = fn(*[np.asarray(x, np.float32).reshape(s) for x, s in zip(vec, shapes)])
            heads = [np.asarray(h) for h in heads]
            outs.append(list(reference_postprocess(heads[box_k], heads[cls_k], anchors, opts)))
    return outs


def run_board(client, ir: Model, board: Board, runtime: str, vectors, tolerance: int,
              port: str, project_dir: Path | None, ref_outs: list | None = None,
              progress: Callable[[str], None] | None = None,
              on_vector: Callable[[int], None] | None = None) -> BoardRun:
    """Verify on one connected device; the reference outputs are computed
    here unless given (several boards share one computation)."""
    t0 = time.monotonic()
    info = client.info()
    check_device_matches(info, ir, board, runtime)
    if progress:
        progress(f"{port}: {info.board}, runtime {info.runtime}, arena {info.arena_bytes:,} B, "
                 f"protocol v{info.protocol_version}"
                 + (", per-op profiling" if getattr(info, "profile", False) else ""))
    profiles: list[list[int]] = []
    dev_outs, counters = run_vectors(client, ir, vectors, progress, on_vector, profiles)
    # What the runtime took from its arena is final only after an inference
    # (TFLM kernels may allocate scratch at first invoke): ask again now.
    arena_used = getattr(client.info(refresh=True), "arena_used", None)
    if ref_outs is None:
        ref_outs = run_reference(ir, vectors)
    metrics = compare_outputs(ir, dev_outs, ref_outs, tolerance)
    bit_exact = all(o.max_abs_diff_lsb == 0 for o in metrics)
    latency = latency_figures(counters, info.counter_unit)
    if profiles:
        latency["per_op"] = profile_figures(ir, profiles)
    latency.update(time_and_energy(latency, board, model_macs(ir)))
    report = VerifyReport(
        passed=all(o.passed for o in metrics), bit_exact=bit_exact, board=board.id,
        runtime=info.runtime, port=port, model_signature=ir.signature, vectors=len(vectors),
        tolerance_lsb=tolerance, outputs=metrics, latency=latency,
        memory=memory_figures(project_dir),
        device={"board": info.board, "runtime": info.runtime, "arena_bytes": info.arena_bytes,
                "arena_used_bytes": arena_used, "protocol_version": info.protocol_version},
        duration_s=time.monotonic() - t0)
    return BoardRun(label=port, report=report, device_outs=dev_outs, counters=counters,
                    profiles=profiles)


def verify_on_client(client, ir: Model, board: Board, runtime: str, vectors, tolerance: int,
                     port: str, project_dir: Path | None, progress=None,
                     ref_outs: list | None = None) -> VerifyReport:
    return run_board(client, ir, board, runtime, vectors, tolerance, port, project_dir,
                     ref_outs=ref_outs, progress=progress).report


def verify_ports(urls: list[str], ir: Model, board: Board, runtime: str, vectors,
                 tolerance: int, project_dir: Path | None, ref_outs: list,
                 bar=None, labels: list[str] | None = None,
                 places: list[str] | None = None) -> list[BoardRun]:
    """Verify on every port at once, one worker thread each.  A board whose
    exchange fails gets ``error`` set; the others still finish.  Boards
    acquired from a farm are labelled by their ``places``."""
    from ..device.protocol import DeviceClient
    labels = labels or list(places or urls)
    runs = [BoardRun(label=lbl, port=urls[k] if places else None) for k, lbl in enumerate(labels)]

    def work(k: int) -> None:
        try:
            with DeviceClient.open(urls[k], board.baud) as client:
                port = urls[k] if places else labels[k]
                runs[k] = run_board(client, ir, board, runtime, vectors, tolerance, port,
                                    project_dir, ref_outs=ref_outs,
                                    progress=bar.note if bar else None,
                                    on_vector=(lambda _i: bar.advance(k)) if bar else None)
                if places and runs[k].report is not None:
                    runs[k].report.place = places[k]
                    runs[k].port = urls[k]
        except TinygenError as exc:
            runs[k].error, runs[k].exception = str(exc), exc
        except Exception as exc:  # a bug, or an unexpected OS error: say where
            runs[k].error, runs[k].exception = f"{type(exc).__name__}: {exc}", exc

    if len(urls) == 1:
        work(0)
        return runs
    # each thread runs in a copy of this context (the clip starts of data.clip_starts)
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, k),
                                name=f"verify-{k}", daemon=True) for k in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)
    return runs


def combined_payload(runs: list[BoardRun], float_check: dict | None = None) -> dict:
    """The JSON report: one board's report as before; several boards as
    ``{"passed", "bit_exact", "boards": [...]}`` (a failed exchange appears
    as ``{"port", "error"}`` and makes the whole run not passed)."""
    if len(runs) == 1 and runs[0].report is not None:
        payload = runs[0].report.as_dict()
    else:
        ok = [r.report for r in runs if r.report is not None]
        payload = {
            "passed": len(ok) == len(runs) and all(r.passed for r in ok),
            "bit_exact": len(ok) == len(runs) and all(r.bit_exact for r in ok),
            "boards": [r.report.as_dict() if r.report is not None
                       else {"port": r.port or r.label, "error": r.error, "passed": False,
                             **({"place": r.label} if r.port else {})}
                       for r in runs]}
        errors = [f"{r.label}: {r.error}" for r in runs if r.error]
        if errors:
            payload["errors"] = errors
    if float_check:
        payload["float_model"] = float_check
    return payload


def precheck_port(port: str) -> None:
    """A device path that does not exist fails now, not after the conversion;
    URLs (socket://, rfc2217://) are only known when they are opened."""
    if "://" in port or Path(port).exists():
        return
    present = sorted(str(p) for pattern in ("ttyUSB*", "ttyACM*") for p in Path("/dev").glob(pattern))
    raise TinygenError(f"serial port {port} does not exist; "
                       + (f"ports present: {', '.join(present)}" if present else
                          "no /dev/ttyUSB* or /dev/ttyACM* is present: is the board "
                          "plugged in (and its USB-serial driver loaded)?"))

