"""verify as a library call: typed arguments in, a VerifyOutcome out.

The CLI parses its options and calls :func:`verify_model`; printing and the
report files (text, JSON, JUnit, HTML) are the report package's business and
happen after, from the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..boards import DEFAULT_EMULATED_BOARD, Board, get_board
from ..errors import TinygenError
from ..ir import Model
from .compare import float_comparison
from .device_run import (
    combined_payload,
    precheck_port,
    run_float_model,
    run_reference,
    verify_ports,
)
from .measure import add_stack_figure
from .results import BoardRun, VerifyReport
from .vectors import make_vector_set, precheck_sample_files


@dataclass
class VerifyOutcome:
    board: Board
    runtime: str
    ir: Model
    runs: list[BoardRun]
    ref_outs: list
    float_outs: list | None
    float_check: dict | None
    project_dir: Path | None
    payload: dict = field(default_factory=dict)

    @property
    def reports(self) -> list[VerifyReport]:
        return [r.report for r in self.runs if r.report is not None]

    @property
    def failed(self) -> list[BoardRun]:
        return [r for r in self.runs if r.error]

    @property
    def passed(self) -> bool:
        return not self.failed and all(r.passed for r in self.reports)


def _quiet(_message: str) -> None:
    pass


def verify_model(model: str | Path, *, board_id: str | None = None, runtime: str | None = None,
                 ports: Sequence[str] = (), calib: str | Path | None = None,
                 data: str | Path | None = None, samples: int | None = None,
                 tolerance: int | None = None, detection: str | Path | None = None,
                 output: str | Path | None = None, profile: bool = False,
                 tflm_source: str | Path | None = None, arena_bytes: int | None = None,
                 float_reference: bool = False,
                 progress: Callable[[str], None] = _quiet, warn: Callable[[str], None] = _quiet,
                 progress_bar: Callable[[int, list[str]], Any] | None = None) -> VerifyOutcome:
    """Build (emulated boards without ``ports``) or convert, run the vectors on
    the device(s) and on the TFLM reference, compare.  Raises TinygenError for
    bad input or when the only board could not be verified; a failed
    comparison is in the outcome (``passed``), not an exception."""
    from ..project.build import build, choose_runtime, default_out_dir
    board = get_board(board_id or DEFAULT_EMULATED_BOARD)
    runtime = choose_runtime(board, runtime)
    tolerance = 0 if tolerance is None else tolerance
    if tolerance < 0:
        raise TinygenError("--tolerance must be >= 0")
    unique = list(dict.fromkeys(ports))
    if len(unique) != len(ports):
        warn("the same --port was given more than once; it is verified once")
    ports = unique
    if not board.emulated and not ports:
        raise TinygenError(f"{board.id} is a real board: give its serial port with --port "
                           f"(e.g. --port {board.serial_port or '/dev/ttyUSB0'})")
    precheck_sample_files(model, data, calib)
    if len(ports) == 1:     # with several, a missing board is that board's error
        precheck_port(ports[0])

    project_dir: Path | None = None
    # With ports, talk to devices that are already running (flashed boards, or
    # QEMUs started by `tinygen flash`); without, an emulated board is built and started.
    own_qemu = board.emulated and not ports
    elf = None
    if own_qemu:
        out = Path(output) if output else default_out_dir(Path(model), board)
        result = build(model, board.id, runtime=runtime, calib=calib, out_dir=out,
                       progress=progress, detection=detection, profile=profile,
                       tflm_source=tflm_source, arena_bytes=arena_bytes)
        ir = result.conversion.ir
        project_dir = result.out_dir
        elf = result.elf
    else:
        if profile:
            warn("--profile only changes how tinygen builds firmware; with --port the "
                 "boards' firmware decides (build and flash it with `tinygen build --profile`)")
        from ..convert import convert
        from ..load import load_model
        ir = convert(load_model(model), Path(calib) if calib else None,
                     progress=progress, detection=detection).ir
        if output and (Path(output) / "tinygen.json").exists():
            project_dir = Path(output)

    vectors, float_vectors = make_vector_set(ir, samples, data, calib)
    progress(f"{len(vectors)} input vectors")
    progress("running the tflite_micro reference")
    ref_outs = run_reference(ir, vectors)

    labels = list(ports) or [f"qemu:{board.qemu_machine}"]
    bar = progress_bar(len(vectors), labels) if progress_bar else None
    try:
        if own_qemu:
            from ..device.qemu import QemuProcess
            progress(f"starting QEMU ({board.qemu_machine}) with {elf.name}")
            with QemuProcess(board.qemu_machine, elf, qmp=True) as qemu:
                runs = verify_ports([qemu.url], ir, board, runtime, vectors, tolerance,
                                    project_dir, ref_outs, bar, labels=labels)
                add_stack_figure(runs, qemu, warn)
        else:
            if len(ports) > 1:
                progress(f"verifying on {len(ports)} boards at once")
            runs = verify_ports(ports, ir, board, runtime, vectors, tolerance, project_dir,
                                ref_outs, bar)
    finally:
        if bar is not None:
            bar.close()

    failed = [r for r in runs if r.error]
    if failed and len(runs) == 1:
        raise failed[0].exception or TinygenError(failed[0].error)

    float_outs = None
    if float_reference and not detection and not str(model).endswith(".tflite"):
        progress("running the float model on the same inputs")
        try:
            float_outs = run_float_model(model, ir, float_vectors)
        except TinygenError as exc:
            warn(f"float model comparison skipped: {exc}")
    float_check = float_comparison(ir, float_outs, ref_outs, runs)
    return VerifyOutcome(board=board, runtime=runtime, ir=ir, runs=runs, ref_outs=ref_outs,
                         float_outs=float_outs, float_check=float_check,
                         project_dir=project_dir, payload=combined_payload(runs, float_check))
