"""Verify stage: the same inputs on the device and on the TFLM reference, compared.

The host never gives a verdict on a broken exchange: any protocol failure
raises a ProtocolError (a TinygenError) before metrics are computed, so a
report exists only when every vector came back in a valid reply.

Several boards can be verified at once (``--port`` given more than once):
one worker thread per port, the reference computed once, one combined
report whose overall verdict needs every board to pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .boards import DEFAULT_EMULATED_BOARD, Board, get_board
from .convert import cosine, dequantize, is_classifier_shape, quantize
from .data import check_sample_file, load_samples, random_vector_count, tell
from .errors import TinygenError, VerificationFailed
from .ir import Model

DEFAULT_SAMPLES = 10


@dataclass
class OutputMetrics:
    index: int
    name: str
    shape: list[int]
    exact_match_pct: float
    max_abs_diff_lsb: int
    rel_l2: float
    cosine: float
    rmse: float
    mae: float
    top1_agreement: float | None
    passed: bool
    max_abs_diff: float = 0.0      # in output units (dequantized)


@dataclass
class VerifyReport:
    passed: bool
    bit_exact: bool
    board: str
    runtime: str
    port: str
    model_signature: str
    vectors: int
    tolerance_lsb: int
    outputs: list[OutputMetrics]
    latency: dict
    memory: dict
    device: dict = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BoardRun:
    """One board's part of a verification: its report and the raw data the
    HTML report plots.  ``error`` is set (and ``report`` None) when the
    exchange with this board failed: no verdict for it."""
    label: str
    report: VerifyReport | None = None
    device_outs: list = field(default_factory=list)
    counters: list[int] = field(default_factory=list)
    profiles: list[list[int]] = field(default_factory=list)   # per vector, per op
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)


def detection_row_mask(ir: Model, ref_outs: list[list[np.ndarray]]):
    """For SSD models: per vector, how many leading rows of each output are defined.

    TFLite_Detection_PostProcess leaves rows at or past num_detections undefined
    (fast NMS does not write them), so only the first `count` rows are compared.
    """
    post = [op for op in ir.operators if op.opcode == "TFLite_Detection_PostProcess"]
    if not post or len(post[0].outputs) != 4:
        return None
    outs = post[0].outputs
    if any(o not in ir.outputs for o in outs):
        return None
    count_pos = ir.outputs.index(outs[3])
    rows = [int(np.asarray(v[count_pos]).reshape(-1)[0]) for v in ref_outs]
    return {ir.outputs.index(o): rows for o in outs[:3]}


def stacked_outputs(ir: Model, device_outs: list[list[np.ndarray]],
                    ref_outs: list[list[np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per output: (device, reference) arrays of shape [vectors, *shape], with
    undefined SSD detection rows zeroed in both."""
    masks = detection_row_mask(ir, ref_outs) or {}
    pairs = []
    for k, t in enumerate(ir.output_tensors()):
        dev = np.stack([np.asarray(v[k]).reshape(t.shape) for v in device_outs])
        ref = np.stack([np.asarray(v[k]).reshape(t.shape) for v in ref_outs])
        if k in masks:
            for j, rows in enumerate(masks[k]):
                dev[j, :, rows:] = 0
                ref[j, :, rows:] = 0
        pairs.append((dev, ref))
    return pairs


