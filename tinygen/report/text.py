"""The human-readable report and the progress display of device runs."""

from __future__ import annotations

import sys
import threading
import time

from ..sizes import summary_lines
from ..verify.accuracy import Accuracy, format_confusion
from ..verify.detection import format_detection
from ..verify.results import VerifyReport


def format_report(r: VerifyReport) -> str:
    where = f"place {r.place} ({r.port})" if r.place else r.port
    lines = [f"verify {r.board} ({r.runtime}) over {where}: {r.vectors} vectors, model "
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
        if lat.get("ms") is not None:
            measured = lat["ms_basis"].startswith("measured")
            lines.append(f"  time: {lat['ms']:.3f} ms per inference at {lat['clock_mhz']} MHz "
                         + ("(cycle counter)" if measured else
                            "(estimate: one instruction per cycle)"))
        rate = lat.get("macs_per_cycle", lat.get("macs_per_instruction"))
        if rate is not None:
            per = "cycle" if "macs_per_cycle" in lat else "instruction"
            lines.append(f"  compute: {lat['macs']:,} MACs, {rate:.3f} MACs per {per}")
        if lat.get("energy_uj") is not None:
            lines.append(f"  energy: {lat['energy_uj']:,.1f} µJ per inference "
                         f"({lat['energy_basis']})")
        elif lat.get("energy_basis"):
            lines.append(f"  energy: {lat['energy_basis']}")
        per_op = lat.get("per_op") or []
        if per_op:
            top = sorted(per_op, key=lambda o: -o["mean"])[:3]
            lines.append("  slowest ops: " + ", ".join(
                f"#{o['index']} {o['op']} {o['share']:.0%}"
                + (f" ({o['ms']:.3f} ms)" if o.get("ms") is not None else "") for o in top))
    lines.extend(f"  memory: {line}" for line in summary_lines(r.memory))
    used, reserved = r.device.get("arena_used_bytes"), r.device.get("arena_bytes")
    if used is not None and reserved and r.runtime == "tflm":
        lines.append(f"  arena: TFLM used {used:,} B of the {reserved:,} B reserved "
                     f"({used / reserved:.0%}; read from the device after the run)")
    if r.calibration:
        lines.append(f"  calibration: {r.calibration.get('source')}"
                     + (" (SYNTHETIC: random inputs, not your data)"
                        if r.calibration.get("synthetic") else ""))
    if r.accuracy:
        lines.extend(format_accuracy(r.accuracy, r.place or r.port))
    if r.detection:
        lines.extend(format_detection(r.detection, r.place or r.port))
    lines.append(verdict_line(r))
    return "\n".join(lines)


def verdict_line(r: VerifyReport) -> str:
    """PASS/FAIL, and everything a PASS does not vouch for, on the same line:
    "PASS (bit-exact; accuracy unknown: synthetic calibration)"."""
    verdict = "PASS" if r.passed else "FAIL"
    exact = "bit-exact" if r.bit_exact else "not bit-exact"
    notes = list(r.failures) + list(r.warnings)
    if notes:
        return f"{verdict} ({exact}; {'; '.join(notes)})"
    return (f"{verdict}: {exact} on all {len(r.outputs)} outputs" if r.bit_exact
            else f"{verdict}: {exact}")


def format_accuracy(acc: dict, port: str | None = None) -> list[str]:
    """Accuracy at each level, top-1 agreement and the device's confusion matrix."""
    a = Accuracy(**{k: v for k, v in acc.items() if k != "device"})
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    dev = a.devices.get(port) if port in a.devices else a.device
    lines = [f"  accuracy on {a.samples:,} labelled vectors ({a.labels_from}), output {a.output}: "
             f"float {pct(a.float)}, int8 host (TFLM) {pct(a.int8)}, device {pct(dev)}"]
    if a.float_vs_int8_top1 is not None:
        lines.append(f"  top-1 agreement float/int8: {a.float_vs_int8_top1:.1%}")
    level = port if port in a.confusion else "int8"
    lines.append(f"  confusion ({'device' if level == port else 'int8 host'}; rows: true class):")
    lines.extend(format_confusion(a, level))
    return lines


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _rich_console(stream):
    from rich.console import Console as RichConsole
    return RichConsole(file=stream, force_terminal=True, highlight=False, soft_wrap=True)


class StepDisplay:
    """The long steps of a command (conversion, calibration, compiling, QEMU
    start, ...): on a terminal the running step with a spinner and its elapsed
    time (rich), each finished one left as a line with its duration; elsewhere
    a plain line per step; nothing when quiet.  While a :class:`VectorProgress`
    bar is up, messages go above it."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = not quiet and _is_terminal(self.stream)
        self.bar: VectorProgress | None = None
        self._progress = None
        self._current: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def step(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.note(message)
            return
        if not self.live:
            self.stream.write(f"  .. {message}\n")
            self.stream.flush()
            return
        with self._lock:
            self._finish_locked()
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      TimeElapsedColumn(), console=_rich_console(self.stream),
                                      transient=True)
            self._progress.add_task(message, total=None)
            self._progress.start()
            self._current = (message, time.monotonic())

    def _finish_locked(self) -> None:
        if self._progress is None or self._current is None:
            return
        self._progress.stop()
        message, t0 = self._current
        self._progress.console.print(f"  .. {message} ({time.monotonic() - t0:.1f} s)",
                                     markup=False)
        self._progress = None
        self._current = None

    def finish(self) -> None:
        """End the running step's display (before the command prints its results)."""
        with self._lock:
            self._finish_locked()


class VectorProgress:
    """Progress of the device runs: on a terminal a rich progress bar per board
    (vectors done, rate, time left), redrawn in place; else a line per 10 % per
    board; nothing when quiet.  Thread-safe: workers call :meth:`advance` and
    :meth:`note`.  ``steps``: the command's StepDisplay, whose messages come
    above the bar while it is up."""

    def __init__(self, total: int, labels: list[str], quiet: bool = False, stream=None,
                 steps: StepDisplay | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.labels = labels
        self.done = [0] * len(labels)
        self.quiet = quiet
        self.bar = not quiet and _is_terminal(self.stream)
        self._lock = threading.Lock()
        self._steps = steps
        self._progress = None
        if self.bar:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            if steps is not None:
                steps.finish()
                steps.bar = self
            self._progress = Progress(
                TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("vectors"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=_rich_console(self.stream))
            self._tasks = [self._progress.add_task(
                _short(lbl) if len(labels) > 1 else "device", total=total) for lbl in labels]
            self._progress.start()

    def note(self, message: str) -> None:
        """A progress message (printed above the bar)."""
        if self.quiet:
            return
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"  .. {message}", markup=False)
            else:
                self.stream.write(f"  .. {message}\n")
                self.stream.flush()

    def advance(self, board: int = 0) -> None:
        if self.quiet:
            return
        with self._lock:
            self.done[board] += 1
            n = self.done[board]
            if self._progress is not None:
                self._progress.advance(self._tasks[board])
            elif n == self.total or n % max(1, self.total // 10) == 0:
                prefix = f"{self.labels[board]}: " if len(self.labels) > 1 else ""
                self.stream.write(f"  .. {prefix}device: {n}/{self.total} vectors\n")
                self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            if self._steps is not None and self._steps.bar is self:
                self._steps.bar = None


def _short(label: str) -> str:
    return label.split("://", 1)[-1]

