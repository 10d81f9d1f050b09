"""bench/run.py's bookkeeping: a partial re-run merged into the committed
rows, and the figures that moved against them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import run as bench  # noqa: E402


def _row(model, board, instr, code=1000, cmsis=2000):
    return {"model": model, "board": board, "instructions": instr, "flash_code": code,
            "ram_activations": 64, "tflm": {"cmsis-nn": {"instructions": cmsis}}}


def test_merge_replaces_same_model_and_board_and_appends_new():
    before = [_row("a", "m4", 10), _row("b", "m4", 20), _row("a", "m7", 30)]
    run = [_row("b", "m4", 15), _row("c", "m4", 5)]
    rows = bench.merged_rows(before, run)
    assert [(r["model"], r["board"], r["instructions"]) for r in rows] == \
        [("a", "m4", 10), ("b", "m4", 15), ("a", "m7", 30), ("c", "m4", 5)]


def test_moved_lists_changed_figures_and_new_rows_only():
    before = [_row("a", "m4", 10), _row("b", "m4", 20)]
    run = [_row("a", "m4", 10), _row("b", "m4", 15, cmsis=2100), _row("c", "m7", 5)]
    text = bench.moved_markdown(before, run)
    assert "a on m4" not in text
    assert "b on m4, aot instructions: 20 -> 15 (0.75x)" in text
    assert "b on m4, TFLM+CMSIS-NN instructions: 2,000 -> 2,100 (1.05x)" in text
    assert "c on m7: new row" in text


def test_tables_use_the_size_vocabulary():
    import json

    from tinygen.sizes import NAME

    rows = json.loads((Path(bench.ROOT) / "bench" / "results.json").read_text())
    text = "\n".join([bench.markdown(bench._with_tflm(rows)), bench.targets_markdown(rows),
                      bench.targets19_markdown(rows)])
    headers = " ".join(line for line in text.splitlines() if line.startswith("| model |"))
    # docs/sizes.md's words, and none of the names they replaced
    for word in NAME.values():
        assert word in headers, word
    for old in ("| code aot", "aot weights", "TFLM model data", "RAM total", "activation RAM",
                "| code |"):
        assert old not in headers, old
    # total flash is code flash + model flash of the same ELF
    r = next(r for r in rows if "skipped" not in r and r.get("tflm_offered", True))
    assert f"{r['flash_code'] + r['flash_weights']:,} / " in text
