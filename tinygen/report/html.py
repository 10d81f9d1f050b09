"""A self-contained HTML report of a verification (`tinygen verify --html`).

One file, no external resources: the plots are PNGs made with matplotlib's
Agg backend and embedded as base64 data URIs, the styles are inline.
What it shows (docs/reports.md):

* the verdict and the metrics table of every board;
* per output: a histogram of device - reference in LSB, and reference vs
  device values (scatter);
* classifiers, when the float model is available: top-1 and score of the
  float Keras model vs the int8 reference vs each device;
* latency per vector (counter per inference, per board);
* per-operator latency bars when the firmware was built with ``--profile``;
* the aot memory plan: every arena buffer as a rectangle from its first to
  its last use (operator index) and from its offset to offset + size.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ..convert import dequantize, is_classifier_shape
from ..sizes import DEFINITION, NAME
from ..sizes import KEYS as SIZE_KEYS

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf"]
KIND_COLORS = {"input": "#4c9be8", "output": "#f28e2b", "scratch": "#b0b0b0",
               "activation": "#59a14f", "state": "#af7aa1"}
MAX_SCATTER_POINTS = 20000
MAX_TOP1_VECTORS = 60

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1100px;margin:0 auto;padding:18px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:22px;margin:6px 0 2px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:#666;font-size:13px;margin-bottom:10px}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;font-size:14px;margin-right:8px}
.pass{background:#dff5e1;color:#11612a;border:1px solid #9fd8a9}
.fail{background:#fde2e1;color:#8d1b17;border:1px solid #f0a9a5}
.info{background:#e8eefb;color:#1c3d7a;border:1px solid #b4c6ee}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f0f2f5} td.l,th.l{text-align:left}
td.bad{background:#fde2e1} td.good{background:#eef9ef}
img{max-width:100%;display:block;margin:6px 0 4px}
.note{color:#555;font-size:12.5px;margin:2px 0 10px}
.warn{color:#8a4b00;background:#fff4e0;padding:4px 10px;border-left:3px solid #e69500}
code{background:#f0f2f5;padding:1px 4px;border-radius:3px;font-size:12.5px}
"""


# ---------------------------------------------------------------------------
# helpers


