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
from .accuracy import Accuracy, quality_notes, verify_accuracy
from .compare import float_comparison
from .detection import detection_outputs, detector_classes, measure_detection
from .device_run import (
    combined_payload,
    precheck_port,
    run_float_detector,
    run_float_detector_tflite,
    run_float_model,
    run_reference,
    verify_ports,
)
from .measure import add_stack_figure
from .results import BoardRun, VerifyReport
from .vectors import labelled_vector_set, precheck_sample_files


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
    accuracy: Accuracy | None = None
    calibration: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)    # in the verdict line, not failures
    failures: list[str] = field(default_factory=list)    # thresholds the user set, missed

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
                 ports: Sequence[str] = (), places: Sequence[str] = (), calib: str | Path | None = None,
                 data: str | Path | None = None, samples: int | None = None,
                 tolerance: int | None = None, detection: str | Path | None = None,
                 output: str | Path | None = None, profile: bool = False,
                 tflm_source: str | Path | None = None, arena_bytes: int | None = None,
                 float_reference: bool = True, class_names: str | Path | None = None,
                 float_model: str | Path | None = None,
                 min_agreement: float | None = None, min_accuracy: float | None = None,
                 force: bool = False, accept_dense: bool = False,
                 progress: Callable[[str], None] = _quiet, warn: Callable[[str], None] = _quiet,
                 progress_bar: Callable[[int, list[str]], Any] | None = None) -> VerifyOutcome:
    """Build (emulated boards without ``ports``) or convert, run the vectors on
    the device(s) and on the TFLM reference, compare.  Raises TinygenError for
    bad input or when the only board could not be verified; a failed
    comparison is in the outcome (``passed``), not an exception.

    ``float_reference`` runs the float model on the same inputs (Keras and
    SavedModel sources): float/int8 agreement, and float accuracy on labels.
    ``class_names`` is a text file of class names (else labels.txt beside
    --data, if there is one); ``min_agreement``/``min_accuracy`` (fractions)
    fail the run below them; ``force`` lets -o replace another model's project.
    ``places`` names the farm place of each port (labels in the reports)."""
    from ..project.build import build, choose_runtime, default_out_dir
    board = get_board(board_id or DEFAULT_EMULATED_BOARD)
    runtime = choose_runtime(board, runtime)
    tolerance = 0 if tolerance is None else tolerance
    if tolerance < 0:
        raise TinygenError("--tolerance must be >= 0")
    for name, value in (("--min-agreement", min_agreement), ("--min-accuracy", min_accuracy)):
        if value is not None and not 0 <= value <= 1:
            raise TinygenError(f"{name} is a percentage from 0 to 100")
    names, names_given = _class_names(class_names, data)
    if float_model is not None and not Path(float_model).exists():
        raise TinygenError(f"--float-model {float_model} does not exist")
    if min_accuracy is not None and not data:
        raise TinygenError("--min-accuracy needs labelled test data: --data FILE holding "
                           "labels (a .npz with x and y, a labels .npy beside the inputs, or a folder of "
                           "one .npy per class)")
    if places and len(places) != len(ports):
        raise TinygenError("verify_model: give one place name per port")
    unique = list(dict.fromkeys(ports))
    if len(unique) != len(ports) and not places:
        warn("the same --port was given more than once; it is verified once")
        ports = unique
    if not board.emulated and not ports:
        raise TinygenError(f"{board.id} is a real board: give its serial port with --port "
                           f"(e.g. --port {board.serial_port or '/dev/ttyUSB0'})")
    precheck_sample_files(model, data, calib)
    if len(ports) == 1 and not places:     # with several, a missing board is that board's error
        precheck_port(ports[0])

    project_dir: Path | None = None
    # With ports, talk to devices that are already running (flashed boards, or
    # QEMUs started by `tinygen flash`); without, an emulated board is built and started.
    own_qemu = board.emulated and not ports
    elf = None
    if own_qemu:
        out = Path(output) if output else default_out_dir(Path(model), board, "protocol")
        result = build(model, board.id, runtime=runtime, calib=calib, out_dir=out,
                       progress=progress, detection=detection, profile=profile,
                       tflm_source=tflm_source, arena_bytes=arena_bytes, force=force,
                       firmware="protocol", accept_dense=accept_dense)
        for w in result.warnings:
            warn(w)
        conversion = result.conversion
        ir = conversion.ir
        device_ir = result.device_ir or ir
        project_dir = result.out_dir
        elf = result.elf
    else:
        if profile:
            warn("--profile only changes how tinygen builds firmware; with --port the "
                 "boards' firmware decides (build and flash it with `tinygen build --profile`)")
        from ..convert import convert
        from ..load import load_model
        from ..prune.channels import remove_channels
        conversion = convert(load_model(model), Path(calib) if calib else None,
                             progress=progress, detection=detection)
        ir = conversion.ir
        device_ir = remove_channels(ir)[0]      # what `tinygen build` put on the board
        if output and (Path(output) / "tinygen.json").exists():
            project_dir = Path(output)

    calibration = _calibration(conversion)
    for w in (conversion.report.warnings if conversion.report is not None else []):
        warn(w)
    detector = detection_outputs(ir)
    if detector and float_model is not None and Path(float_model).suffix != ".tflite":
        # said before the devices run, not after
        raise TinygenError(
            f"--float-model {Path(float_model).name}: a detector's float level takes a float "
            ".tflite ending in TFLite_Detection_PostProcess; for the Keras detector, verify "
            "the Keras model with --detection")
    vectors, float_vectors, truth = labelled_vector_set(ir, samples, data, calib,
                                                        class_names=names, boxes=detector)
    progress(f"{len(vectors)} input vectors" + (f", labelled ({truth[1]})" if truth else ""))
    if min_accuracy is not None and truth is None:
        raise TinygenError(
            f"--min-accuracy needs labels, and {Path(str(data)).name} holds none "
            + ("(a detector's: boxes and classes in the .npz, or a <name>_gt.npz beside it)"
               if detector else "(save x and y in one .npz, or the labels as a .npy beside it)"))
    # The reference runs the converted model as it is; the device runs it
    # without its removable channels, which must not change one bit.
    progress("running the tflite_micro reference")
    ref_outs = run_reference(ir, vectors)

    port_names = list(places or ports) or [f"qemu:{board.qemu_machine}"]
    bar = progress_bar(len(vectors), port_names) if progress_bar else None
    try:
        if own_qemu:
            from ..device.qemu import QemuProcess
            progress(f"starting QEMU ({board.qemu_machine}) with {elf.name}")
            with QemuProcess(board.qemu_machine, elf, qmp=True) as qemu:
                runs = verify_ports([qemu.url], device_ir, board, runtime, vectors, tolerance,
                                    project_dir, ref_outs, bar, labels=port_names)
                add_stack_figure(runs, qemu, warn)
        else:
            if len(ports) > 1:
                progress(f"verifying on {len(ports)} boards at once")
            runs = verify_ports(list(ports), device_ir, board, runtime, vectors, tolerance,
                                project_dir, ref_outs, bar, places=list(places) or None)
    finally:
        if bar is not None:
            bar.close()

    failed = [r for r in runs if r.error]
    if failed and len(runs) == 1:
        if places:
            raise TinygenError(f"place {places[0]}: {failed[0].error}")
        raise failed[0].exception or TinygenError(failed[0].error)

    float_outs = None
    detection_accuracy = None
    if detector and truth is not None:
        float_dets, float_from = None, ""
        if float_model is not None:
            # the user named the float model: it is the float level, whatever the source
            progress(f"running the float detector ({Path(float_model).name}) on tflite_micro")
            float_dets = run_float_detector_tflite(float_model, ir, float_vectors)
            float_from = f"float TFLite {Path(float_model).name}"
        elif detection is not None and not str(model).endswith(".tflite"):
            progress("running the float detector (Keras heads + the same post-processing)")
            float_dets = run_float_detector(model, Path(detection), float_vectors)
            float_from = f"Keras {Path(model).name} + the same post-processing"
        detection_accuracy = measure_detection(
            truth[0], ref_outs, n_classes=detector_classes(ir),
            device_outs={r.label: r.device_outs for r in runs if r.report is not None},
            float_outs=float_dets, names=names, truth_from=truth[1], float_from=float_from)
        truth = None            # boxes, not class labels: no classifier accuracy
    elif float_model is not None or ((float_reference or truth) and not detection
                                     and not str(model).endswith(".tflite")):
        source = float_model if float_model is not None else model
        progress(f"running the float model ({Path(source).name}) on the same inputs")
        try:
            float_outs = run_float_model(source, ir, float_vectors)
        except TinygenError as exc:
            if float_model is not None:
                raise               # the user named it: not a silent skip
            warn(f"float model comparison skipped: {exc}")
    float_check = float_comparison(ir, float_outs, ref_outs, runs)
    accuracy = None
    if truth is not None:
        outs = {r.label: r.device_outs for r in runs if r.report is not None}
        try:
            accuracy = verify_accuracy(ir, truth[0], ref_outs, outs, float_outs, names,
                                       labels_from=truth[1])
        except TinygenError as exc:
            if names_given or names is None:
                raise
            # A labels.txt found beside the data that does not fit is not the user's doing.
            warn(f"{Path(str(data)).parent / 'labels.txt'} not used: {exc}")
            accuracy = verify_accuracy(ir, truth[0], ref_outs, outs, float_outs, None,
                                       labels_from=truth[1])
    elif names is not None and names_given:
        warn("--labels names the classes, but the test data holds no labels: no accuracy")
    warnings, failures = quality_notes(
        synthetic=bool(calibration.get("synthetic")), float_check=float_check, accuracy=accuracy,
        min_agreement=min_agreement, min_accuracy=min_accuracy, detection=detection_accuracy)
    for w in warnings:
        warn(w)
    for r in runs:
        if r.report is not None:
            r.report.warnings, r.report.failures = list(warnings), list(failures)
            r.report.calibration = calibration
            r.report.accuracy = accuracy.as_dict() if accuracy is not None else None
            r.report.detection = (detection_accuracy.as_dict()
                                  if detection_accuracy is not None else None)
            if failures:
                r.report.passed = False
    payload = combined_payload(runs, float_check)
    if len(runs) > 1:
        payload.update(warnings=warnings, failures=failures, calibration=calibration,
                       accuracy=accuracy.as_dict() if accuracy is not None else None,
                       detection=(detection_accuracy.as_dict()
                                  if detection_accuracy is not None else None))
        if failures:
            payload["passed"] = False
    return VerifyOutcome(board=board, runtime=runtime, ir=ir, runs=runs, ref_outs=ref_outs,
                         float_outs=float_outs, float_check=float_check,
                         project_dir=project_dir, payload=payload, accuracy=accuracy,
                         calibration=calibration, warnings=warnings, failures=failures)


def _class_names(class_names: str | Path | None,
                 data: str | Path | None) -> tuple[list[str] | None, bool]:
    """(names, given with --labels): --labels FILE, else a labels.txt beside --data."""
    from ..data import class_folder, load_class_names
    if class_names is not None:
        return load_class_names(class_names), True
    if data is not None and Path(data).is_dir():
        return [stem for stem, _ in class_folder(Path(data))], True
    if data is not None and (Path(data).parent / "labels.txt").is_file():
        return load_class_names(Path(data).parent / "labels.txt"), False
    return None, False


def _calibration(conversion) -> dict:
    if conversion.report is None:
        return {"source": "none (the model is an int8 .tflite, calibrated before)",
                "synthetic": False}
    return {"source": conversion.report.calibration,
            "synthetic": bool(conversion.report.synthetic_calibration)}
