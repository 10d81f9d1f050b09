"""tinygen benchmark: one suite verified on 1, 2, 4 and 8 boards of a labgrid farm.

    python3 bench/farm_scale.py [--boards 1,2,4,8] [--vectors 100]
                                [--models quickstart,kws_cnn,lstm_anomaly]

For every model it brings up a farm of emulated boards (`tinygen farm up`:
QEMU boards, a labgrid coordinator and exporter on loopback, places), then
for each board count acquires that many places through labgrid, verifies the
same vectors on all of them at once (every board runs every vector, as
`tinygen verify --place` does) and releases them.  Per run: the wall time of
the whole cycle, the acquire and release times, the device phase (the
slowest board's exchange), vectors per second over the device phase, and
whether every board was bit-exact against the tflite_micro interpreter.  A
bare acquire/release cycle of the same places is timed separately, 5 times.

Writes bench/farm_scale.json and the farm section of docs/benchmarks.md.
Times are wall-clock on a shared 2-core machine: they vary from run to run;
instruction counts are deterministic and are in the main benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinygen.farm import acquire_places  # noqa: E402
from tinygen.farm.control import farm_down, farm_up  # noqa: E402
from tinygen.verify import verify_model  # noqa: E402

BOARD = "qemu-cortex-m4"
BEGIN = "<!-- farm_scale.py: begin -->"
END = "<!-- farm_scale.py: end -->"


def _model(name: str) -> tuple[Path, Path]:
    folder = ROOT / "examples" / name
    return folder / "model.h5", folder / "calib.npy"


def _cycle_times(names: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with acquire_places(names):
            pass
        times.append(time.perf_counter() - t0)
    return times


def run_model(name: str, counts: list[int], vectors: int, work: Path) -> list[dict]:
    model, calib = _model(name)
    state = farm_up(str(model), board_id=BOARD, count=max(counts), farm_dir=work / f"farm-{name}",
                    calib=str(calib), output=str(work / f"project-{name}"), force=True,
                    progress=lambda m: print(f"  .. {m}", file=sys.stderr))
    os.environ["LG_COORDINATOR"] = state.coordinator
    # The boards run the build's int8 model: verify that very .tflite (a
    # second conversion of an LSTM in one process can differ in its bytes,
    # which the handshake rightly refuses).
    tflite = work / f"project-{name}" / "model.tflite"
    rows = []
    try:
        names_all = [p["name"] for p in state.places]
        for k in counts:
            names = names_all[:k]
            t0 = time.perf_counter()
            with acquire_places(names) as sel:
                t_acquired = time.perf_counter()
                outcome = verify_model(str(tflite), board_id=BOARD, ports=sel.ports,
                                       places=sel.names, calib=str(calib), samples=vectors,
                                       float_reference=False)
                t_verified = time.perf_counter()
            t_released = time.perf_counter()
            device_s = max(r.report.duration_s for r in outcome.runs if r.report is not None) \
                if outcome.reports else None
            cycles = _cycle_times(names, 5)
            done = outcome.reports[0].vectors if outcome.reports else vectors   # the data may hold fewer
            row = {"model": name, "boards": k, "vectors_per_board": done,
                   "wall_s": t_released - t0, "acquire_s": t_acquired - t0,
                   "verify_s": t_verified - t_acquired, "release_s": t_released - t_verified,
                   "device_s": device_s,
                   "vectors_per_s": (k * done / device_s) if device_s else None,
                   "acquire_release_cycle_s": statistics.median(cycles),
                   "errors": [r.error for r in outcome.runs if r.error],
                   "bit_exact": bool(outcome.reports) and not outcome.failed
                   and all(r.bit_exact for r in outcome.reports)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    finally:
        farm_down(state.directory)
        os.environ.pop("LG_COORDINATOR", None)
    return rows


def markdown(rows: list[dict], cores: int) -> str:
    lines = [
        "## Board farm: the same suite on 1, 2, 4 and 8 farm boards (qemu-cortex-m4)",
        "",
        "Made by `python3 bench/farm_scale.py` (raw figures: bench/farm_scale.json). A farm of "
        "emulated boards on loopback (`tinygen farm up`: QEMU boards, a labgrid coordinator and "
        "exporter, one place per board); for each count that many places are acquired through "
        "labgrid's Python API, every board runs every vector (as `tinygen verify --place` does) "
        "and the places are released. *device* is the slowest board's exchange, *vectors/s* "
        "counts the vectors of all boards over it; *verify* also holds loading the int8 "
        ".tflite the boards run and the tflite_micro reference, done once per run whatever the "
        "board count; *acquire* of the first run includes importing labgrid; "
        "*acquire+release* is a bare cycle of the same places (median of 5). Wall-clock times "
        f"on a shared machine with {cores} cores: they move from run to run.",
        "",
        "| model | boards | vectors per board | wall | acquire | verify | release | device | "
        "vectors/s | acquire+release | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['boards']} | {r['vectors_per_board']} | {r['wall_s']:.1f} s | "
            f"{r['acquire_s'] * 1000:.0f} ms | {r['verify_s']:.1f} s | {r['release_s'] * 1000:.0f} ms | "
            + (f"{r['device_s']:.1f} s | {r['vectors_per_s']:.1f} | " if r["device_s"] else "- | - | ")
            + f"{r['acquire_release_cycle_s'] * 1000:.0f} ms | "
            + ("yes" if r["bit_exact"] else "no" + (": " + "; ".join(r["errors"]) if r["errors"]
                                                     else " (answered, differs)")) + " |")
    return "\n".join(lines) + "\n" + NOTES


NOTES = """
How it grows, on this 2-core machine: each emulated board is a QEMU process
that needs a host core while it computes, and the exchange is stop-and-wait
over loopback TCP, so one board leaves the cores idle between vectors.
Vectors per second grow with the board count while there is idle time to
fill (quickstart 34.7 → 92.8 → 110 → 114 per second from 1 to 8 boards;
kws_cnn 30 → 63) and flatten once the two cores are busy: beyond that more
emulated boards only take turns, and the wall time of a run grows with
them. Real boards compute on their own silicon; there the host waits on
serial lines and the growth continues until the host's USB or network is
saturated (not measured here: no boards). Acquiring and releasing places
costs tens of milliseconds, about 10 ms per place for a cycle (two
coordinator round trips each), small beside the device phase; the first
acquire of a process also imports labgrid and connects (about 0.2 s here).
The lstm_anomaly rows answered on every board but are not bit-exact: the
same 100 calibration inputs also give max |Δ| 3 LSB (99.2 % of elements
exact) with `tinygen verify` on its own QEMU, so this is the aot runtime on
these inputs, not the farm (its README's 400 test windows verify 0 LSB).
Since fixed: the LSTM's gate multipliers took the input and weight scale
product in float32 where TFLM's LSTM takes it in double, which moved two of
these windows (70 and 90) across a rounding tie; `tinygen verify` now gives
0 LSB on all 100 (these rows were measured before the fix).
"""


def write_section(doc: Path, text: str) -> None:
    """Replace (or append) this benchmark's section; bench/run.py keeps it."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text}{END}\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        doc.write_text(head + block + tail)
    else:
        doc.write_text(old.rstrip("\n") + "\n\n" + block)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", default="1,2,4,8")
    ap.add_argument("--vectors", type=int, default=100,
                    help="vectors per board, from each example's calib.npy (at most what it holds)")
    ap.add_argument("--models", default="quickstart,kws_cnn")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rewrite the section from bench/farm_scale.json")
    args = ap.parse_args()
    if args.report_only:
        rows = json.loads((ROOT / "bench" / "farm_scale.json").read_text())
        write_section(Path(args.doc), markdown(rows, os.cpu_count() or 0))
        return 0
    counts = [int(x) for x in args.boards.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg-farm-bench-") as tmp:
        for name in args.models.split(","):
            rows += run_model(name, counts, args.vectors, Path(tmp))
    (ROOT / "bench" / "farm_scale.json").write_text(json.dumps(rows, indent=2))
    text = markdown(rows, os.cpu_count() or 0)
    write_section(Path(args.doc), text)
    print(text)
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
