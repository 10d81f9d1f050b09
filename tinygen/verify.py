"""Verify stage: the same inputs on the device and on the TFLM reference, compared.

The host never gives a verdict on a broken exchange: any protocol failure
raises a ProtocolError (a TinygenError) before metrics are computed, so a
report exists only when every vector came back in a valid reply.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .boards import DEFAULT_EMULATED_BOARD, Board, get_board
from .convert import cosine, dequantize, is_classifier_shape, load_samples, quantize
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


def compare_outputs(ir: Model, device_outs: list[list[np.ndarray]],
                    ref_outs: list[list[np.ndarray]], tolerance: int) -> list[OutputMetrics]:
    """Per output metrics.  Quantized outputs are compared in LSB; float outputs
    (SSD post-processing) bit for bit, their max |delta| reported in output units."""
    masks = detection_row_mask(ir, ref_outs) or {}
    metrics = []
    for k, t in enumerate(ir.output_tensors()):
        dev = np.stack([np.asarray(v[k]).reshape(t.shape) for v in device_outs])
        ref = np.stack([np.asarray(v[k]).reshape(t.shape) for v in ref_outs])
        if k in masks:
            for j, rows in enumerate(masks[k]):
                dev[j, :, rows:] = 0
                ref[j, :, rows:] = 0
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
    ins = ir.input_tensors()
    n = samples if samples is not None else DEFAULT_SAMPLES
    if n <= 0:
        raise TinygenError("--samples must be at least 1")
    source = data or calib
    if source:
        loaded = load_samples(Path(source), [t.shape for t in ins],
                              what="data" if data else "calibration")
        vectors = []
        for s in loaded[: (None if data and samples is None else n)]:
            vec = []
            for x, t in zip(s, ins):
                x = np.asarray(x)
                vec.append(x.astype(np.int8).reshape(t.shape) if x.dtype == np.int8
                           else quantize(x, t))
            vectors.append(vec)
        return vectors
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, t.shape, dtype=np.int8) for t in ins] for _ in range(n)]


def check_device_matches(info, ir: Model, board: Board, runtime: str) -> None:
    if info.signature != ir.signature:
        raise TinygenError(
            f"the device runs a different model (signature {info.signature[:16]}..., expected "
            f"{ir.signature[:16]}...); flash the build of this model first")
    if not info.model_ready:
        raise TinygenError(f"the device's model failed to initialise (status {info.model_status}); "
                           "check the arena size and the op resolver")
    if len(info.inputs) != len(ir.inputs) or len(info.outputs) != len(ir.outputs):
        raise TinygenError("the device reports a different number of inputs/outputs than the model")


def run_vectors(client, ir: Model, vectors, progress=None) -> tuple[list, list[int]]:
    from .device.protocol import InferenceResult  # noqa: F401  (type only)
    stateful = any(op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in ir.operators)
    outs, counters = [], []
    for i, vec in enumerate(vectors):
        if stateful:
            client.reset_state()
        res = client.infer(vec)
        outs.append(res.outputs)
        counters.append(int(res.counter))
        if progress and (i + 1) % max(1, len(vectors) // 10) == 0:
            progress(f"device: {i + 1}/{len(vectors)} vectors")
    return outs, counters


def run_reference(ir: Model, vectors) -> list:
    from .reference import TflmReference
    ref = TflmReference(ir.tflite)
    stateful = any(op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in ir.operators)
    outs = []
    for vec in vectors:
        if stateful:
            ref.reset()
        outs.append(ref.run(vec))
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


def latency_figures(counters: list[int], unit: str) -> dict:
    key = "instructions" if unit == "instructions" else "cycles"
    c = np.asarray(counters, dtype=np.int64)
    # Like MLPerf Tiny, quote a warm inference: the second one when there are two or more.
    steady = int(c[1]) if len(c) > 1 else int(c[0])
    return {key: steady, "unit": unit, "min": int(c.min()), "max": int(c.max()),
            "mean": float(c.mean()), "per_vector": [int(v) for v in c]}


def write_junit(report: VerifyReport, path: Path) -> None:
    suite = ET.Element("testsuite", name=f"tinygen.verify.{report.board}",
                       tests=str(len(report.outputs)),
                       failures=str(sum(not o.passed for o in report.outputs)),
                       time=f"{report.duration_s:.3f}")
    for o in report.outputs:
        case = ET.SubElement(suite, "testcase", classname=f"{report.board}.{report.runtime}",
                             name=f"output{o.index}:{o.name}")
        if not o.passed:
            f = ET.SubElement(case, "failure", message=f"max |delta| {o.max_abs_diff_lsb} LSB > "
                                                      f"tolerance {report.tolerance_lsb}")
            f.text = json.dumps(asdict(o))
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


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
    m = r.memory
    if m.get("flash_code") is not None:
        lines.append(f"  flash: code {m['flash_code']:,} B + weights {m['flash_weights']:,} B; "
                     f"RAM: activations {m['ram_activations']:,} B of {m['ram_total']:,} B total")
    verdict = "PASS" if r.passed else "FAIL"
    exact = "bit-exact" if r.bit_exact else "not bit-exact"
    lines.append(f"{verdict}: {exact} on all {len(r.outputs)} outputs" if r.bit_exact
                 else f"{verdict}: {exact}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------


def verify_on_client(client, ir: Model, board: Board, runtime: str, vectors, tolerance: int,
                     port: str, project_dir: Path | None, progress=None) -> VerifyReport:
    t0 = time.monotonic()
    info = client.info()
    check_device_matches(info, ir, board, runtime)
    if progress:
        progress(f"device: {info.board}, runtime {info.runtime}, arena {info.arena_bytes:,} B, "
                 f"protocol v{info.protocol_version}")
    dev_outs, counters = run_vectors(client, ir, vectors, progress)
    ref_outs = run_reference(ir, vectors)
    metrics = compare_outputs(ir, dev_outs, ref_outs, tolerance)
    bit_exact = all(o.max_abs_diff_lsb == 0 for o in metrics)
    return VerifyReport(
        passed=all(o.passed for o in metrics), bit_exact=bit_exact, board=board.id,
        runtime=info.runtime, port=port, model_signature=ir.signature, vectors=len(vectors),
        tolerance_lsb=tolerance, outputs=metrics,
        latency=latency_figures(counters, info.counter_unit), memory=memory_figures(project_dir),
        device={"board": info.board, "runtime": info.runtime, "arena_bytes": info.arena_bytes,
                "protocol_version": info.protocol_version},
        duration_s=time.monotonic() - t0)


def run_verify(args, con) -> int:
    from .build.project import build, choose_runtime, default_out_dir
    board = get_board(args.board or DEFAULT_EMULATED_BOARD)
    runtime = choose_runtime(board, args.runtime)
    tolerance = args.tolerance if args.tolerance is not None else (0 if runtime == "aot" else 1)
    if tolerance < 0:
        raise TinygenError("--tolerance must be >= 0")
    ports = args.port or []
    if not board.emulated and not ports:
        raise TinygenError(f"{board.id} is a real board: give its serial port with --port "
                           f"(e.g. --port {board.serial_port or '/dev/ttyUSB0'})")

    project_dir: Path | None = None
    # With --port, talk to a device that is already running (a flashed board, or a
    # QEMU started by `tinygen flash`); without, an emulated board is built and started.
    own_qemu = board.emulated and not ports
    if own_qemu:
        out = Path(args.output) if args.output else default_out_dir(Path(args.model), board)
        result = build(args.model, board.id, runtime=runtime, calib=args.calib, out_dir=out,
                       progress=con.progress, detection=args.detection)
        ir = result.conversion.ir
        project_dir = result.out_dir
        elf = result.elf
    else:
        from .convert import convert
        from .load import load_model
        ir = convert(load_model(args.model), Path(args.calib) if args.calib else None,
                     progress=con.progress, detection=args.detection).ir
        if args.output and (Path(args.output) / "tinygen.json").exists():
            project_dir = Path(args.output)

    vectors = make_vectors(ir, args.samples, args.data, args.calib)
    con.progress(f"{len(vectors)} input vectors")

    from .device.protocol import DeviceClient
    reports = []
    if own_qemu:
        from .device.qemu import QemuProcess
        con.progress(f"starting QEMU ({board.qemu_machine}) with {elf.name}")
        with QemuProcess(board.qemu_machine, elf) as qemu:
            with DeviceClient.open(qemu.url) as client:
                reports.append(verify_on_client(client, ir, board, runtime, vectors, tolerance,
                                                "qemu:" + board.qemu_machine, project_dir,
                                                con.progress))
    else:
        for url in ports:
            with DeviceClient.open(url, board.baud) as client:
                reports.append(verify_on_client(client, ir, board, runtime, vectors, tolerance,
                                                url, project_dir, con.progress))

    for r in reports:
        con.out(format_report(r))
    combined = reports[0] if len(reports) == 1 else None
    payload = combined.as_dict() if combined else {
        "passed": all(r.passed for r in reports), "bit_exact": all(r.bit_exact for r in reports),
        "boards": [r.as_dict() for r in reports]}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if args.junit:
        write_junit(reports[0], Path(args.junit))
    if not all(r.passed for r in reports):
        raise VerificationFailed("device outputs differ from the reference beyond the tolerance")
    return 0
