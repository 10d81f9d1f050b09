"""Camera front ends on qemu-cortex-m4: instructions per frame and RAM of the
front end and of the model, with the aot runtime and TFLM's reference kernels.

    python3 bench/camera.py [--runtime aot|tflm|both] [--tflm-source DIR] [-o bench/camera.json]

Each row: `tinygen frontend --image` for 160x120 frames (grayscale or RGB565,
bilinear or nearest) into a 96x96x1 image, before a 3x3 stride-2 conv
(96x96x1 -> 48x48x4, the differential corpus' builder), verified with two
random frames by `tinygen verify --frontend --raw` (0 LSB against the
tflite_micro interpreter on every output); the counts are QEMU -icount
instructions from the verify report's per-operator split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("grayscale", "bilinear"), ("grayscale", "nearest"), ("rgb565", "nearest"),
           ("rgb565", "bilinear")]
BOARD = "qemu-cortex-m4"


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinygen", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def run(runtimes: list[str], tree: str, work: Path) -> list[dict]:
    from tinygen.tools import corpus
    model = work / "conv96.tflite"
    model.write_bytes(corpus.conv(np.random.default_rng(0), h=96, w=96, cin=1, cout=4,
                                  stride=(2, 2)))
    rows = []
    for fmt, resize in CONFIGS:
        fe = work / f"fe_{fmt}_{resize}.tflite"
        r = _cli("frontend", "--image", "--frame", "160x120", "--format", fmt, "--resize",
                 resize, "--model", model, "-o", fe, "-q")
        if r.returncode:
            raise SystemExit(r.stderr)
        frames = work / f"frames_{fmt}.npy"
        bpp = 2 if fmt == "rgb565" else 1
        np.save(frames, np.random.default_rng(1).integers(0, 256, (2, 120, 160, bpp),
                                                          dtype=np.uint8))
        for runtime in runtimes:
            report = work / f"{fmt}_{resize}_{runtime}.json"
            extra = ["--tflm-source", tree] if runtime == "tflm" else []
            r = _cli("verify", model, "--frontend", fe, "--raw", frames, "--board", BOARD,
                     "--runtime", runtime, "-o", work / f"proj_{fmt}_{resize}_{runtime}",
                     "--force", "-q", "--json", report, *extra)
            if r.returncode:
                raise SystemExit(f"{fmt} {resize} {runtime}: {r.stderr.strip()}")
            d = json.loads(report.read_text())
            p = d["pipeline"]
            row = {"format": fmt, "resize": resize, "runtime": runtime, "board": BOARD,
                   "bit_exact": d["bit_exact"],
                   "instructions_per_frame": p["instructions_per_frame"],
                   "frontend": p["parts"]["frontend"], "model": p["parts"]["model"],
                   "arena_bytes": (d.get("device") or {}).get("arena_bytes"),
                   "arena_used_bytes": (d.get("device") or {}).get("arena_used_bytes"),
                   "ram_total": (d.get("memory") or {}).get("ram_total")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", choices=("aot", "tflm", "both"), default="both")
    ap.add_argument("--tflm-source", default="/work/shared/tflm/reference",
                    help="TFLM tree for --runtime tflm (reference kernels)")
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "camera.json"))
    args = ap.parse_args(argv)
    runtimes = ["aot", "tflm"] if args.runtime == "both" else [args.runtime]
    with tempfile.TemporaryDirectory(prefix="tg-bench-camera-") as tmp:
        rows = run(runtimes, args.tflm_source, Path(tmp))
    Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