def _plt():
    try:
        import matplotlib
    except ImportError:
        from .errors import TinygenError
        raise TinygenError("--html needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _e(x) -> str:
    return html.escape(str(x))


def short_name(name: str, limit: int = 28) -> str:
    """A readable tensor name: the first of TFLite's ';'-joined names, its last
    two path parts."""
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    s = "/".join(parts[-2:]) if parts else first
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _fmt(n, digits=0) -> str:
    if n is None:
        return "-"
    if isinstance(n, float) and digits:
        return f"{n:,.{digits}f}"
    return f"{int(round(n)):,}"


def _counter_unit(runs) -> str:
    for r in runs:
        if r.report is not None:
            return r.report.latency.get("unit", "cycles")
    return "cycles"


# ---------------------------------------------------------------------------
# plots


def plot_error_histogram(t, pairs_by_board: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    plt = _plt()
    is_float = t.dtype.startswith("float")
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    diffs = []
    for label, dev, ref in pairs_by_board:
        if is_float:
            d = (dev.astype(np.float64) - ref.astype(np.float64)).reshape(-1)
        else:
            d = (dev.astype(np.int64) - ref.astype(np.int64)).reshape(-1)
        diffs.append((label, d))
    lo = min(int(np.floor(d.min())) for _, d in diffs) if diffs else 0
    hi = max(int(np.ceil(d.max())) for _, d in diffs) if diffs else 0
    if not is_float:
        lo, hi = min(lo, -2), max(hi, 2)
        edges = np.arange(lo - 0.5, hi + 1.5, 1.0) if hi - lo <= 60 else 60
    else:
        edges = 40
    n = len(diffs)
    for k, (label, d) in enumerate(diffs):
        if not is_float and not isinstance(edges, int):
            values, bins = np.histogram(d, bins=edges)
            centers = (bins[:-1] + bins[1:]) / 2
            width = 0.8 / n
            ax.bar(centers - 0.4 + width * (k + 0.5), values, width=width,
                   color=PALETTE[k % len(PALETTE)], label=_short_label(label))
        else:
            ax.hist(d, bins=edges, histtype="step", linewidth=1.5,
                    color=PALETTE[k % len(PALETTE)], label=_short_label(label))
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("device − reference" + ("" if is_float else " (LSB)"))
    ax.set_ylabel("elements")
    total = sum(d.size for _, d in diffs)
    exact = sum(int(np.count_nonzero(d == 0)) for _, d in diffs)
    ax.set_title(f"{short_name(t.name, 40)}: {exact:,} of {total:,} elements exact",
                 fontsize=10)
    if n > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_scatter(t, pairs_by_board: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    lo, hi = np.inf, -np.inf
    for k, (label, dev, ref) in enumerate(pairs_by_board):
        x = ref.reshape(-1).astype(np.float64)
        y = dev.reshape(-1).astype(np.float64)
        if x.size > MAX_SCATTER_POINTS:
            idx = np.random.default_rng(0).choice(x.size, MAX_SCATTER_POINTS, replace=False)
            x, y = x[idx], y[idx]
        if x.size:
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        ax.scatter(x, y, s=8, alpha=0.45, color=PALETTE[k % len(PALETTE)],
                   label=_short_label(label), edgecolors="none")
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="#444", linewidth=0.8, linestyle="--", label="y = x")
    unit = "" if t.dtype.startswith("float") else f" ({t.dtype})"
    ax.set_xlabel("reference" + unit)
    ax.set_ylabel("device" + unit)
    ax.set_title("reference vs device", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_top1(t, float_out: np.ndarray, ref: np.ndarray, devs: list[tuple[str, np.ndarray]]) -> str:
    """Per vector: the top-1 class of float / reference / devices, and the
    score each gives to the reference's top-1 class."""
    plt = _plt()
    n = min(len(ref), MAX_TOP1_VECTORS)
    f = float_out[:n].reshape(n, -1).astype(np.float64)
    r = dequantize(ref[:n].reshape(n, -1), t)
    x = np.arange(n)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5.2), sharex=True,
                                 gridspec_kw={"height_ratios": [1, 1.2]})
    a1.scatter(x, f.argmax(1), marker="o", s=70, facecolors="none", edgecolors="#333",
               label="float model")
    a1.scatter(x, r.argmax(1), marker="s", s=22, color="#f28e2b", label="int8 reference (TFLM)")
    for k, (label, d) in enumerate(devs):
        dq = dequantize(d[:n].reshape(n, -1), t)
        a1.scatter(x, dq.argmax(1), marker="x", s=26, color=PALETTE[k % len(PALETTE)],
                   label=f"device {_short_label(label)}")
    a1.set_ylabel("top-1 class")
    classes = f.shape[1]
    a1.set_yticks(range(classes) if classes <= 20 else np.linspace(0, classes - 1, 10, dtype=int))
    a1.set_ylim(-0.6, classes - 0.4)
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8, ncol=3 + len(devs), loc="upper center", bbox_to_anchor=(0.5, 1.28))
    top = r.argmax(1)
    a2.plot(x, f[np.arange(n), top], "o-", color="#333", markersize=4, linewidth=1,
            label="float")
    a2.plot(x, r[np.arange(n), top], "s--", color="#f28e2b", markersize=3.5, linewidth=1,
            label="int8 reference")
    for k, (label, d) in enumerate(devs):
        dq = dequantize(d[:n].reshape(n, -1), t)
        a2.plot(x, dq[np.arange(n), top], "x", color=PALETTE[k % len(PALETTE)], markersize=6,
                label=f"device {_short_label(label)}")
    a2.set_ylabel("score of the reference's top-1")
    a2.set_xlabel("vector")
    a2.grid(alpha=0.3)
    _integer_x(a2)
    return _png(fig)


def plot_latency(runs, unit: str) -> str:
    return _png(latency_figure(runs, unit))