def compare_outputs(ir: Model, device_outs: list[list[np.ndarray]],
                    ref_outs: list[list[np.ndarray]], tolerance: int) -> list[OutputMetrics]:
    """Per output metrics.  Quantized outputs are compared in LSB; float outputs
    (SSD post-processing) bit for bit, their max |delta| reported in output units."""
    metrics = []
    for k, (t, (dev, ref)) in enumerate(zip(ir.output_tensors(),
                                            stacked_outputs(ir, device_outs, ref_outs))):
        is_float = t.dtype.startswith("float")
        if is_float:
            same = dev.view(np.uint32 if dev.dtype == np.float32 else np.uint64) == \
                ref.view(np.uint32 if ref.dtype == np.float32 else np.uint64)
            dq_dev, dq_ref = dev.astype(np.float64), ref.astype(np.float64)
            max_lsb = 0 if same.all() else 1
            passed = bool(same.all()) if tolerance == 0 else bool(
                np.allclose(dq_dev, dq_ref, rtol=1e-5, atol=1e-6))
        else:
            d64, r64 = dev.astype(np.int64), ref.astype(np.int64)
            same = d64 == r64
            max_lsb = int(np.abs(d64 - r64).max()) if d64.size else 0
            dq_dev = dequantize(d64, t) if t.quant else d64.astype(np.float64)
            dq_ref = dequantize(r64, t) if t.quant else r64.astype(np.float64)
            passed = max_lsb <= tolerance
        err = dq_dev - dq_ref
        ref_norm = float(np.linalg.norm(dq_ref))
        rel = float(np.linalg.norm(err) / ref_norm) if ref_norm else float(np.linalg.norm(err))
        top1 = None
        if is_classifier_shape(t.shape) and not is_float:
            top1 = float(np.mean(np.argmax(dev.reshape(len(dev), -1), 1)
                                 == np.argmax(ref.reshape(len(ref), -1), 1)))
        metrics.append(OutputMetrics(
            index=k, name=t.name, shape=list(t.shape),
            exact_match_pct=float(100.0 * np.mean(same)) if same.size else 100.0,
            max_abs_diff_lsb=max_lsb, rel_l2=rel, cosine=cosine(dq_dev, dq_ref),
            rmse=float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
            mae=float(np.mean(np.abs(err))) if err.size else 0.0,
            top1_agreement=top1, passed=passed,
            max_abs_diff=float(np.abs(err).max()) if err.size else 0.0))
    return metrics


def make_vectors(ir: Model, samples: int | None, data: str | None, calib: str | None,
                 seed: int = 1234) -> list[list[np.ndarray]]:
    """int8 input vectors: from --data, else from --calib, else random."""
    return make_vector_set(ir, samples, data, calib, seed)[0]


def make_vector_set(ir: Model, samples: int | None, data: str | None, calib: str | None,
                    seed: int = 1234) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """(int8 vectors, the same vectors in float): the float ones are the
    samples as given when they were float, else the int8 ones dequantized."""
    ins = ir.input_tensors()
    n = samples if samples is not None else DEFAULT_SAMPLES
    if n <= 0:
        raise TinygenError("--samples must be at least 1")
    source = data or calib
    vectors, floats = [], []
    if source:
        # --data may hold int8 vectors (any integer type within int8); --calib holds
        # what the conversion took: floats, integers converted to float, or int8 vectors.
        loaded = load_samples(Path(source), [t.shape for t in ins],
                              what="data" if data else "calibration",
                              integers="int8" if data else "float", keep_int8=True)
        if samples is not None and samples > len(loaded):
            tell(f"--samples {samples:,}: {Path(source).name} holds {len(loaded):,} usable "
                 f"samples; verifying {len(loaded):,}")
        for s in loaded[: (None if data and samples is None else n)]:
            vec, fvec = [], []
            for x, t in zip(s, ins):
                x = np.asarray(x)
                if x.dtype == np.int8:
                    q = x.astype(np.int8).reshape(t.shape)
                    fvec.append(dequantize(q, t).astype(np.float32) if t.quant
                                else q.astype(np.float32))
                else:
                    q = quantize(x, t)
                    fvec.append(np.asarray(x, np.float32).reshape(t.shape))
                vec.append(q)
            vectors.append(vec)
            floats.append(fvec)
        return vectors, floats
    rng = np.random.default_rng(seed)
    n = random_vector_count(n, sum(int(np.prod(t.shape)) for t in ins))
    for _ in range(n):
        vec = [rng.integers(-128, 128, t.shape, dtype=np.int8) for t in ins]
        vectors.append(vec)
        floats.append([dequantize(q, t).astype(np.float32) if t.quant else q.astype(np.float32)
                       for q, t in zip(vec, ins)])
    return vectors, floats


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
                               + arena_hint(said, info.arena_bytes))
        raise TinygenError(f"the device's model failed to initialise (status {info.model_status}); "
                           "check the arena size and the op resolver")
    if len(info.inputs) != len(ir.inputs) or len(info.outputs) != len(ir.outputs):
        raise TinygenError("the device reports a different number of inputs/outputs than the model")


