"""The aot runtime's signal-library kernels (an audio front end's ops), one op
per model, against the tflite_micro interpreter: 0 LSB (integers, every bit)
on drawn shapes, options, tables and data, extremes included.  Stateful ops
run several invokes in a row on both sides; whole front ends close the file."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from ew_models import fast, seeds
from harness import build_host, run_host, run_tflm
from hypothesis import given
from hypothesis import strategies as st

from tinygen.convert.frontend import FrontendParams, _Graph, build_frontend, pcan_gain_lut
from tinygen.ir import parse_tflite
from tinygen.plan.aot import plan_aot
from tinygen.plan.lowering import LoweringError
from tinygen.plan.ops.signal import kiss_factors, kiss_order


def both(tflite: bytes, batches) -> tuple[list, list]:
    work = Path(tempfile.mkdtemp(prefix="tg_sig_"))
    try:
        return run_host(build_host(tflite, work), batches), run_tflm(tflite, batches)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def assert_same(tflite: bytes, batches, keep=None) -> None:
    ours, ref = both(tflite, batches)
    for n, (a_row, r_row) in enumerate(zip(ours, ref)):
        for k, (a, r) in enumerate(zip(a_row, r_row)):
            a, r = np.asarray(a).reshape(-1), np.asarray(r).reshape(-1)
            if keep is not None:
                a, r = a[keep], r[keep]
            assert a.dtype == r.dtype and a.shape == r.shape
            bad = np.flatnonzero(a != r)
            assert bad.size == 0, (f"invoke {n} output {k}: {bad.size} values differ, first at "
                                   f"{bad[0]}: aot {a[bad[0]]} vs TFLM {r[bad[0]]}")


def int16_audio(rng: np.random.Generator, n: int) -> np.ndarray:
    """Full-scale noise, quiet noise, a tone, silence or -32768s: one of them."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return rng.integers(-32768, 32768, n).astype(np.int16)
    if kind == 1:
        return rng.integers(-int(rng.integers(1, 300)), 300, n).astype(np.int16)
    if kind == 2:
        t = np.arange(n)
        return np.round(rng.uniform(100, 32767) * np.sin(rng.uniform(0.01, 3.1) * t)) \
            .astype(np.int16)
    if kind == 3:
        return np.zeros(n, np.int16)
    x = rng.integers(-32768, 32768, n).astype(np.int16)
    x[rng.integers(0, n, max(1, n // 8))] = -32768
    return x


def uint32_wide(rng: np.random.Generator, n: int) -> np.ndarray:
    """Magnitudes from 0 to 2^32 - 1, log-spread."""
    bits = rng.integers(0, 33, n)
    vals = [int(rng.integers(0, 1 << int(b))) if b else 0 for b in bits]
    return np.array(vals, np.uint64).astype(np.uint32)


def uint64_wide(rng: np.random.Generator, n: int) -> np.ndarray:
    bits = rng.integers(0, 65, n)
    vals = [int(rng.integers(0, 1 << min(int(b), 62))) << max(0, int(b) - 62) if b else 0
            for b in bits]
    return np.array(vals, np.uint64)


# ---------------------------------------------------------------------------


@fast(12)
@given(st.integers(1, 64), st.integers(1, 3), st.integers(0, 16), st.booleans(), seeds)
def test_window(k, frames, shift, flat, seed):
    rng = np.random.default_rng(seed)
    g = _Graph()
    shape = [k * frames] if flat else [frames, k]
    x = g.tensor("x", shape, "int16")
    w = g.tensor("w", [k], "int16", rng.integers(-32768, 32768, k))
    y = g.tensor("y", shape, "int16")
    g.op("SignalWindow", [x, w], [y], {"shift": shift})
    assert_same(g.build([x], [y], "window"),
                [[int16_audio(rng, k * frames).reshape(shape)] for _ in range(3)])


@fast(12)
@given(st.integers(1, 300), seeds)
def test_fft_auto_scale(n, seed):
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("x", [n], "int16")
    y = g.tensor("y", [n], "int16")
    bits = g.tensor("bits", [], "int32")
    g.op("SignalFftAutoScale", [x], [y, bits])
    batches = [[int16_audio(rng, n)] for _ in range(4)]
    batches += [[np.full(n, v, np.int16)] for v in (0, 1, -1, -32768, 32767, 16384, -16384)]
    assert_same(g.build([x], [y, bits], "autoscale"), batches)


@fast(10)
@given(st.integers(2, 11), st.integers(1, 3), st.floats(0.05, 1.0), seeds)
def test_rfft_int16(log2n, frames, fill, seed):
    fft = 1 << log2n
    rng = np.random.default_rng(seed)
    length = max(1, int(fft * fill))
    g = _Graph()
    x = g.tensor("x", [frames, length], "int16")
    y = g.tensor("y", [frames, fft + 2], "int16")
    g.op("SignalRfft", [x], [y], {"T": 7, "fft_length": fft})
    batches = [[int16_audio(rng, frames * length).reshape(frames, length)] for _ in range(4)]
    assert_same(g.build([x], [y], "rfft"), batches)


def test_rfft_stages_follow_kissfft():
    assert kiss_factors(256) == [(4, 64), (4, 16), (4, 4), (4, 1)]
    assert kiss_factors(512) == [(4, 128), (4, 32), (4, 8), (4, 2), (2, 1)]
    assert kiss_factors(2) == [(2, 1)]
    # a permutation, and the first slots read the inputs 0, n/4, n/2, 3n/4
    order = kiss_order(256, kiss_factors(256))
    assert sorted(order.tolist()) == list(range(256)) and order[:4].tolist() == [0, 64, 128, 192]


def test_rfft_refuses_what_it_does_not_implement():
    for fft, dtype, needle in ((480, "int16", "powers of two"), (512, "int32", "int16 one")):
        g = _Graph()
        x = g.tensor("x", [fft], dtype)
        y = g.tensor("y", [fft + 2], dtype)
        g.op("SignalRfft", [x], [y], {"T": 7 if dtype == "int16" else 2, "fft_length": fft})
        with pytest.raises(LoweringError, match=needle):
            plan_aot(parse_tflite(g.build([x], [y], "rfft")))


@fast(10)
@given(st.integers(2, 300), st.data(), seeds)
def test_energy(bins, data, seed):
    rng = np.random.default_rng(seed)
    start = data.draw(st.integers(0, bins))
    end = data.draw(st.integers(start, bins))
    g = _Graph()
    x = g.tensor("x", [2 * bins], "int16")
    y = g.tensor("y", [bins], "uint32")
    g.op("SignalEnergy", [x], [y], {"end_index": end, "start_index": start})
    batches = [[int16_audio(rng, 2 * bins)] for _ in range(3)] + \
        [[np.full(2 * bins, -32768, np.int16)]]
    # TFLM leaves the bins outside [start, end) as it found them; ours are 0
    assert_same(g.build([x], [y], "energy"), batches, keep=slice(start, end))


@fast(10)
@given(st.integers(1, 48), st.integers(8, 300), seeds)
def test_filter_bank(channels, bins, seed):
    rng = np.random.default_rng(seed)
    n = channels + 1
    widths = rng.integers(0, 9, n)
    starts = np.array([rng.integers(0, bins - w + 1) for w in widths])
    wstarts = np.cumsum(np.concatenate([[0], widths[:-1]]))
    total = max(1, int(widths.sum()))
    g = _Graph()
    x = g.tensor("x", [bins], "uint32")
    tables = [g.tensor(name, [len(a)], "int16", a) for name, a in (
        ("w", rng.integers(-32768, 32768, total)), ("u", rng.integers(0, 4097, total)),
        ("fs", starts), ("ws", wstarts), ("wd", widths))]
    y = g.tensor("y", [channels], "uint64")
    g.op("SignalFilterBank", [x] + tables, [y], {"num_channels": channels})
    assert_same(g.build([x], [y], "filterbank"), [[uint32_wide(rng, bins)] for _ in range(3)])


@fast(10)
@given(st.integers(1, 64), seeds)
def test_filter_bank_square_root(channels, seed):
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("x", [channels], "uint64")
    bits = g.tensor("bits", [], "int32")
    y = g.tensor("y", [channels], "uint32")
    g.op("SignalFilterBankSquareRoot", [x, bits], [y])
    batches = [[uint64_wide(rng, channels), np.array(rng.integers(0, 16), np.int32)]
               for _ in range(4)]
    edges = np.array([0, 1, 2, 3, 0xFFFE0001, 0xFFFFFFFF, 1 << 32, (1 << 64) - 1], np.uint64)
    batches.append([np.resize(edges, channels), np.array(0, np.int32)])
    assert_same(g.build([x, bits], [y], "sqrt"), batches)


@fast(10)
@given(st.integers(1, 48), st.integers(0, 1 << 14), st.integers(0, 1 << 14),
       st.integers(0, 1 << 14), st.integers(0, 12), st.booleans(), seeds)
def test_spectral_subtraction_keeps_its_noise_state(channels, smooth, alt, floor, bits,
                                                      clamping, seed):
    rng = np.random.default_rng(seed)
    one = 1 << 14
    g = _Graph()
    x = g.tensor("x", [channels], "uint32")
    y = g.tensor("y", [channels], "uint32")
    noise = g.tensor("noise", [channels], "uint32")
    g.op("SignalFilterBankSpectralSubtraction", [x], [y, noise], {
        "alternate_one_minus_smoothing": one - alt, "alternate_smoothing": alt,
        "clamping": clamping, "min_signal_remaining": floor, "num_channels": channels,
        "one_minus_smoothing": one - smooth, "smoothing": smooth, "smoothing_bits": bits,
        "spectral_subtraction_bits": 14})
    level = rng.integers(1, 1 << 20, channels)
    batches = [[(rng.integers(0, 2, channels) * level * rng.uniform(0, 2, channels))
                .astype(np.uint32)] for _ in range(6)]
    batches.append([uint32_wide(rng, channels)])
    assert_same(g.build([x], [y, noise], "spectral subtraction"), batches)


@fast(10)
@given(st.integers(1, 48), st.integers(0, 20), st.floats(0.5, 1.0), st.floats(1.0, 200.0),
       seeds)
def test_pcan(channels, shift, strength, offset, seed):
    rng = np.random.default_rng(seed)
    lut, _ = pcan_gain_lut(FrontendParams(pcan_strength=strength, pcan_offset=offset))
    g = _Graph()
    x = g.tensor("x", [channels], "uint32")
    noise = g.tensor("noise", [channels], "uint32")
    gain = g.tensor("gain", [len(lut)], "int16", lut)
    y = g.tensor("y", [channels], "uint32")
    g.op("SignalPCAN", [x, noise, gain], [y], {"snr_shift": shift})
    batches = [[uint32_wide(rng, channels) >> np.uint32(rng.integers(0, 16)),
                uint32_wide(rng, channels)] for _ in range(4)]
    assert_same(g.build([x, noise], [y], "pcan"), batches)


@fast(10)
@given(st.integers(1, 64), st.integers(0, 8), st.integers(1, 1 << 12), seeds)
def test_filter_bank_log(channels, correction, scale, seed):
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("x", [channels], "uint32")
    y = g.tensor("y", [channels], "int16")
    g.op("SignalFilterBankLog", [x], [y],
         {"input_correction_bits": correction, "output_scale": scale})
    batches = [[uint32_wide(rng, channels)] for _ in range(4)]
    batches.append([np.resize(np.array([0, 1, 2, 3, 0xFFFFFFFF, 1 << 31], np.uint32), channels)])
    assert_same(g.build([x], [y], "log"), batches)


def test_log_curve_covers_every_segment():
    """Every one of the 128 segments of the log curve, on both sides."""
    g = _Graph()
    x = g.tensor("x", [256], "uint32")
    y = g.tensor("y", [256], "int16")
    g.op("SignalFilterBankLog", [x], [y], {"input_correction_bits": 0, "output_scale": 1 << 12})
    vals = (1 << 16) + np.arange(256, dtype=np.uint32) * 256 + 255
    assert_same(g.build([x], [y], "log"), [[vals.astype(np.uint32)]])


# ---------------------------------------------------------------------------
# whole front ends, as `tinygen frontend` makes them


@pytest.mark.parametrize("params", [
    FrontendParams(), FrontendParams(noise_reduction=False, pcan=False),
    FrontendParams(pcan=False), FrontendParams(window_ms=64, stride_ms=32, channels=32),
    FrontendParams(sample_rate=8000, window_ms=25, stride_ms=10, channels=20, upper_hz=3800),
], ids=["default", "plain", "no_pcan", "1024_point", "8khz"])
def test_frontend_graph_matches_the_interpreter(params):
    from test_frontend import audio_windows
    wins = audio_windows(25, params.window_samples, seed=7)
    assert_same(build_frontend(params), [[w[None]] for w in wins])


# ---------------------------------------------------------------------------
# streaming state: framing and stacking (the pipeline's ops)


@fast(12)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 64), st.integers(1, 4),
       st.booleans(), seeds)
def test_framer_keeps_its_sample_history(outer, n_frames, step, size_steps, prefill, seed):
    """prefill off only with frame_size == frame_step: TFLM leaves an invalid
    frame's output as it was in its arena, which no other runtime can match."""
    rng = np.random.default_rng(seed)
    size = step * size_steps if prefill else step
    if prefill and size_steps > 1:
        size -= int(rng.integers(0, step))
    g = _Graph()
    x = g.tensor("x", [outer, n_frames * step], "int16")
    y = g.tensor("y", [outer, n_frames, size], "int16")
    valid = g.tensor("valid", [], "bool")
    g.op("SignalFramer", [x], [y, valid],
         {"frame_size": size, "frame_step": step, "prefill": prefill})
    batches = [[int16_audio(rng, outer * n_frames * step).reshape(outer, -1)] for _ in range(6)]
    assert_same(g.build([x], [y], "framer"), batches)


@fast(10)
@given(st.integers(1, 40), st.integers(0, 12), seeds)
def test_stacker_keeps_its_frame_history(channels, left, seed):
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("x", [channels], "int16")
    y = g.tensor("y", [channels * (left + 1)], "int16")
    valid = g.tensor("valid", [], "bool")
    g.op("SignalStacker", [x], [y, valid], {"num_channels": channels,
                                           "stacker_left_context": left,
                                           "stacker_right_context": 0, "stacker_step": 1})
    assert_same(g.build([x], [y], "stacker"),
                [[int16_audio(rng, channels)] for _ in range(left + 3)])


# ---------------------------------------------------------------------------
# the Cortex-M4 build: the FFT's DSP path (SMLSD/SMLADX, 16-bit SIMD adds)


@pytest.mark.parametrize("log2n,length", [(3, 8), (6, 50), (9, 480), (10, 1024)])
def test_rfft_dsp_path_on_cortex_m4(log2n, length, tmp_path):
    from harness import assert_bit_exact_m4, qemu_available
    if not qemu_available():
        pytest.skip("qemu-system-arm not installed")
    fft = 1 << log2n
    g = _Graph()
    x = g.tensor("x", [2, length], "int16")
    y = g.tensor("y", [2, fft + 2], "int16")
    g.op("SignalRfft", [x], [y], {"T": 7, "fft_length": fft})
    rng = np.random.default_rng(log2n)
    batches = [[np.stack([int16_audio(rng, length) for _ in range(2)])] for _ in range(6)]
    batches.append([np.full((2, length), -32768, np.int16)])
    assert_bit_exact_m4(g.build([x], [y], "rfft"), tmp_path, inputs=batches)


def test_frontend_on_cortex_m4(tmp_path):
    from harness import assert_bit_exact_m4, qemu_available
    from test_frontend import audio_windows
    if not qemu_available():
        pytest.skip("qemu-system-arm not installed")
    wins = audio_windows(15, 480, seed=4)
    assert_bit_exact_m4(build_frontend(FrontendParams()), tmp_path,
                        inputs=[[w[None]] for w in wins])


# ---------------------------------------------------------------------------
# SignalDelay and SignalOverlapAdd: sample history and running sum across invokes


@fast(12)
@given(st.integers(1, 3), st.integers(1, 48), st.integers(0, 100), seeds)
def test_delay_keeps_its_sample_history(outer, frame, delay, seed):
    """Delays shorter, equal and longer than an invoke's samples; enough invokes
    that the longest delay's zeros have all come out."""
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("x", [outer, frame], "int16")
    y = g.tensor("y", [outer, frame], "int16")
    g.op("SignalDelay", [x], [y], {"delay_length": delay})
    batches = [[int16_audio(rng, outer * frame).reshape(outer, frame)]
               for _ in range(delay // frame + 3)]
    assert_same(g.build([x], [y], "delay"), batches)


@fast(12)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 64), st.data(),
       st.sampled_from(["int16", "float32"]), seeds)
def test_overlap_add_keeps_its_running_sum(outer, n_frames, size, data, dtype, seed):
    """int16 sums saturate (full-scale frames overlap); float32 sums round as
    TFLM's, compared bit for bit."""
    rng = np.random.default_rng(seed)
    step = data.draw(st.integers(1, size))
    g = _Graph()
    x = g.tensor("x", [outer, n_frames, size], dtype)
    y = g.tensor("y", [outer, n_frames * step], dtype)
    g.op("SignalOverlapAdd", [x], [y], {"T": 7 if dtype == "int16" else 0, "frame_step": step})
    n = outer * n_frames * size

    def frame():
        if dtype == "int16":
            return int16_audio(rng, n).reshape(outer, n_frames, size)
        return (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)).astype(np.float32) \
            .reshape(outer, n_frames, size)
    batches = [[frame()] for _ in range(-(-size // step) + 3)]
    tflite = g.build([x], [y], "overlap add")
    if dtype == "int16":
        assert_same(tflite, batches)
        return
    ours, ref = both(tflite, batches)
    for n_inv, (a, r) in enumerate(zip(ours, ref)):
        a, r = np.asarray(a[0], np.float32), np.asarray(r[0], np.float32)
        assert a.view(np.uint32).tolist() == r.view(np.uint32).tolist(), f"invoke {n_inv}"


def test_delay_and_overlap_add_refuse_what_tflm_would_misread():
    g = _Graph()
    x = g.tensor("x", [2, 4], "int16")
    y = g.tensor("y", [6], "int16")
    g.op("SignalOverlapAdd", [x], [y], {"T": 7, "frame_step": 3 * 4})
    with pytest.raises(LoweringError, match="frame_step 12 is outside 1..4"):
        plan_aot(parse_tflite(g.build([x], [y], "overlap add")))
    g = _Graph()
    x = g.tensor("x", [2, 4], "float32")
    y = g.tensor("y", [4], "float32")
    g.op("SignalOverlapAdd", [x], [y], {"T": 7, "frame_step": 2})
    with pytest.raises(LoweringError, match="T 7 with a float32 input"):
        plan_aot(parse_tflite(g.build([x], [y], "overlap add")))
    g = _Graph()
    x = g.tensor("x", [8], "int16")
    y = g.tensor("y", [8], "int16")
    g.op("SignalDelay", [x], [y], {"delay_length": 3, "T": 7})
    with pytest.raises(LoweringError, match="reads exactly \\['delay_length'\\]"):
        plan_aot(parse_tflite(g.build([x], [y], "delay")))


def test_delay_and_overlap_add_on_cortex_m4(tmp_path):
    """One graph: int16 delay (longer than an invoke) into int16 overlap-add,
    and a float32 overlap-add beside it; eight invokes carry the state."""
    from harness import assert_bit_exact_m4, qemu_available
    if not qemu_available():
        pytest.skip("qemu-system-arm not installed")
    g = _Graph()
    a = g.tensor("a", [2, 3, 41], "int16")      # odd: QADD16 pairs and a last sample
    delayed = g.tensor("delayed", [2, 3, 41], "int16")
    summed = g.tensor("summed", [2, 3 * 16], "int16")
    f = g.tensor("f", [3, 40], "float32")
    fsum = g.tensor("fsum", [3 * 16], "float32")
    g.op("SignalDelay", [a], [delayed], {"delay_length": 57})
    g.op("SignalOverlapAdd", [delayed], [summed], {"T": 7, "frame_step": 16})
    g.op("SignalOverlapAdd", [f], [fsum], {"T": 0, "frame_step": 16})
    rng = np.random.default_rng(17)
    batches = [[int16_audio(rng, 246).reshape(2, 3, 41),
                rng.standard_normal((3, 40)).astype(np.float32)] for _ in range(8)]
    assert_bit_exact_m4(g.build([a, f], [summed, fsum], "delay + overlap add"), tmp_path,
                        inputs=batches)


# ---------------------------------------------------------------------------
# SignalIrfft: kissfft's inverse real FFT in Q15 (the Rfft's stages, run backwards)


@fast(10)
@given(st.integers(2, 11), st.integers(1, 3), st.integers(0, 3), seeds)
def test_irfft_int16(log2n, frames, extra_bins, seed):
    """Drawn spectra (full scale, -32768s, quiet, zero) and the spectra of
    drawn audio; input rows longer than the bins it reads included."""
    fft = 1 << log2n
    rng = np.random.default_rng(seed)
    row = fft + 2 + 2 * extra_bins
    g = _Graph()
    x = g.tensor("x", [frames, row], "int16")
    y = g.tensor("y", [frames, fft], "int16")
    g.op("SignalIrfft", [x], [y], {"T": 7, "fft_length": fft})
    batches = [[int16_audio(rng, frames * row).reshape(frames, row)] for _ in range(5)]
    batches.append([np.full((frames, row), -32768, np.int16)])
    assert_same(g.build([x], [y], "irfft"), batches)


def test_rfft_then_irfft_on_cortex_m4(tmp_path):
    """Both directions of the DSP butterflies in one graph on the M4."""
    from harness import assert_bit_exact_m4, qemu_available
    if not qemu_available():
        pytest.skip("qemu-system-arm not installed")
    g = _Graph()
    x = g.tensor("x", [2, 480], "int16")
    spec = g.tensor("spec", [2, 514], "int16")
    back = g.tensor("back", [2, 512], "int16")
    g.op("SignalRfft", [x], [spec], {"T": 7, "fft_length": 512})
    g.op("SignalIrfft", [spec], [back], {"T": 7, "fft_length": 512})
    rng = np.random.default_rng(5)
    batches = [[np.stack([int16_audio(rng, 480) for _ in range(2)])] for _ in range(5)]
    assert_bit_exact_m4(g.build([x], [spec, back], "rfft + irfft"), tmp_path, inputs=batches)


# ---------------------------------------------------------------------------
# --model-every: the pipeline's model runs at every N-th stride only


def _pooled_model(scale: float, zp: int) -> bytes:
    """A model that computes (an average pool over the window), so a skipped
    stride leaves its output unwritten."""
    g = _Graph()
    s = g.s
    x = g.tensor("x", [1, 49, 40, 1], "int8", scale=scale, zp=zp)
    y = g.tensor("y", [1, 7, 5, 1], "int8", scale=scale, zp=zp)
    o = s.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = s.Padding.VALID, 7, 8, 7, 8
    g.op("AVERAGE_POOL_2D", [x], [y], builtin=("Pool2DOptions", o))
    return g.build([x], [y], "pooled window")


def test_model_every_runs_the_model_at_every_nth_stride_on_the_host():
    """Features every stride and answers at strides 2, 5, 8, ... equal the
    interpreter's (which runs everything every stride: the model keeps no
    state)."""
    from test_frontend import audio_windows

    from tinygen.convert.pipeline import build_pipeline
    from tinygen.data import answer_rows, model_turns
    fe = build_frontend(FrontendParams())
    feat = parse_tflite(fe).output_tensors()[0]
    joined, _, _ = build_pipeline(fe, _pooled_model(feat.scale, feat.zero_point), 3)
    strides = audio_windows(12, 480, seed=3)[:, :320]
    ours, ref = both(joined, [[s[None]] for s in strides])
    with model_turns(3):
        rows = answer_rows(len(strides))
    assert rows == [2, 5, 8, 11]
    for k in range(len(strides)):
        assert np.array_equal(ours[k][0], ref[k][0]), k
        if k in rows:
            assert np.array_equal(ours[k][1], ref[k][1]), k
    # the model did not run in between: its output there is no answer (its
    # buffer is the front end's scratch until the next answer)
    assert not all(np.array_equal(ours[k][1], ref[k][1]) for k in range(12) if k not in rows)


_ANSWER_MAIN = r"""#include <stdio.h>
#include "model.h"

/* has_answer after init, after each of 7 invokes, after reset */
int main(void) {
  int k;
  if (model_init() != TG_OK) return 2;
  printf("%d", model_has_answer());
  for (k = 0; k < 7; ++k) {
    if (model_invoke() != TG_OK) return 3;
    printf("%d", model_has_answer());
  }
  model_reset();
  printf("%d", model_has_answer());
  return 0;
}
"""


@pytest.mark.parametrize("every", [1, 3])
def test_has_answer_says_which_strides_ran_the_model(every, tmp_path):
    """The C API's model_has_answer() is 1 exactly at the strides where
    verify compares answers (tinygen.data.model_turns), 0 after init and
    reset; without --model-every (every = 1) after every invoke."""
    import subprocess

    from harness import HOST_CFLAGS

    from tinygen.codegen.aot import generate_aot
    from tinygen.convert.pipeline import build_pipeline
    from tinygen.data import answer_rows, model_turns
    fe = build_frontend(FrontendParams())
    feat = parse_tflite(fe).output_tensors()[0]
    joined, _, _ = build_pipeline(fe, _pooled_model(feat.scale, feat.zero_point), every)
    src = tmp_path / "aot"
    generate_aot(parse_tflite(joined), src, board="host", copy_api_header=True)
    (tmp_path / "main.c").write_text(_ANSWER_MAIN)
    exe = tmp_path / "answers"
    subprocess.run(["gcc", *HOST_CFLAGS, "-O1", "-I", str(src), str(tmp_path / "main.c"),
                    *map(str, sorted(src.glob("*.c"))), "-o", str(exe), "-lm"], check=True)
    got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    with model_turns(every):
        rows = answer_rows(7) or list(range(7))
    assert got == "0" + "".join("1" if k in rows else "0" for k in range(7)) + "0"
