"""Device outputs against the reference: per-output metrics (exact match, max
|delta| in LSB, relative L2, cosine, RMSE, MAE, top-1) and float-vs-int8 drift."""

from __future__ import annotations

import numpy as np

from ..convert import cosine, dequantize, is_classifier_shape
from ..data import answer_rows
from ..ir import Model
from .results import BoardRun, OutputMetrics


def detection_row_mask(ir: Model, ref_outs: list[list[np.ndarray]]):
    """For SSD models: per vector, how many leading rows of each output are defined.

    TFLite_Detection_PostProcess leaves rows at or past num_detections undefined
    (fast NMS does not write them), so only the first `count` rows are compared.
    """
    post = [op for op in ir.operators if op.opcode == "TFLite_Detection_PostProcess"]
    if not post or len(post[0].outputs) != 4:
        return None
    outs = post[0].outputs
    if any(o not in ir.outputs for o in outs):
        return None
    count_pos = ir.outputs.index(outs[3])
    rows = [int(np.asarray(v[count_pos]).reshape(-1)[0]) for v in ref_outs]
    return {ir.outputs.index(o): rows for o in outs[:3]}


def stacked_outputs(ir: Model, device_outs: list[list[np.ndarray]],
                    ref_outs: list[list[np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per output: (device, reference) arrays of shape [vectors, *shape], with
    undefined SSD detection rows zeroed in both."""
    masks = detection_row_mask(ir, ref_outs) or {}
    # --model-every: a pipeline's answers (outputs after the features) exist
    # only at the strides where its model ran
    answers = answer_rows(len(device_outs))
    pairs = []
    for k, t in enumerate(ir.output_tensors()):
        dev = np.stack([np.asarray(v[k]).reshape(t.shape) for v in device_outs])
        ref = np.stack([np.asarray(v[k]).reshape(t.shape) for v in ref_outs])
        if k in masks:
            for j, rows in enumerate(masks[k]):
                dev[j, :, rows:] = 0
                ref[j, :, rows:] = 0
        if answers is not None and k > 0:
            dev, ref = dev[answers], ref[answers]
        pairs.append((dev, ref))
    return pairs


def compare_outputs(ir: Model, device_outs: list[list[np.ndarray]],
                    ref_outs: list[list[np.ndarray]], tolerance: int) -> list[OutputMetrics]:
    """Per output metrics.  Quantized outputs are compared in LSB; float outputs
    (SSD post-processing) bit for bit, their max |delta| reported in output units."""
    metrics = []
    for k, (t, (dev, ref)) in enumerate(zip(ir.output_tensors(),
                                            stacked_outputs(ir, device_outs, ref_outs))):
        is_float = t.dtype.startswith("float")
        if is_float:
            same = dev.view(np.uint32 if dev.dtype == np.float32 else np.uint64) == \
                ref.view(np.uint32 if ref.dtype == np.float32 else np.uint64)
            dq_dev, dq_ref = dev.astype(np.float64), ref.astype(np.float64)
            max_lsb = 0 if same.all() else 1
            passed = bool(same.all()) if tolerance == 0 else bool(
                np.allclose(dq_dev, dq_ref, rtol=1e-5, atol=1e-6))
        else:
            d64, r64 = dev.astype(np.int64), ref.astype(np.int64)
            same = d64 == r64
            max_lsb = int(np.abs(d64 - r64).max()) if d64.size else 0
            dq_dev = dequantize(d64, t) if t.quant else d64.astype(np.float64)
            dq_ref = dequantize(r64, t) if t.quant else r64.astype(np.float64)
            passed = max_lsb <= tolerance
        err = dq_dev - dq_ref
        ref_norm = float(np.linalg.norm(dq_ref))
        rel = float(np.linalg.norm(err) / ref_norm) if ref_norm else float(np.linalg.norm(err))
        top1 = None
        if is_classifier_shape(t.shape) and not is_float:
            top1 = float(np.mean(np.argmax(dev.reshape(len(dev), -1), 1)
                                 == np.argmax(ref.reshape(len(ref), -1), 1)))
        metrics.append(OutputMetrics(
            index=k, name=t.name, shape=list(t.shape),
            exact_match_pct=float(100.0 * np.mean(same)) if same.size else 100.0,
            max_abs_diff_lsb=max_lsb, rel_l2=rel, cosine=cosine(dq_dev, dq_ref),
            rmse=float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
            mae=float(np.mean(np.abs(err))) if err.size else 0.0,
            top1_agreement=top1, passed=passed,
            max_abs_diff=float(np.abs(err).max()) if err.size else 0.0))
    return metrics


def float_comparison(ir: Model, float_outs: list | None, ref_outs: list,
                     runs: list[BoardRun]) -> dict | None:
    """Top-1 of the float model vs the int8 reference vs each device, per
    classifier output."""
    if not float_outs:
        return None
    result = {}
    for k, t in enumerate(ir.output_tensors()):
        if not is_classifier_shape(t.shape) or t.dtype != "int8":
            continue
        f = np.stack([np.asarray(v[k]).reshape(-1) for v in float_outs])
        r = np.stack([np.asarray(v[k]).reshape(-1) for v in ref_outs])
        entry = {"float_vs_reference_top1": float(np.mean(f.argmax(1) == r.argmax(1))),
                 "devices": {}}
        for run in runs:
            if run.report is None:
                continue
            d = np.stack([np.asarray(v[k]).reshape(-1) for v in run.device_outs])
            entry["devices"][run.label] = {
                "float_vs_device_top1": float(np.mean(f.argmax(1) == d.argmax(1))),
                "reference_vs_device_top1": float(np.mean(r.argmax(1) == d.argmax(1)))}
        result[t.name] = entry
    return result or None