def latency_figure(runs, unit: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.0))
    for k, run in enumerate(runs):
        if not run.counters:
            continue
        c = np.asarray(run.counters)
        ax.plot(np.arange(len(c)), c, "os^vDP"[k % 6] + ("-" if k == 0 else "--"),
                markersize=4.5 if k else 3.5, linewidth=1.2, fillstyle="full" if k == 0 else "none",
                color=PALETTE[k % len(PALETTE)],
                label=f"{_short_label(run.label)} (mean {c.mean():,.0f})")
    ax.set_xlabel("vector")
    ax.set_ylabel(unit + " per inference")
    ax.grid(alpha=0.3)
    _integer_x(ax)
    spreads = [(max(r.counters) - min(r.counters), float(np.mean(r.counters)))
                for r in runs if r.counters]
    if spreads:
        spread, mean = max(spreads)
        ax.set_title(f"largest spread (max − min): {spread:,} {unit} = "
                     f"{100 * spread / mean if mean else 0:.2g} % of the mean", fontsize=10)
    ax.legend(fontsize=8)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.yaxis.set_major_formatter(_thousands())
    # From zero: a 0.1 % spread must not look like a factor of two.
    ax.set_ylim(bottom=0)
    return fig


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _thousands():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda v, _p: f"{v:,.0f}")