def arena_hint(message: str, arena_bytes: int) -> str:
    """What to do when TFLM says its arena ran out ("... missing: N")."""
    import re
    found = re.search(r"missing:\s*(\d+)", message)
    if not found:
        return ""
    need = arena_bytes + int(found.group(1))
    return (f"; the arena needs at least {need:,} B: rebuild with --arena-bytes {need} "
            "or more (or without --arena-bytes, to let tinygen size it)")


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
        if stateful:
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
    from .reference import TflmReference
    ref = TflmReference(ir.tflite)
    stateful = is_stateful(ir)
    outs = []
    for vec in vectors:
        if stateful:
            ref.reset()
        outs.append(ref.run(vec))
    return outs


def run_float_model(model_path: str | Path, ir: Model, float_vectors) -> list | None:
    """The float Keras/SavedModel outputs for the same inputs (quantization
    drift); None for a .tflite source."""
    from .load import load_model
    src = load_model(model_path)
    if src.kind == "tflite":
        return None
    from . import tfenv
    from .convert import _traceable
    tf = tfenv.tf()
    fn, shapes, _names, _model = _traceable(src, tf)
    outs = []
    with tfenv.quiet():
        for vec in float_vectors:
            f = fn(*[np.asarray(x, np.float32).reshape(s) for x, s in zip(vec, shapes)])
            f = f if isinstance(f, (list, tuple)) else [f]
            outs.append([np.asarray(v) for v in f])
    if outs and len(outs[0]) != len(ir.outputs):
        return None
    return outs


def memory_figures(project_dir: Path | None) -> dict:
    if project_dir is None:
        return {}
    manifest_path = project_dir / "tinygen.json"
    if not manifest_path.exists():
        return {}
    manifest = json.loads(manifest_path.read_text())
    elfs = sorted(project_dir.glob(".pio/build/*/firmware.elf"))
    if not elfs:
        return {"flash_weights": manifest.get("weights_bytes"),
                "ram_activations": manifest.get("arena_bytes")}
    from .build.elf_size import measure_elf
    s = measure_elf(elfs[0], manifest.get("weight_symbols", []))
    return {"flash_total": s.text, "flash_code": s.code, "flash_weights": s.weights,
            "ram_activations": s.arena or manifest.get("arena_bytes"),
            "ram_total": s.ram, "ram_other": s.ram - (s.arena or 0)}


def add_stack_figure(runs: list[BoardRun], qemu, con) -> None:
    """The firmware's stack high-water mark after the whole run, read from
    the emulated board's memory (its BSP paints the stack at reset)."""
    try:
        used, size = qemu.stack_usage()
    except (TinygenError, OSError, subprocess.SubprocessError) as exc:
        con.warn(f"stack high-water mark not read: {exc}")
        return
    for r in runs:
        if r.report is not None:
            r.report.memory["stack_used"] = used
            r.report.memory["stack_size"] = size


def latency_figures(counters: list[int], unit: str) -> dict:
    key = "instructions" if unit == "instructions" else "cycles"
    c = np.asarray(counters, dtype=np.int64)
    # Like MLPerf Tiny, quote a warm inference: the second one when there are two or more.
    steady = int(c[1]) if len(c) > 1 else int(c[0])
    return {key: steady, "unit": unit, "min": int(c.min()), "max": int(c.max()),
            "mean": float(c.mean()), "per_vector": [int(v) for v in c]}


