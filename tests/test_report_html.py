"""The HTML report of `tinygen verify --html`: self-contained, every section there.

Fast: a one-operator model built as a flatbuffer (no converter), its TFLM
reference, and made-up device results (one board bit-exact, one off by 1 LSB
in places).  The end-to-end --html run on QEMU is in test_multiport.py.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "aot"))

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def fc_run():
    from tflite_builder import fully_connected_model

    from tinygen.boards import get_board
    from tinygen.ir import parse_tflite
    from tinygen.verify import (
        BoardRun,
        compare_outputs,
        latency_figures,
        make_vector_set,
        profile_figures,
        run_reference,
    )
    ir = parse_tflite(fully_connected_model(np.random.default_rng(3), depth=16, units=4))
    vectors, floats = make_vector_set(ir, 12, None, None)
    ref = run_reference(ir, vectors)
    board = get_board("qemu-cortex-m4")
    runs = []
    for k, label in enumerate(["socket://127.0.0.1:1111", "rfc2217://farm:7002"]):
        dev = [[o.copy() for o in v] for v in ref]
        if k == 1:
            for j in range(0, len(dev), 3):
                dev[j][0].flat[j % 4] = np.int8(max(-128, int(dev[j][0].flat[j % 4]) - 1))
        counters = [1000 + 3 * j + k for j in range(len(vectors))]
        profiles = [[900 + j, 100] for j in range(len(vectors))]
        metrics = compare_outputs(ir, dev, ref, 0)
        from tinygen.verify import VerifyReport
        lat = latency_figures(counters, "instructions")
        lat["per_op"] = profile_figures(ir, profiles)
        rep = VerifyReport(passed=all(o.passed for o in metrics),
                           bit_exact=all(o.max_abs_diff_lsb == 0 for o in metrics),
                           board=board.id, runtime="aot", port=label,
                           model_signature=ir.signature, vectors=len(vectors), tolerance_lsb=0,
                           outputs=metrics, latency=lat,
                           memory={"code_flash": 1000, "model_flash": 64, "flash_total": 1064,
                                   "arena": 48, "ram_total": 400})
        runs.append(BoardRun(label=label, report=rep, device_outs=dev, counters=counters,
                             profiles=profiles))
    runs.append(BoardRun(label="/dev/ttyUSB9", error="no reply to INFO after 4 attempts"))
    # a stand-in for the Keras model: the reference dequantized, slightly off
    t = ir.output_tensors()[0]
    float_outs = [[(o[0].astype(np.float64) - t.zero_point) * t.scale + 0.01] for o in ref]
    return ir, runs, ref, float_outs, board


def test_report_is_self_contained_with_every_section(fc_run, tmp_path):
    from tinygen.report.html import write_html
    from tinygen.verify import combined_payload, load_memory_plan
    ir, runs, ref, float_outs, board = fc_run
    plan = load_memory_plan(None, ir, "aot")
    assert plan and plan["buffers"] and plan["ops"] == ["FULLY_CONNECTED"]
    path = tmp_path / "sub" / "report.html"
    write_html(path, ir, runs, ref, float_outs=float_outs, memory_plan=plan,
               model_name="fc.tflite", board=board, payload=combined_payload(runs))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing fetched from elsewhere: no links, scripts, or remote images
    assert not re.search(r"<(link|script)\b", text)
    srcs = re.findall(r'src="([^"]+)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # error histogram + scatter for the output, top-1 float/int8/device, latency,
    # per-op bars, memory plan
    assert len(srcs) == 6
    for heading in ("Agreement with the reference", "Float model vs int8 reference vs device",
                    "Latency", "Memory"):
        assert heading in text
    assert "FAIL" in text and "not bit-exact" in text          # one board is 1 LSB off
    assert "no verdict: no reply to INFO" in text               # the board that failed
    assert "float model vs int8 reference" in text
    assert "rfc2217://farm:7002" in text


def test_tflite_model_and_tflm_runtime_say_what_is_missing(fc_run, tmp_path):
    from tinygen.report.html import render_html
    ir, runs, ref, _float, board = fc_run
    text = render_html(ir, runs[:1], ref, float_outs=None, memory_plan=None, board=board)
    assert "The float model is not available" in text
    assert "No static memory plan" in text
    assert "PASS" in text and "bit-exact" in text


def test_memory_plan_picture_from_a_manifest_plan():
    """The plan as the build writes it into tinygen.json draws without the model."""
    from tinygen.report.html import buffer_kind, plot_memory_plan
    plan = {"arena_bytes": 4096, "lower_bound_bytes": 3072, "strategy": "test",
            "ops": ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"],
            "buffers": [
                {"key": "t0", "offset": 0, "size": 1024, "first": -1, "last": 0,
                 "scratch_op": None, "tensors": ["input"]},
                {"key": "t1", "offset": 1024, "size": 2048, "first": 0, "last": 2,
                 "scratch_op": None, "tensors": ["conv/Relu", "flatten"]},
                {"key": "scratch0", "offset": 3072, "size": 512, "first": 0, "last": 0,
                 "scratch_op": 0, "tensors": []},
                {"key": "t3", "offset": 0, "size": 16, "first": 2, "last": 3,
                 "scratch_op": None, "tensors": ["out"]}]}
    assert [buffer_kind(b, 3) for b in plan["buffers"]] == ["input", "activation", "scratch",
                                                             "output"]
    img = plot_memory_plan(plan)
    assert img.startswith('<img alt="plot" src="data:image/png;base64,')


def test_short_tensor_names():
    from tinygen.report.html import short_name
    assert short_name("sequential/conv2d/Relu;sequential/conv2d/BiasAdd") == "conv2d/Relu"
    assert len(short_name("x" * 100)) == 28


def test_memory_table_in_the_size_vocabulary(fc_run):
    """Each figure once, under its sizes.py name (issue 15: one vocabulary)."""
    from tinygen.report.html import render_html
    from tinygen.sizes import NAME
    ir, runs, ref, _float, board = fc_run
    text = render_html(ir, runs[:1], ref, float_outs=None, memory_plan=None, board=board)
    table = text[text.index("<h2>Memory</h2>"):]
    for key, value in runs[0].report.memory.items():
        assert f"<td class='l'>{NAME[key]}</td><td>{value:,}</td>" in table, key
    assert "weights</td>" not in table


def _many_op_plan(n_ops=40):
    """A CNN-like ping-pong plan: each activation from the op that writes it to the
    next, alternating between two halves of the arena, plus small scratch buffers
    and long tensor names (what made the labels collide)."""
    arena = 40_000
    buffers = [{"key": "in", "offset": 0, "size": 12_000, "first": -1, "last": 0,
                "scratch_op": None, "tensors": ["serving_default_input_1:0"]}]
    for i in range(n_ops):
        size = [12_000, 6_000, 1_500, 20_000][i % 4]
        buffers.append({"key": f"t{i}", "offset": 0 if i % 2 else 20_000, "size": size,
                        "first": i, "last": i + 1 if i < n_ops - 1 else n_ops,
                        "scratch_op": None,
                        "tensors": [f"model/block_{i}/depthwise_conv2d_{i}/Relu6;bias"]})
        if i % 5 == 0:
            buffers.append({"key": f"s{i}", "offset": 32_000, "size": 2_400, "first": i,
                            "last": i, "scratch_op": i, "tensors": []})
    return {"arena_bytes": arena, "lower_bound_bytes": 38_500, "strategy": "test",
            "ops": ["DEPTHWISE_CONV_2D" if i % 2 else "CONV_2D" for i in range(n_ops)],
            "buffers": buffers}


@pytest.mark.parametrize("n_ops", [3, 40, 120])
def test_memory_plan_texts_never_overlap(n_ops):
    """Issue 15: the arena chart's labels overlapped. Every text the figure draws
    (buffer labels, arena and lower-bound lines, operator ticks) is clear of every
    other, and each buffer label lies inside a rectangle."""
    from matplotlib.patches import Rectangle

    from tinygen.report.html import memory_plan_figure
    fig = memory_plan_figure(_many_op_plan(n_ops))
    ax = fig.axes[0]
    r = fig.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text()]
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent(r) for t in texts + ticks]
    clash = [(a.get_text(), b.get_text()) for i, a in enumerate(texts + ticks)
             for b, bb in zip((texts + ticks)[i + 1:], boxes[i + 1:])
             if boxes[i].overlaps(bb)]
    assert not clash, clash[:3]
    rects = [p.get_window_extent(r) for p in ax.patches if isinstance(p, Rectangle)]
    buffer_labels = [t for t in texts if t.get_text().endswith(" B")
                     and not t.get_text().startswith((" arena", "lower bound"))]
    if n_ops <= 40:
        assert buffer_labels                               # the big buffers keep a label
    for t in buffer_labels:
        tb = t.get_window_extent(r)
        assert any(tb.x0 >= b.x0 and tb.x1 <= b.x1 and tb.y0 >= b.y0 and tb.y1 <= b.y1
                   for b in rects), t.get_text()
    assert ticks[0].get_text() == "in"                      # the axis still starts at "in"
    if n_ops <= 3:
        assert len(ticks) == n_ops + 2                      # few ops: every one named


def test_latency_axis_starts_at_zero(fc_run):
    """Issue 15: counters 1,000-1,036 drawn from 0, so a 3 % spread looks like one."""
    from tinygen.report.html import latency_figure
    _ir, runs, _ref, _float, _board = fc_run
    fig = latency_figure(runs, "instructions")
    low, high = fig.axes[0].get_ylim()
    assert low == 0 and high >= max(max(r.counters) for r in runs if r.counters)