def plot_profile(per_board: list[tuple[str, list[dict]]], unit: str) -> str:
    """Horizontal bars per operator (mean over vectors), one bar per board."""
    plt = _plt()
    rows = per_board[0][1]
    nb = len(per_board)
    h = max(2.2, (0.22 + 0.12 * nb) * len(rows) + 0.9)
    fig, ax = plt.subplots(figsize=(10, min(h, 40)))
    y = np.arange(len(rows))
    span = max((o["mean"] for _, ops in per_board for o in ops), default=0) or 1
    height = 0.8 / nb
    for k, (label, ops) in enumerate(per_board):
        means = np.asarray([o["mean"] for o in ops])
        yk = y - 0.4 + height * (k + 0.5)
        ax.barh(yk, means, height=height * 0.92, color=PALETTE[k % len(PALETTE)],
                label=_short_label(label))
        for yi, o in zip(yk, ops):
            text = "no code (view)" if o["mean"] == 0 else f"{o['mean']:,.0f}  ({o['share']:.1%})"
            ax.text(o["mean"] + span * 0.01, yi, text, va="center", fontsize=7.5)
    ax.set_yticks(y)
    ax.set_yticklabels([f"#{o['index']} {o['op']}" for o in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.22)
    ax.set_xlabel(f"{unit} per inference (mean over vectors)")
    ax.set_title("per-operator latency", fontsize=10)
    ax.xaxis.set_major_formatter(_thousands())
    ax.grid(axis="x", alpha=0.3)
    if nb > 1:
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def buffer_kind(b: dict, n_ops: int) -> str:
    if b.get("scratch_op") is not None:
        return "scratch"
    if b["first"] < 0 and b["last"] >= n_ops:
        return "state"          # variable tensors (LSTM state) live through every run
    if b["first"] < 0:
        return "input"
    if b["last"] >= n_ops:
        return "output"
    return "activation"


def plot_memory_plan(plan: dict) -> str:
    return _png(memory_plan_figure(plan))


def memory_plan_figure(plan: dict):
    """The arena plan as a matplotlib figure, its texts laid out so that none
    overlaps another: a buffer's label is kept only where it fits inside its
    rectangle (its size alone when name and size do not), and the operator
    axis shows every k-th operator when all of them would collide."""
    from matplotlib.patches import Patch, Rectangle
    plt = _plt()
    ops = plan.get("ops", [])
    n = len(ops)
    buffers = plan.get("buffers", [])
    arena = max(int(plan.get("arena_bytes", 0)), 1)
    fig, ax = plt.subplots(figsize=(min(18.0, max(10.0, 0.24 * (n + 2) + 3)), 4.6))
    min_h = arena * 0.015          # tiny buffers drawn at least this tall
    labelled = []
    for b in buffers:
        first = max(b["first"], -1)
        last = min(b["last"], n)
        kind = buffer_kind(b, n)
        x0, x1 = first - 0.42, last + 0.42
        rect = Rectangle((x0, b["offset"]), x1 - x0, max(b["size"], min_h),
                         facecolor=KIND_COLORS[kind], edgecolor="#333", linewidth=0.6,
                         alpha=0.85)
        ax.add_patch(rect)
        name = (f"scratch #{b['scratch_op']}" if kind == "scratch"
                else short_name(b["tensors"][0], 22) if b.get("tensors") else b["key"])
        text = ax.text((x0 + x1) / 2, b["offset"] + b["size"] / 2, f"{name}\n{b['size']:,} B",
                       ha="center", va="center", fontsize=7, clip_on=True)
        labelled.append((b["size"], text, rect, f"{b['size']:,} B"))
    ax.axhline(arena, color="#d62728", linestyle="--", linewidth=1)
    ax.text(n + 0.5, arena, f" arena {arena:,} B", va="bottom", ha="right", fontsize=8,
            color="#d62728")
    lb = plan.get("lower_bound_bytes")
    if lb and lb < arena:
        ax.axhline(lb, color="#777", linestyle=":", linewidth=1)
        # above the line when there is room under the arena line, else below it
        room = (arena - lb) > arena * 0.05
        ax.text(-1.4, lb, f"lower bound {lb:,} B ", va="bottom" if room else "top",
                ha="left", fontsize=7.5, color="#555")
    ax.set_xlim(-1.6, n + 0.6)
    ax.set_ylim(0, arena * 1.08)
    ax.set_ylabel("arena offset (bytes)")
    ax.yaxis.set_major_formatter(_thousands())
    ax.set_title("aot memory plan: each buffer from its first to its last use", fontsize=10)
    ax.legend(handles=[Patch(facecolor=c, edgecolor="#333", label=k)
                       for k, c in KIND_COLORS.items()
                       if any(buffer_kind(b, n) == k for b in buffers)],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.25)
    fig.tight_layout()
    _thin_operator_axis(fig, ax, ["in"] + [f"#{i} {op}" for i, op in enumerate(ops)] + ["out"])
    _fit_buffer_labels(fig, ax, labelled)
    return fig


def _thin_operator_axis(fig, ax, labels: list[str]) -> None:
    """Every operator's tick, labelled at the smallest stride whose labels do not
    collide (1: all of them)."""
    positions = list(range(-1, len(labels) - 1))
    ax.set_xticks(positions, [""] * len(positions), minor=True)
    renderer = fig.canvas.get_renderer()
    for step in range(1, len(labels) + 1):
        ax.set_xticks(positions[::step], labels[::step], rotation=40, ha="right", fontsize=7.5)
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        if not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            return


def _fit_buffer_labels(fig, ax, labelled) -> None:
    """Keep a buffer's label only inside its own rectangle and clear of the labels
    kept before it (largest buffers first): name and size, else the size alone."""
    renderer = fig.canvas.get_renderer()
    kept: list = []
    for _size, text, rect, short in sorted(labelled, key=lambda e: -e[0]):
        box = rect.get_window_extent(renderer)
        for candidate in (text.get_text(), short):
            text.set_text(candidate)
            tb = text.get_window_extent(renderer)
            inside = (tb.x0 >= box.x0 and tb.x1 <= box.x1 and tb.y0 >= box.y0
                      and tb.y1 <= box.y1)
            if inside and not any(tb.overlaps(k) for k in kept):
                kept.append(tb)
                break
        else:
            text.remove()


def _short_label(label: str) -> str:
    return label.split("://", 1)[-1]


# ---------------------------------------------------------------------------
# the page


def render_html(ir, runs, ref_outs, *, float_outs=None, memory_plan=None, model_name="model",
                board=None, payload=None) -> str:
    from ..verify import stacked_outputs
    ok_runs = [r for r in runs if r.report is not None]
    reports = [r.report for r in ok_runs]
    passed = bool(reports) and len(reports) == len(runs) and all(r.passed for r in reports)
    exact = bool(reports) and len(reports) == len(runs) and all(r.bit_exact for r in reports)
    unit = _counter_unit(runs)
    first = reports[0] if reports else None
    parts: list[str] = []
    add = parts.append
    board_id = board.id if board is not None else (first.board if first else "?")
    add(f"<h1>tinygen verify: {_e(model_name)} on {_e(board_id)}</h1>")
    sub = [f"model SHA-256 <code>{_e(ir.signature[:16])}…</code>"]
    if first:
        sub += [f"runtime {_e(first.runtime)}", f"{first.vectors} vectors",
                f"tolerance {first.tolerance_lsb} LSB"]
    sub.append(f"{len(runs)} board{'s' if len(runs) != 1 else ''}")
    add(f'<div class="sub">{" · ".join(sub)}</div>')
    add(f'<span class="badge {"pass" if passed else "fail"}">{"PASS" if passed else "FAIL"}</span>')
    add(f'<span class="badge {"pass" if exact else "info"}">'
        f'{"bit-exact" if exact else "not bit-exact"}</span>')
    notes = (list(first.failures) + list(first.warnings)) if first else []
    if notes:
        add("<ul class='warn'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    if first and first.calibration:
        synthetic = first.calibration.get("synthetic")
        add(f"<p class='{'warn' if synthetic else 'note'}'>calibration: "
            f"{_e(first.calibration.get('source'))}"
            + (" — synthetic random inputs: the int8 model's accuracy is unknown"
               if synthetic else "") + "</p>")
    if first and first.accuracy:
        parts.extend(accuracy_html(first.accuracy))
    if first and first.detection:
        parts.extend(detection_html(first.detection))

    # -- summary per board
    add("<h2>Agreement with the reference</h2>")
    add('<p class="note">Reference: the tflite_micro interpreter (TFLM reference kernels) on the '
        'same .tflite and the same int8 inputs. |Δ| in LSB of the output quantization.</p>')
    add("<table><tr><th class='l'>board / port</th><th class='l'>output</th><th>exact</th>"
        "<th>max |Δ| LSB</th><th>rel L2</th><th>cosine</th><th>RMSE</th><th>top-1</th>"
        f"<th>{_e(unit)} (warm)</th><th>verdict</th></tr>")
    for run in runs:
        if run.report is None:
            add(f"<tr><td class='l'>{_e(run.label)}</td><td class='l bad' colspan='9'>"
                f"no verdict: {_e(run.error)}</td></tr>")
            continue
        r = run.report
        key = "instructions" if "instructions" in r.latency else "cycles"
        for k, o in enumerate(r.outputs):
            cls = "good" if o.passed else "bad"
            top1 = "-" if o.top1_agreement is None else f"{o.top1_agreement:.1%}"
            lat = _fmt(r.latency.get(key)) if k == 0 else ""
            verdict = ("PASS" if r.passed else "FAIL") if k == 0 else ""
            add(f"<tr><td class='l'>{_e(run.label) if k == 0 else ''}</td>"
                f"<td class='l'>{_e(short_name(o.name, 40))}</td>"
                f"<td class='{cls}'>{o.exact_match_pct:.2f}%</td><td class='{cls}'>"
                f"{o.max_abs_diff_lsb}</td><td>{o.rel_l2:.2e}</td><td>{o.cosine:.6f}</td>"
                f"<td>{o.rmse:.2e}</td><td>{top1}</td><td>{lat}</td><td>{verdict}</td></tr>")
    add("</table>")

    # -- per output plots
    if ok_runs:
        outs = ir.output_tensors()
        stacks = [(run.label, stacked_outputs(ir, run.device_outs, ref_outs)) for run in ok_runs]
        for k, t in enumerate(outs):
            add(f"<h3>output {k}: {_e(short_name(t.name, 60))} {list(t.shape)} {t.dtype}</h3>")
            pairs = [(label, st[k][0], st[k][1]) for label, st in stacks]
            add('<div style="display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start">')
            add(f"<div>{plot_error_histogram(t, pairs)}</div>")
            add(f"<div>{plot_scatter(t, pairs)}</div>")
            add("</div>")

    # -- float vs int8 vs device
    classifier_outputs = [(k, t) for k, t in enumerate(ir.output_tensors())
                          if is_classifier_shape(t.shape) and t.dtype == "int8"]
    if classifier_outputs:
        add("<h2>Float model vs int8 reference vs device</h2>")
        if not float_outs:
            add('<p class="note">The float model is not available (an int8 .tflite was given '
                'without <code>--float-model</code>, or an SSD detector): only the int8 '
                'reference and the devices are compared.</p>')
        for k, t in classifier_outputs:
            r = np.stack([np.asarray(v[k]).reshape(-1) for v in ref_outs])
            devs = [(run.label, np.stack([np.asarray(v[k]).reshape(-1) for v in run.device_outs]))
                    for run in ok_runs]
            add(f"<h3>{_e(short_name(t.name, 60))}</h3>")
            add("<table><tr><th class='l'>comparison</th><th>top-1 agreement</th></tr>")
            if float_outs:
                f = np.stack([np.asarray(v[k]).reshape(-1) for v in float_outs])
                add(f"<tr><td class='l'>float model vs int8 reference</td>"
                    f"<td>{np.mean(f.argmax(1) == r.argmax(1)):.1%}</td></tr>")
                for label, d in devs:
                    add(f"<tr><td class='l'>float model vs device {_e(label)}</td>"
                        f"<td>{np.mean(f.argmax(1) == d.argmax(1)):.1%}</td></tr>")
            for label, d in devs:
                add(f"<tr><td class='l'>int8 reference vs device {_e(label)}</td>"
                    f"<td>{np.mean(r.argmax(1) == d.argmax(1)):.1%}</td></tr>")
            add("</table>")
            if float_outs:
                add(plot_top1(t, f, r, devs))
                shown = min(len(r), MAX_TOP1_VECTORS)
                add(f'<p class="note">Top: the top-1 class per vector (first {shown}). Bottom: '
                    "the score each gives to the class the int8 reference picked (float: the "
                    "Keras output; int8 and device: dequantized). The gap between float and "
                    "int8 is quantization drift; int8 vs device should be none.</p>")

    # -- latency
    if ok_runs:
        add("<h2>Latency</h2>")
        add(plot_latency(ok_runs, unit))
        note = ("guest instructions under QEMU -icount (not real cycles)"
                if unit == "instructions" else "core clock cycles")
        add(f'<p class="note">Counter delta of each inference: {note}. The warm figure in the '
            "table is the second vector's, as MLPerf Tiny quotes it.</p>")
        add("<table><tr><th class='l'>board / port</th><th>ms per inference</th>"
            "<th>MACs per cycle</th><th>µJ per inference</th><th class='l'>basis</th></tr>")
        for run in ok_runs:
            lat = run.report.latency
            if lat.get("ms") is None:
                continue
            rate = lat.get("macs_per_cycle", lat.get("macs_per_instruction"))
            energy = lat.get("energy_uj")
            add(f"<tr><td class='l'>{_e(run.label)}</td><td>{lat['ms']:.3f}</td>"
                f"<td>{'-' if rate is None else f'{rate:.3f}'}</td>"
                f"<td>{'-' if energy is None else f'{energy:,.1f}'}</td>"
                f"<td class='l'>{_e(lat['ms_basis'])}; energy: {_e(lat.get('energy_basis', '-'))}"
                "</td></tr>")
        add("</table>")
        profiled = [(run.label, run.report.latency["per_op"]) for run in ok_runs
                    if run.report.latency.get("per_op")]
        if profiled:
            add(plot_profile(profiled, unit))
        if not any(run.report.latency.get("per_op") for run in ok_runs):
            add('<p class="note">No per-operator times: build the firmware with '
                "<code>--profile</code> (aot runtime) to get them.</p>")
        else:
            add('<p class="note">Per-operator times come from the firmware built with '
                "<code>--profile</code>: two extra counter reads per operator, so their sum "
                "is a little below the whole-inference figure measured around them.</p>")

    # -- memory
    add("<h2>Memory</h2>")
    mem = first.memory if first else {}
    rows = [(NAME[k], DEFINITION[k], mem[k]) for k in SIZE_KEYS if mem.get(k) is not None]
    if mem.get("stack_used") is not None:
        rows = [(n, f"{d} ({_fmt(mem['stack_size'])} reserved)" if n == NAME["stack_used"] else d, v)
                for n, d, v in rows]
    if first and first.runtime == "tflm" and first.device.get("arena_used_bytes") is not None:
        rows.append(("arena used by TFLM", f"read from the device after the run, of "
                     f"{_fmt(first.device['arena_bytes'])} reserved",
                     first.device["arena_used_bytes"]))
    if rows:
        add("<table><tr><th class='l'>size</th><th>bytes</th><th class='l'>what it counts</th></tr>"
            + "".join(f"<tr><td class='l'>{_e(n)}</td><td>{_fmt(v)}</td>"
                      f"<td class='l'>{_e(d)}</td></tr>" for n, d, v in rows)
            + "</table>")
    if memory_plan:
        add(plot_memory_plan(memory_plan))
        add(f'<p class="note">Plan: arena {memory_plan["arena_bytes"]:,} B '
            f'({_e(memory_plan.get("strategy", ""))}); lower bound '
            f'{memory_plan.get("lower_bound_bytes", 0):,} B, TFLM-style greedy '
            f'{memory_plan.get("greedy_bytes", 0):,} B, no reuse '
            f'{memory_plan.get("naive_bytes", 0):,} B. "in" is before the first operator '
            '(the host writes the inputs), "out" after the last (the host reads the outputs); '
            "views (RESHAPE) share their input's buffer; buffers under 1.5 % of the arena are "
            "drawn 1.5 % tall so that they stay visible.</p>")
    else:
        add('<p class="note">No static memory plan: the tflm runtime plans its arena at run '
            "time.</p>")

    if payload is not None:
        add("<h2>JSON report</h2><details><summary>show</summary><pre style='font-size:11px'>"
            f"{_e(json.dumps(payload, indent=1)[:200000])}</pre></details>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>tinygen verify: {_e(model_name)}</title><style>{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


def accuracy_html(acc: dict) -> list[str]:
    """Accuracy per level and the confusion matrix (device, else int8 host) as tables."""
    pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    out = ["<h2>Accuracy on labelled data</h2>",
           f'<p class="note">{acc["samples"]:,} labelled vectors ({_e(acc["labels_from"])}), '
           f'output {_e(acc["output"])}, top-1.</p>',
           "<table><tr><th class='l'>model</th><th>accuracy</th></tr>",
           f"<tr><td class='l'>float model</td><td>{pct(acc['float'])}</td></tr>",
           f"<tr><td class='l'>int8 on the host (tflite_micro)</td><td>{pct(acc['int8'])}</td></tr>"]
    for label, value in acc["devices"].items():
        out.append(f"<tr><td class='l'>device {_e(label)}</td><td>{pct(value)}</td></tr>")
    if acc.get("float_vs_int8_top1") is not None:
        out.append(f"<tr><td class='l'>top-1 agreement float/int8</td>"
                   f"<td>{pct(acc['float_vs_int8_top1'])}</td></tr>")
    out.append("</table>")
    level = next(iter(acc["devices"]), "int8")
    m = np.asarray(acc["confusion"][level])
    names = acc["classes"]
    top = max(1, int(m.max()))
    out.append(f"<h3>Confusion matrix ({'device ' + _e(level) if level != 'int8' else 'int8 host'};"
               " rows: true class, columns: predicted)</h3>")
    out.append("<table class='confusion'><tr><th></th>"
               + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>")
    for i, row in enumerate(m):
        cells = []
        for j, v in enumerate(row):
            alpha = 0.15 + 0.85 * v / top if v else 0
            colour = "46,125,50" if i == j else "198,40,40"
            cells.append(f"<td style='background:rgba({colour},{alpha:.2f})'>{int(v)}</td>")
        out.append(f"<tr><th class='l'>{_e(names[i])}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    return out


def detection_html(d: dict) -> list[str]:
    """mAP@0.5 per level, and AP per class and level, as tables."""
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    levels = [(f"float ({d.get('float_from') or 'Keras + the same post-processing'})", "float",
               d.get("float")),
              ("int8 on the host (tflite_micro)", "int8", d["int8"])]
    levels += [(f"device {label}", label, v) for label, v in d["devices"].items()]
    levels = [lv for lv in levels if lv[2] is not None]
    out = ["<h2>Detection accuracy</h2>",
           f'<p class="note">{_e(d["metric"])} on {d["images"]:,} images, {d["objects"]:,} '
           f'ground-truth objects ({_e(d["truth_from"])}).</p>',
           "<table class='detection'><tr><th class='l'>model</th><th>mAP@0.5</th>"
           + "".join(f"<th>AP {_e(c)}</th>" for c in d["classes"]) + "<th>detections</th></tr>"]
    for title, key, value in levels:
        aps = d["ap"].get(key, [None] * len(d["classes"]))
        out.append(f"<tr><td class='l'>{_e(title)}</td><td>{num(value)}</td>"
                   + "".join(f"<td>{num(a)}</td>" for a in aps)
                   + f"<td>{d['detections'].get(key, 0):,}</td></tr>")
    out.append("</table>")
    return out


def write_html(path: Path, ir, runs, ref_outs, **kwargs) -> None:
    from ..errors import TinygenError
    text = render_html(ir, runs, ref_outs, **kwargs)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TinygenError(f"cannot write {path}: {exc.strerror}") from None