def profile_figures(ir: Model, profiles: list[list[int]]) -> list[dict]:
    """Per operator: mean/min/max counter over the vectors and share of the sum."""
    if not profiles:
        return []
    p = np.asarray([row[: len(ir.operators)] for row in profiles], dtype=np.float64)
    means = p.mean(axis=0)
    total = float(means.sum()) or 1.0
    return [{"index": i, "op": op.opcode, "mean": float(means[i]), "min": int(p[:, i].min()),
             "max": int(p[:, i].max()), "share": float(means[i] / total)}
            for i, op in enumerate(ir.operators) if i < p.shape[1]]


def write_junit(reports: VerifyReport | list[VerifyReport], path: Path) -> None:
    """One testsuite per board (in a testsuites element when there are several)."""
    if isinstance(reports, VerifyReport):
        reports = [reports]
    suites = []
    for report in reports:
        suite = ET.Element("testsuite", name=f"tinygen.verify.{report.board}",
                           tests=str(len(report.outputs)),
                           failures=str(sum(not o.passed for o in report.outputs)),
                           time=f"{report.duration_s:.3f}")
        if len(reports) > 1:
            suite.set("hostname", report.port)
        for o in report.outputs:
            case = ET.SubElement(suite, "testcase", classname=f"{report.board}.{report.runtime}",
                                 name=f"output{o.index}:{o.name}"
                                 + (f"@{report.port}" if len(reports) > 1 else ""))
            if not o.passed:
                f = ET.SubElement(case, "failure",
                                  message=f"max |delta| {o.max_abs_diff_lsb} LSB > "
                                          f"tolerance {report.tolerance_lsb}")
                f.text = json.dumps(asdict(o))
        suites.append(suite)
    root = suites[0]
    if len(suites) > 1:
        root = ET.Element("testsuites")
        root.extend(suites)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def format_report(r: VerifyReport) -> str:
    lines = [f"verify {r.board} ({r.runtime}) over {r.port}: {r.vectors} vectors, model "
             f"{r.model_signature[:16]}..., tolerance {r.tolerance_lsb} LSB"]
    lines.append(f"  {'output':28} {'exact':>8} {'max|d|':>7} {'rel L2':>9} {'cosine':>9} "
                 f"{'RMSE':>9} {'MAE':>9} {'top-1':>7}")
    for o in r.outputs:
        top1 = "-" if o.top1_agreement is None else f"{o.top1_agreement:.1%}"
        lines.append(f"  {o.name[:28]:28} {o.exact_match_pct:>7.2f}% {o.max_abs_diff_lsb:>7} "
                     f"{o.rel_l2:>9.2e} {o.cosine:>9.6f} {o.rmse:>9.2e} {o.mae:>9.2e} {top1:>7}")
    lat = r.latency
    if lat:
        key = "instructions" if "instructions" in lat else "cycles"
        lines.append(f"  latency: {lat[key]:,} {key} per inference (min {lat['min']:,}, "
                     f"max {lat['max']:,})")
        per_op = lat.get("per_op") or []
        if per_op:
            top = sorted(per_op, key=lambda o: -o["mean"])[:3]
            lines.append("  slowest ops: " + ", ".join(
                f"#{o['index']} {o['op']} {o['share']:.0%}" for o in top))
    m = r.memory
    if m.get("flash_code") is not None:
        lines.append(f"  flash: code {m['flash_code']:,} B + weights {m['flash_weights']:,} B; "
                     f"RAM: activations {m['ram_activations']:,} B of {m['ram_total']:,} B total")
    if m.get("stack_used") is not None:
        lines.append(f"  stack: {m['stack_used']:,} B used of {m['stack_size']:,} B "
                     "(high-water mark over the whole run)")
    used, reserved = r.device.get("arena_used_bytes"), r.device.get("arena_bytes")
    if used is not None and reserved and r.runtime == "tflm":
        lines.append(f"  arena: TFLM used {used:,} B of the {reserved:,} B reserved "
                     f"({used / reserved:.0%}; read from the device after the run)")
    verdict = "PASS" if r.passed else "FAIL"
    exact = "bit-exact" if r.bit_exact else "not bit-exact"
    lines.append(f"{verdict}: {exact} on all {len(r.outputs)} outputs" if r.bit_exact
                 else f"{verdict}: {exact}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# progress


class VectorProgress:
    """Progress of the device runs: a one-line bar redrawn in place when
    ``stream`` is a terminal, else a line per 10 % per board; nothing when
    quiet.  Thread-safe: workers call :meth:`advance` and :meth:`note`."""

    WIDTH = 28

    def __init__(self, total: int, labels: list[str], quiet: bool = False, stream=None,
                 interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.labels = labels
        self.done = [0] * len(labels)
        self.quiet = quiet
        isatty = getattr(self.stream, "isatty", None)
        self.bar = not quiet and bool(isatty and isatty())
        self.interval = interval
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = False

    def line(self) -> str:
        total = self.total * len(self.labels)
        done = sum(self.done)
        frac = done / total if total else 1.0
        filled = int(round(frac * self.WIDTH))
        elapsed = time.monotonic() - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"  [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} vectors"
        if 0 < done < total and rate > 0:
            left = (total - done) / rate
            text += f", {rate:.1f}/s, " + (f"~{left:.0f} s left" if left >= 1 else "<1 s left")
        elif done == total:
            text += f" in {elapsed:.1f} s"
        if len(self.labels) > 1:
            text += "  (" + ", ".join(f"{_short(lbl)} {d}" for lbl, d in
                                      zip(self.labels, self.done)) + ")"
        cols = shutil.get_terminal_size((100, 20)).columns
        return text[: max(20, cols - 1)]

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._write("\r\x1b[2K" + self.line())
        self._drawn = True

    def note(self, message: str) -> None:
        """A progress message (kept above the bar)."""
        if self.quiet:
            return
        with self._lock:
            self._clear()
            self._write(f"  .. {message}\n")
            if self.bar and sum(self.done):
                self._draw(force=True)

    def advance(self, board: int = 0) -> None:
        if self.quiet:
            return
        with self._lock:
            self.done[board] += 1
            n = self.done[board]
            if self.bar:
                self._draw(force=n == self.total)
            elif n == self.total or n % max(1, self.total // 10) == 0:
                prefix = f"{self.labels[board]}: " if len(self.labels) > 1 else ""
                self._write(f"  .. {prefix}device: {n}/{self.total} vectors\n")

    def close(self) -> None:
        with self._lock:
            if self.bar and self._drawn:
                self._write("\n")
                self._drawn = False


def _short(label: str) -> str:
    return label.split("://", 1)[-1]


# ---------------------------------------------------------------------------


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
                 bar: VectorProgress, labels: list[str] | None = None) -> list[BoardRun]:
    """Verify on every port at once, one worker thread each.  A board whose
    exchange fails gets ``error`` set; the others still finish."""
    from .device.protocol import DeviceClient
    labels = labels or list(urls)
    runs = [BoardRun(label=lbl) for lbl in labels]

    def work(k: int) -> None:
        try:
            with DeviceClient.open(urls[k], board.baud) as client:
                runs[k] = run_board(client, ir, board, runtime, vectors, tolerance, labels[k],
                                    project_dir, ref_outs=ref_outs, progress=bar.note,
                                    on_vector=lambda _i: bar.advance(k))
        except TinygenError as exc:
            runs[k].error, runs[k].exception = str(exc), exc
        except Exception as exc:  # a bug, or an unexpected OS error: say where
            runs[k].error, runs[k].exception = f"{type(exc).__name__}: {exc}", exc

    if len(urls) == 1:
        work(0)
        return runs
    threads = [threading.Thread(target=work, args=(k,), name=f"verify-{k}", daemon=True)
               for k in range(len(urls))]
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
                       else {"port": r.label, "error": r.error, "passed": False}
                       for r in runs]}
        errors = [f"{r.label}: {r.error}" for r in runs if r.error]
        if errors:
            payload["errors"] = errors
    if float_check:
        payload["float_model"] = float_check
    return payload


