"""tinygen benchmark: pruning kws_cnn, and what each form buys on the device.

    python3 bench/pruning.py [--work DIR] [--epochs 20]

Makes the kws_cnn training set (examples/kws_cnn/make_dataset.py, about two
minutes), prunes examples/kws_cnn/model.h5 with `tinygen prune` to 50, 75
and 90 % zero weights (unstructured) and to half of its channels
(structured), then runs `tinygen verify` on qemu-cortex-m4 with the 325
held-out clips for the dense model and each pruned one: accuracy (float
Keras and int8 on the device), flash, arena and guest instructions under
QEMU -icount, bit-exact against the tflite_micro interpreter running the
unpruned int8 model.  Pruned models already in --work are reused.

Writes bench/pruning.json and the "Pruning" section of docs/benchmarks.md
(bench/run.py keeps that section when it rewrites the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KWS = ROOT / "examples" / "kws_cnn"
BOARD = "qemu-cortex-m4"
VARIANTS = [("dense", None, False), ("50% weights", 0.5, False), ("75% weights", 0.75, False),
            ("90% weights", 0.9, False), ("50% channels", 0.5, True)]
RESULTS = ROOT / "bench" / "pruning.json"
HEADING = "## Pruning (kws_cnn, qemu-cortex-m4)"


def model_file(work: Path, sparsity: float, structured: bool) -> Path:
    return work / f"kws_{'channels' if structured else 'weights'}_{int(sparsity * 100)}.h5"


def training_set(work: Path) -> Path:
    path = work / "kws_train.npz"
    if not path.exists():
        sys.path.insert(0, str(KWS))
        from make_dataset import load_or_make
        data = load_or_make(work / "kws_dataset.npz")
        np.savez(path, x=data["x_train"], y=data["y_train"])
    return path


def run(work: Path, epochs: int, learning_rate: float) -> list[dict]:
    from tinygen.prune.train import prune_model
    from tinygen.verify import verify_model
    rows = []
    for label, sparsity, structured in VARIANTS:
        row: dict = {"variant": label, "sparsity": sparsity, "structured": structured}
        path = KWS / "model.h5"
        if sparsity is not None:
            path = model_file(work, sparsity, structured)
            if not path.exists():
                print(f"pruning: {label}", file=sys.stderr, flush=True)
                r = prune_model(KWS / "model.h5", sparsity, training_set(work),
                                structured=structured, test=KWS / "test.npz", epochs=epochs,
                                learning_rate=learning_rate, output=path)
                row["keras_accuracy_before"] = r.accuracy_before
        print(f"verifying: {label}", file=sys.stderr, flush=True)
        out = verify_model(path, board_id=BOARD, calib=KWS / "calib.npy",
                           data=KWS / "test.npz", output=work / f"proj-{path.stem}",
                           force=True)
        p = out.payload
        build = json.loads((work / f"proj-{path.stem}" / "tinygen.json").read_text())
        row.update(
            bit_exact=bool(p["bit_exact"]), vectors=p["vectors"],
            instructions=p["latency"]["instructions"], model_flash=p["memory"]["model_flash"],
            code_flash=p["memory"]["code_flash"], arena=p["memory"]["arena"],
            float_accuracy=p["accuracy"]["float"], device_accuracy=p["accuracy"]["device"],
            channels_removed=sum(len(v) for v in build.get("channels_removed", {}).values()),
            sparse_layers=_sparse_layers(work / f"proj-{path.stem}"))
        rows.append(row)
    return rows


def _sparse_layers(project: Path) -> int:
    model_c = next(project.rglob("model.c"), None)
    return model_c.read_text().count("tg_sparse_mm_s8(") if model_c else 0


def markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    dense = rows[0]
    lines = [
        "| kws_cnn | accuracy float | int8 on device | model flash | code flash | arena | "
        "instructions | vs dense | sparse layers | channels removed | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['float_accuracy']:.1%} | {r['device_accuracy']:.1%} | "
            f"{r['model_flash']:,} B | {r['code_flash']:,} B | {r['arena']:,} B | "
            f"{r['instructions']:,} | {r['instructions'] / dense['instructions']:.2f}x | "
            f"{r['sparse_layers']} | {r['channels_removed']} | "
            f"{'yes' if r['bit_exact'] else 'NO'} ({r['vectors']}) |")
    return "\n".join(lines)


NOTES = """\
Made by `python3 bench/pruning.py` (raw figures: bench/pruning.json). The
pruned models come from `tinygen prune examples/kws_cnn/model.h5 --sparsity F
[--structured] --data <training set> --test examples/kws_cnn/test.npz
--epochs 20 --learning-rate 1e-3`; accuracy is on the 325 held-out clips
(float: the pruned Keras model; int8: the firmware, which is bit-exact with
the tflite_micro interpreter running the int8 model *before* channel
removal). Model flash is the constant data in the ELF; instructions are
guest instructions of one inference under QEMU -icount. Unstructured
pruning leaves the depthwise filters and the first convolution (10x4, not
a matrix product) dense; docs/pruning.md explains when each form pays.
"""


def section(rows: list[dict]) -> str:
    return f"{HEADING}\n\n{NOTES}\n{markdown(rows)}\n" if rows else ""


def stored_section() -> str:
    """The section from bench/pruning.json (bench/run.py keeps it)."""
    if not RESULTS.exists():
        return ""
    return section(json.loads(RESULTS.read_text()))


def write_doc(doc: Path, text: str) -> None:
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    start = old.find(HEADING)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(HEADING))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt >= 0 else "")
    doc.write_text(new)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "tinygen-bench-pruning"),
                    help="training set, pruned models and projects (kept between runs)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = run(work, args.epochs, args.learning_rate)
    RESULTS.write_text(json.dumps(rows, indent=2))
    text = section(rows)
    print(text)
    write_doc(Path(args.doc), text)
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
