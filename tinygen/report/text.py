"""The human-readable report and the progress display of device runs."""

from __future__ import annotations

import shutil
import sys
import threading
import time

from ..sizes import summary_lines
from ..verify.accuracy import Accuracy, format_confusion
from ..verify.results import VerifyReport


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
        lines.extend(format_accuracy(r.accuracy, r.port))
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