def float_comparison(ir: Model, float_outs: list | None, ref_outs: list,
                     runs: list[BoardRun]) -> dict | None:
    """Top-1 of the float model vs the int8 reference vs each device, per
    classifier output."""
    if not float_outs:
        return None
    result = {}
    for k, t in enumerate(ir.output_tensors()):
        if not is_classifier_shape(t.shape) or t.dtype != "int8":
            continue
        f = np.stack([np.asarray(v[k]).reshape(-1) for v in float_outs])
        r = np.stack([np.asarray(v[k]).reshape(-1) for v in ref_outs])
        entry = {"float_vs_reference_top1": float(np.mean(f.argmax(1) == r.argmax(1))),
                 "devices": {}}
        for run in runs:
            if run.report is None:
                continue
            d = np.stack([np.asarray(v[k]).reshape(-1) for v in run.device_outs])
            entry["devices"][run.label] = {
                "float_vs_device_top1": float(np.mean(f.argmax(1) == d.argmax(1))),
                "reference_vs_device_top1": float(np.mean(r.argmax(1) == d.argmax(1)))}
        result[t.name] = entry
    return result or None


def precheck_sample_files(args) -> None:
    """Fail on an unusable --data/--calib file before minutes of building: unreadable,
    object or structured arrays, values that cannot be inputs, and non-finite samples
    (named precisely with the model's input shapes, read then); a .tflite's shapes
    are known now, so its files are loaded in full."""
    shapes = None
    for what, f in (("data", getattr(args, "data", None)), ("calibration", args.calib)):
        if not f:
            continue
        integers = "int8" if what == "data" else "float"
        if Path(args.model).suffix.lower() == ".tflite" and Path(args.model).exists():
            from .load import load_ir
            ir = load_ir(args.model)
            load_samples(Path(f), [t.shape for t in ir.input_tensors()], what=what,
                         integers=integers, keep_int8=True, note=lambda _m: None)
            continue
        if check_sample_file(Path(f), what, integers=integers):
            if shapes is None:
                from .convert import model_input_shapes
                from .load import load_model
                shapes = model_input_shapes(load_model(args.model))
            load_samples(Path(f), shapes, what=what, integers=integers, keep_int8=True)


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


def run_verify(args, con) -> int:
    from .build.project import build, choose_runtime, default_out_dir
    board = get_board(args.board or DEFAULT_EMULATED_BOARD)
    runtime = choose_runtime(board, args.runtime)
    tolerance = args.tolerance if args.tolerance is not None else 0
    if tolerance < 0:
        raise TinygenError("--tolerance must be >= 0")
    ports = list(dict.fromkeys(args.port or []))
    if len(ports) != len(args.port or []):
        con.warn("the same --port was given more than once; it is verified once")
    if not board.emulated and not ports:
        raise TinygenError(f"{board.id} is a real board: give its serial port with --port "
                           f"(e.g. --port {board.serial_port or '/dev/ttyUSB0'})")
    profile = bool(getattr(args, "profile", False))
    json_to_stdout = getattr(args, "json", None) == "-"
    precheck_sample_files(args)
    if len(ports) == 1:     # with several, a missing board is that board's error
        precheck_port(ports[0])

    project_dir: Path | None = None
    # With --port, talk to devices that are already running (flashed boards, or
    # QEMUs started by `tinygen flash`); without, an emulated board is built and started.
    own_qemu = board.emulated and not ports
    elf = None
    if own_qemu:
        out = Path(args.output) if args.output else default_out_dir(Path(args.model), board)
        result = build(args.model, board.id, runtime=runtime, calib=args.calib, out_dir=out,
                       progress=con.progress, detection=args.detection, profile=profile,
                       tflm_source=getattr(args, "tflm_source", None),
                       arena_bytes=getattr(args, "arena_bytes", None))
        ir = result.conversion.ir
        project_dir = result.out_dir
        elf = result.elf
    else:
        if profile:
            con.warn("--profile only changes how tinygen builds firmware; with --port the "
                     "boards' firmware decides (build and flash it with `tinygen build --profile`)")
        from .convert import convert
        from .load import load_model
        ir = convert(load_model(args.model), Path(args.calib) if args.calib else None,
                     progress=con.progress, detection=args.detection).ir
        if args.output and (Path(args.output) / "tinygen.json").exists():
            project_dir = Path(args.output)

    vectors, float_vectors = make_vector_set(ir, args.samples, args.data, args.calib)
    con.progress(f"{len(vectors)} input vectors")
    con.progress("running the tflite_micro reference")
    ref_outs = run_reference(ir, vectors)

    labels = ports or [f"qemu:{board.qemu_machine}"]
    bar = VectorProgress(len(vectors), labels, quiet=con.quiet)
    try:
        if own_qemu:
            from .device.qemu import QemuProcess
            con.progress(f"starting QEMU ({board.qemu_machine}) with {elf.name}")
            with QemuProcess(board.qemu_machine, elf, qmp=True) as qemu:
                runs = verify_ports([qemu.url], ir, board, runtime, vectors, tolerance,
                                    project_dir, ref_outs, bar, labels=labels)
                add_stack_figure(runs, qemu, con)
        else:
            if len(ports) > 1:
                con.progress(f"verifying on {len(ports)} boards at once")
            runs = verify_ports(ports, ir, board, runtime, vectors, tolerance, project_dir,
                                ref_outs, bar)
    finally:
        bar.close()

    reports = [r.report for r in runs if r.report is not None]
    failed = [r for r in runs if r.error]
    if failed and len(runs) == 1:
        raise failed[0].exception or TinygenError(failed[0].error)

    float_outs = None
    html = getattr(args, "html", None)
    if html and not args.detection and not str(args.model).endswith(".tflite"):
        con.progress("running the float model on the same inputs")
        try:
            float_outs = run_float_model(args.model, ir, float_vectors)
        except TinygenError as exc:
            con.warn(f"float model comparison skipped: {exc}")
    float_check = float_comparison(ir, float_outs, ref_outs, runs)

    human = sys.stderr if json_to_stdout else sys.stdout
    for r in reports:
        if not (json_to_stdout and con.quiet):
            print(format_report(r), file=human, flush=True)
    for r in failed:
        print(f"verify {board.id} over {r.label}: no verdict: {r.error}", file=sys.stderr,
              flush=True)
    if len(runs) > 1 and not (json_to_stdout and con.quiet):
        passed = not failed and all(r.passed for r in reports)
        exact = not failed and all(r.bit_exact for r in reports)
        print(f"{'PASS' if passed else 'FAIL'}: {len(reports)} of {len(runs)} boards verified"
              + (", all bit-exact" if exact else ""), file=human, flush=True)

    payload = combined_payload(runs, float_check)
    if json_to_stdout:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        sys.stdout.flush()
    elif args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if args.junit and reports:
        write_junit(reports, Path(args.junit))
    if html:
        from .report_html import write_html
        con.progress(f"writing {html}")
        plan = load_memory_plan(project_dir, ir, runtime)
        write_html(Path(html), ir, runs, ref_outs, float_outs=float_outs, memory_plan=plan,
                   model_name=Path(args.model).name, board=board, payload=payload)
        if not (json_to_stdout and con.quiet):
            print(f"report: {html}", file=human, flush=True)
    if failed:
        raise TinygenError(f"{len(failed)} of {len(runs)} boards could not be verified: "
                           + "; ".join(f"{r.label}: {r.error}" for r in failed))
    if not all(r.passed for r in reports):
        raise VerificationFailed("device outputs differ from the reference beyond the tolerance")
    return 0


def load_memory_plan(project_dir: Path | None, ir: Model, runtime: str) -> dict | None:
    """The aot arena plan: from the project's manifest, else planned again."""
    if project_dir is not None and (project_dir / "tinygen.json").exists():
        plan = json.loads((project_dir / "tinygen.json").read_text()).get("memory_plan")
        if plan:
            return plan
    if runtime != "aot":
        return None
    try:
        from .build.project import plan_manifest
        from .codegen.aot import plan_aot
        _calls, plan = plan_aot(ir)
        return plan_manifest(plan, ir)
    except Exception:  # a model the aot planner cannot take: no picture
        return None
