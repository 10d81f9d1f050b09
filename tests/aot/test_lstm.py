"""UNIDIRECTIONAL_SEQUENCE_LSTM on the aot runtime against the TFLM
interpreter, 0 LSB, with the state carried across invocations.

* the int16 sigmoid/tanh of tg_lstm.c on every int16 input vs TFLM's int16
  LOGISTIC / TANH (the same table and interpolation its LSTM uses);
* single-operator LSTM models built as flatbuffers (batch, steps, input size,
  units, time_major, quantization and cell_clip drawn by hypothesis), run for
  several consecutive invocations (state carried) and again after
  tg_model_reset();
* the models Keras users have, converted by tinygen.convert (LSTM -> Dense,
  stacked LSTMs, an LSTM autoencoder with RepeatVector and TimeDistributed),
  and an int8 LSTM converted by the plain TFLite converter from tf_keras;
* the LSTM variants TFLM rejects (projection, peephole, layer norm, CIFG) are
  rejected by the lowering with the reason;
* examples/lstm_anomaly on its 100 calibration windows (state reset before
  each), every kernel layout on the host and the tie windows on Cortex-M4.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tflite_builder as tb
from harness import HOST_CFLAGS, REPO, SANITIZE, HostBinary, _cache_dir, _run, random_inputs, run_tflm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_builder import GraphBuilder

from tinygen.codegen.aot import generate_aot
from tinygen.ir import parse_tflite
from tinygen.plan.lowering import LoweringError

schema = tb.schema
tb.OPTION_TABLES.setdefault("UNIDIRECTIONAL_SEQUENCE_LSTM", "UnidirectionalSequenceLSTMOptions")
tb.OPTION_TABLES.setdefault("LOGISTIC", "LogisticOptions")
tb.OPTION_TABLES.setdefault("TANH", "TanhOptions")

KERNELS = REPO / "firmware_templates" / "aot" / "kernels"
FAST = dict(deadline=None, derandomize=True, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture])
SLOW = dict(FAST, derandomize=False)


# ---------------------------------------------------------------------------
# one-operator LSTM models

def lstm_options(time_major=False, cell_clip=0.0, activation=4):
    o = schema.UnidirectionalSequenceLSTMOptionsT()
    o.fusedActivationFunction = activation          # 4 = TANH
    o.cellClip = float(cell_clip)
    o.timeMajor = bool(time_major)
    return o


def lstm_model(seed: int, batches=1, steps=4, n_in=3, units=5, time_major=False,
               cell_clip=0.0, cell_power=None, spread=1.0, variant=None,
               hidden_zp=None) -> bytes:
    """A single UNIDIRECTIONAL_SEQUENCE_LSTM shaped like the converter's: int8
    input/output/weights (per-tensor, symmetric), int32 biases (scale
    input * weight), int8 hidden state and power-of-two int16 cell state as
    variables, five intermediates (float ones and the hidden-scale int8 one)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("lstm")
    x_scale = float(np.float32(rng.uniform(0.004, 0.06)))
    x_zp = int(rng.integers(-128, 128))
    h_scale = float(np.float32(rng.uniform(0.5, 1.5) / 128))
    h_zp = int(rng.integers(-20, 21)) if hidden_zp is None else hidden_zp
    power = int(rng.integers(-15, -9)) if cell_power is None else cell_power
    shape = (steps, batches, n_in) if time_major else (batches, steps, n_in)
    x = b.activation(shape, scale=x_scale, zero_point=x_zp, name="input")

    def weights(rows, cols, act_scale, name):
        # the pre-activation x.W spans about +-4 (times spread)
        std_q = 73.0 * 73.0 * np.sqrt(cols)
        scale = float(np.float32(4.0 * spread / (std_q * act_scale) * rng.uniform(0.5, 2)))
        w = rng.integers(-127, 128, (rows, cols)).astype(np.int8)
        return b.constant(w, "int8", scale=scale, zero_point=0, name=name), scale

    w_in, w_rec, biases = [], [], []
    for g in ("input", "forget", "cell", "output"):
        t, s = weights(units, n_in, x_scale, f"input_to_{g}")
        w_in.append(t)
        bias = rng.normal(0, 1.0, units) / (x_scale * s) * spread
        biases.append(b.constant(np.clip(bias, -2**31, 2**31 - 1).astype(np.int32), "int32",
                                 scale=float(np.float32(x_scale * s)), zero_point=0,
                                 name=f"{g}_bias"))
    for g in ("input", "forget", "cell", "output"):
        w_rec.append(weights(units, units, h_scale, f"recurrent_to_{g}")[0])
    hidden = b.variable((batches, units), "int8", scale=h_scale, zero_point=h_zp, name="h")
    cell = b.variable((batches, units), "int16", scale=float(2.0 ** power), zero_point=0,
                      name="c")
    out_shape = shape[:2] + (units,)
    y = b.activation(out_shape, scale=h_scale, zero_point=h_zp, name="output")
    inputs = [x] + w_in + w_rec + [-1, -1, -1] + biases + [-1, -1, hidden, cell] + [-1] * 4
    if variant == "projection":
        inputs[16] = b.constant(rng.integers(-127, 128, (units, units)).astype(np.int8),
                                "int8", scale=0.01, zero_point=0)
    elif variant == "peephole":
        for k in (9, 10, 11):
            inputs[k] = b.constant(rng.integers(-100, 100, units).astype(np.int16), "int16",
                                   scale=0.001, zero_point=0)
    elif variant == "layer_norm":
        for k in (20, 21, 22, 23):
            inputs[k] = b.constant(rng.integers(1000, 30000, units).astype(np.int16), "int16",
                                   scale=0.0001, zero_point=0)
    elif variant == "cifg":
        inputs[1] = inputs[5] = -1
    inter = []
    for name in ("input_to_input", "input_to_forget", "input_to_cell", "input_to_output"):
        inter.append(b.activation((0,), "float32", scale=None, name=f"{name}_intermediate"))
    inter.append(b.activation((0,), "int8", scale=h_scale, zero_point=h_zp,
                              name="effective_hidden_scale_intermediate"))
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y],
         lstm_options(time_major, cell_clip), version=1)
    b.operators[-1].intermediates = inter
    return b.build([x], [y])


def _seq_inputs(model, seed, n):
    return random_inputs(model, np.random.default_rng(seed), n)


def _check_sequence(tflite: bytes, workdir: Path, n: int = 4, seed: int = 0,
                    inputs=None, reset_after: int | None = None, opt: str = "-O1",
                    sanitize: bool = False, **aot_opts) -> int:
    """Run n consecutive invocations on both (state carried); if reset_after
    is given, reset both after that many and run the rest again.  Returns the
    number of output values compared."""
    model = parse_tflite(tflite)
    binary = build_reset_host(model, workdir, opt=opt, sanitize=sanitize, **aot_opts)
    if aot_opts.get("core") == "cortex-m4f":
        # the int8 four-gate layout, or 16-bit weights where the fast requantization holds
        assert all("w4_in" in c.params if c.kernel == "tg_lstm_s8" else "w16" in c.params
                   for c in binary.result.calls if c.kernel.startswith("tg_lstm"))
    batches = inputs if inputs is not None else _seq_inputs(model, seed, n)
    ref = _tflm_with_reset(tflite, batches, reset_after)
    ours = _host_with_reset(binary, batches, reset_after)
    compared = 0
    for k, (r_row, o_row) in enumerate(zip(ref, ours)):
        for j, (r, o) in enumerate(zip(r_row, o_row)):
            r = np.asarray(r).reshape(o.shape)
            if not np.array_equal(r.astype(np.int64), o.astype(np.int64)):
                bad = np.argwhere(r != o)
                raise AssertionError(
                    f"invocation {k}, output {j}: {len(bad)} of {o.size} differ, max |delta| "
                    f"{int(np.max(np.abs(r.astype(np.int64) - o)))}; first at "
                    f"{bad[:4].tolist()}: tflm {[int(r[tuple(i)]) for i in bad[:4]]} aot "
                    f"{[int(o[tuple(i)]) for i in bad[:4]]}")
            compared += o.size
    return compared


RESET_MAIN_C = r"""/* aot host driver with resets: a 0x00 byte runs one inference on the
 * next input, a 0x01 byte calls tg_model_reset(). */
#include <stdio.h>
#include "tg_model_api.h"

int main(void) {
  int cmd, i;
  if (tg_model_init() != 0) return 2;
  while ((cmd = getchar()) != EOF) {
    if (cmd == 1) { tg_model_reset(); continue; }
    for (i = 0; i < tg_model_info.num_inputs; ++i) {
      size_t want = tg_model_info.inputs[i].bytes;
      if (fread(tg_model_input(i), 1, want, stdin) != want) return 3;
    }
    if (tg_model_run() != 0) return 4;
    for (i = 0; i < tg_model_info.num_outputs; ++i) {
      size_t want = tg_model_info.outputs[i].bytes;
      if (fwrite(tg_model_output(i), 1, want, stdout) != want) return 5;
    }
  }
  return 0;
}
"""


def build_reset_host(model, workdir: Path, opt: str = "-O1", sanitize: bool = False,
                     **aot_opts):
    """generate_aot + one host executable driven by RESET_MAIN_C (aot_opts:
    core="cortex-m4f" for the dsp layout with portable intrinsics)."""
    workdir = Path(workdir)
    src = workdir / "aot"
    result = generate_aot(model, src, board="host", copy_api_header=True, **aot_opts)
    main = workdir / "tg_reset_main.c"
    main.write_text(RESET_MAIN_C)
    exe = workdir / "tg_host_reset"
    flags = [*HOST_CFLAGS, opt, *(SANITIZE if sanitize else ())]
    _run(["gcc", *flags, "-I", str(src), str(main), *map(str, sorted(src.glob("*.c"))),
          "-o", str(exe)])
    return HostBinary(exe=exe, result=result, model=model)


def _host_with_reset(binary, batches, reset_after):
    """The generated code, with tg_model_reset() before input `reset_after`."""
    model = binary.model
    ins = [model.tensors[i] for i in model.inputs]
    outs = [model.tensors[i] for i in model.outputs]
    payload = bytearray()
    for k, row in enumerate(batches):
        if reset_after is not None and k == reset_after:
            payload += b"\x01"
        payload += b"\x00"
        for t, arr in zip(ins, row):
            payload += np.ascontiguousarray(arr, dtype=t.np_dtype).tobytes()
    res = subprocess.run([str(binary.exe)], input=bytes(payload), capture_output=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    data, off, results = res.stdout, 0, []
    for _ in batches:
        row = []
        for t in outs:
            row.append(np.frombuffer(data[off:off + t.nbytes], t.np_dtype).reshape(t.shape).copy())
            off += t.nbytes
        results.append(row)
    assert off == len(data)
    return results


def _tflm_with_reset(tflite, batches, reset_after):
    from harness import tflm_arena_size
    from tflite_micro.python.tflite_micro import runtime
    model = parse_tflite(tflite)
    interp = runtime.Interpreter.from_bytes(bytes(tflite), arena_size=tflm_arena_size(model))
    results = []
    for k, row in enumerate(batches):
        if reset_after is not None and k == reset_after:
            interp.reset()
        for i, arr in enumerate(row):
            t = model.tensors[model.inputs[i]]
            interp.set_input(np.ascontiguousarray(arr, dtype=t.np_dtype).reshape(t.shape), i)
        interp.invoke()
        results.append([np.array(interp.get_output(j)).copy() for j in range(len(model.outputs))])
    return results


# ---------------------------------------------------------------------------
# the int16 activations, exhaustively

ACT_MAIN_C = r"""/* Exhaustive check driver: every int16 through tg_lstm.c's activations.
 * argv: "s" (sigmoid), "t MULT SHIFT" (tanh of the cell state) or "g" (tanh
 * of a Q3.12 gate); "sw", "w MULT SHIFT" and "gw" the forms of
 * tg_lstm_dsp_s8 (SMUAD interpolation in the mirrored table). */
#include <stdio.h>
#include <stdlib.h>
#include "tg_lstm.c"

int main(int argc, char **argv) {
  int32_t v, mult = 3, shift = 0, round;
  const int16_t *mid = tg_lstm_mirror + TG_LSTM_SIGMOID_MIRROR_HALF;
  const char form = argv[1][0];
  const int w = argv[1][0] == 'w' || argv[1][1] == 'w';
  if (argc >= 4) {
    mult = (int32_t)strtol(argv[2], NULL, 10);
    shift = (int32_t)strtol(argv[3], NULL, 10);
  }
  round = shift > 0 ? (1 << (shift - 1)) : 0;
  for (v = INT16_MIN; v <= INT16_MAX; ++v) {
    int16_t r;
    if (form == 's') {
      r = w ? tg_lstm_sigmoid_m(mid, 3 * v) : tg_lstm_sigmoid(v);
    } else if (form == 'g') {
      r = w ? tg_lstm_tanh_m(mid, 3 * v) : tg_lstm_tanh(v, 3, 0);
    } else {
      r = w ? tg_lstm_tanh_cell_m(mid, v, mult, round, shift) : tg_lstm_tanh(v, mult, shift);
    }
    fwrite(&r, sizeof r, 1, stdout);
  }
  return 0;
}
"""


def _activation_driver(tmp_path: Path) -> Path:
    src = tmp_path / "act_main.c"
    src.write_text(ACT_MAIN_C)
    exe = tmp_path / "act_main"
    # sanitized: an index outside the mirrored table is a global buffer overflow
    _run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", *SANITIZE, "-I",
          str(KERNELS), str(src), "-o", str(exe)])
    return exe


def _tflm_int16_activation(opcode: str, in_scale: float) -> np.ndarray:
    b = GraphBuilder(opcode.lower())
    x = b.activation((65536,), "int16", scale=in_scale, zero_point=0)
    y = b.activation((65536,), "int16", scale=2.0 ** -15, zero_point=0)
    b.op(opcode, [x], [y])
    ref = run_tflm(b.build([x], [y]), [[np.arange(-32768, 32768, dtype=np.int16)]])
    return np.asarray(ref[0][0]).reshape(-1)


@pytest.mark.parametrize("form", ["s", "sw"])
def test_sigmoid_int16_every_input_matches_tflm(tmp_path, form):
    exe = _activation_driver(tmp_path)
    ours = np.frombuffer(subprocess.run([str(exe), form], capture_output=True,
                                        check=True).stdout, np.int16)
    np.testing.assert_array_equal(ours, _tflm_int16_activation("LOGISTIC", 2.0 ** -12))


@pytest.mark.parametrize("form", ["g", "gw"])
def test_gate_tanh_int16_every_input_matches_tflm(tmp_path, form):
    """The cell gate's tanh of a Q3.12 pre-activation: its argument 3v is
    not clamped, so the mirrored table's entries past TFLM's saturation
    point (|3v| >> 8 up to 384) are all read."""
    exe = _activation_driver(tmp_path)
    ours = np.frombuffer(subprocess.run([str(exe), form], capture_output=True,
                                        check=True).stdout, np.int16)
    np.testing.assert_array_equal(ours, _tflm_int16_activation("TANH", 2.0 ** -12))


@pytest.mark.parametrize("form", ["t", "w"])
@pytest.mark.parametrize("power", [-12, -11, -15, -9])
def test_tanh_int16_every_input_matches_tflm(tmp_path, power, form):
    from tinygen.plan.ops.lstm import tanh_rescale
    exe = _activation_driver(tmp_path)
    mult, shift = tanh_rescale(power)
    ours = np.frombuffer(subprocess.run([str(exe), form, str(mult), str(shift)],
                                        capture_output=True, check=True).stdout, np.int16)
    np.testing.assert_array_equal(ours, _tflm_int16_activation("TANH", 2.0 ** power))


# ---------------------------------------------------------------------------
# single-operator LSTMs, drawn by hypothesis

@st.composite
def lstm_cases(draw, max_units=10):
    kw = dict(
        batches=draw(st.integers(1, 3)),
        steps=draw(st.integers(1, 6)),
        n_in=draw(st.integers(1, 9)),
        units=draw(st.integers(1, max_units)),
        time_major=draw(st.booleans()),
        cell_power=draw(st.integers(-17, -7)),
        spread=draw(st.sampled_from([0.3, 1.0, 1.0, 2.0, 6.0])),
        hidden_zp=draw(st.one_of(st.none(), st.integers(-128, 127))),
        cell_clip=draw(st.sampled_from([0.0, 0.0, 0.05, 0.7, 3.0, 1e6])),
    )
    return kw, draw(st.integers(0, 2 ** 31))


def _lstm_case(kw, seed, sanitize=False, **aot_opts) -> int:
    work = Path(tempfile.mkdtemp(prefix="tg_lstm_"))
    try:
        model = lstm_model(seed, **kw)
        return _check_sequence(model, work, n=5, seed=seed, reset_after=3, sanitize=sanitize,
                               **aot_opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@settings(max_examples=40, **FAST)
@given(lstm_cases())
def test_lstm_matches_tflm(case):
    kw, seed = case
    _lstm_case(kw, seed)


@settings(max_examples=30, **FAST)
@given(lstm_cases(max_units=13), st.booleans(), st.booleans(),
       st.sampled_from([None, 0.01, 0.03, 0.25]))
def test_lstm_dsp_matches_tflm(case, fast_requant, sanitize, small):
    """The DSP cores' layout (four gates interleaved for tg_dot4_s8, the fast
    requantization where the lowering proves it) with portable intrinsics.
    Gate multipliers below 1/2, as trained models have them, need small
    weight scales in these generated models (`small` spreads): those take
    the fast requantization (tg_lstm_dsp_s8, 16-bit weights); spread 0.25
    gives gate multipliers in [1/2, 1), no right shift (tg_lstm_dsp_e0_s8)."""
    kw, seed = case
    if small is not None:
        kw = {**kw, "spread": small}
    _lstm_case(kw, seed, sanitize=sanitize, core="cortex-m4f", fast_requant=fast_requant)


@pytest.mark.slow
@settings(max_examples=300, **SLOW)
@given(lstm_cases(max_units=24))
def test_lstm_sweep(case):
    kw, seed = case
    _lstm_case(kw, seed)


def test_lstm_sanitized_and_long_sequence(tmp_path):
    """ASan/UBSan build; 40 steps, 2 batches, 16 units, 12 inputs, state
    carried across 6 invocations with a reset in the middle."""
    model = lstm_model(7, batches=2, steps=40, n_in=12, units=16, cell_clip=3.0)
    assert _check_sequence(model, tmp_path, n=6, seed=7, reset_after=3, sanitize=True) \
        == 6 * 2 * 40 * 16


def test_lstm_saturated_inputs_and_gates(tmp_path):
    """Extreme input codes and large weights drive every gate into its
    table's saturated ends and the cell state into int16 saturation."""
    model = lstm_model(11, batches=1, steps=8, n_in=5, units=7, spread=40.0, cell_power=-15)
    m = parse_tflite(model)
    x = m.tensors[m.inputs[0]]
    rng = np.random.default_rng(3)
    seqs = [[rng.choice(np.array([-128, 127], np.int8), size=x.shape)] for _ in range(4)]
    _check_sequence(model, tmp_path, inputs=seqs, reset_after=2)


def test_lstm_non_power_of_two_cell_scale(tmp_path):
    """TFLM rounds a cell scale that is not a power of two to the nearest
    power for tanh (CheckedLog2); the aot lowering does the same."""
    model = lstm_model(5, batches=2, steps=5, n_in=3, units=4, cell_power=-11)
    fb = schema.ModelT.InitFromPackedBuf(model, 0)
    for t in fb.subgraphs[0].tensors:
        if t.name in (b"c", "c"):
            t.quantization.scale = [float(np.float32(2.0 ** -11 * 1.3))]
    b = flatbuffers_builder()
    b.Finish(fb.Pack(b), file_identifier=b"TFL3")
    _check_sequence(bytes(b.Output()), tmp_path, n=4, seed=5, reset_after=2)


def flatbuffers_builder():
    import flatbuffers
    return flatbuffers.Builder(4096)


def test_lstm_state_persists_and_reset_restores(tmp_path):
    """The same input twice gives different outputs (the state carried
    over); after tg_model_reset() the first output comes back."""
    model = lstm_model(2, batches=1, steps=3, n_in=4, units=6)
    m = parse_tflite(model)
    x = random_inputs(m, np.random.default_rng(0), 1)[0]
    binary = build_reset_host(m, tmp_path)
    outs = _host_with_reset(binary, [x, x, x], reset_after=2)
    assert not np.array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][0], outs[2][0])
    ref = _tflm_with_reset(model, [x, x, x], reset_after=2)
    for r, o in zip(ref, outs):
        np.testing.assert_array_equal(np.asarray(r[0]).reshape(o[0].shape), o[0])


@pytest.mark.parametrize("variant", ["projection", "peephole", "layer_norm", "cifg"])
def test_lstm_variants_tflm_rejects_are_rejected(tmp_path, variant):
    from tflite_micro.python.tflite_micro import runtime
    model = lstm_model(1, variant=variant)
    with pytest.raises(Exception):  # noqa: B017 - whatever the library raises
        runtime.Interpreter.from_bytes(model, arena_size=1 << 18).invoke()
    with pytest.raises(LoweringError, match="standard Keras LSTM"):
        generate_aot(parse_tflite(model), tmp_path / "aot")


# ---------------------------------------------------------------------------
# whole models, as users have them

def _stacked(keras):
    L = keras.layers
    keras.utils.set_random_seed(10)
    return keras.Sequential([keras.Input((12, 4)), L.LSTM(16, return_sequences=True),
                             L.LSTM(8, return_sequences=True), L.LSTM(6), L.Dense(3)]), (12, 4)


def _lstm8(keras):
    L = keras.layers
    keras.utils.set_random_seed(11)
    return keras.Sequential([keras.Input((20, 3)), L.LSTM(8), L.Dense(4)]), (20, 3)


def _autoencoder(keras):
    L = keras.layers
    keras.utils.set_random_seed(12)
    inp = keras.Input((10, 2))
    x = L.LSTM(12)(inp)
    x = L.RepeatVector(10)(x)
    x = L.LSTM(12, return_sequences=True)(x)
    x = L.TimeDistributed(L.Dense(2))(x)
    return keras.Model(inp, x), (10, 2)


def _bidirectional(keras):
    L = keras.layers
    keras.utils.set_random_seed(13)
    return keras.Sequential([keras.Input((9, 3)),
                             L.Bidirectional(L.LSTM(5, return_sequences=True)),
                             L.LSTM(4, go_backwards=True), L.Dense(2)]), (9, 3)


def _gru(keras):
    """GRU has no fused op: keras_compat unrolls it (UNPACK, SPLIT, SPLIT_V,
    element-wise gates)."""
    L = keras.layers
    keras.utils.set_random_seed(14)
    return keras.Sequential([keras.Input((6, 3)), L.GRU(6), L.Dense(2)]), (6, 3)


def _simple_rnn(keras):
    L = keras.layers
    keras.utils.set_random_seed(15)
    return keras.Sequential([keras.Input((7, 2)), L.SimpleRNN(5, return_sequences=True),
                             L.SimpleRNN(4), L.Dense(2)]), (7, 2)


WHOLE_MODELS = {"lstm8_dense": _lstm8, "stacked_lstm": _stacked,
                "lstm_autoencoder": _autoencoder, "bidirectional_lstm": _bidirectional,
                "gru_unrolled": _gru, "simple_rnn_unrolled": _simple_rnn}
UNROLLED = {"gru_unrolled", "simple_rnn_unrolled"}


def _cached_model(name: str, build) -> bytes:
    """Convert once with tinygen.convert (cached by the builder's source)."""
    import hashlib
    import inspect
    key = hashlib.sha256((inspect.getsource(build) + inspect.getsource(_convert_keras))
                         .encode()).hexdigest()[:16]
    path = _cache_dir() / f"lstm-{name}-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_convert_keras(build, name))
        os.replace(tmp, path)
    return path.read_bytes()


def _convert_keras(build, name: str) -> bytes:
    from tinygen import tfenv
    from tinygen.convert import convert
    from tinygen.load import load_model
    keras = tfenv.keras()
    model, shape = build(keras)
    work = Path(tempfile.mkdtemp(prefix="tg_lstm_keras_"))
    try:
        model.save(work / f"{name}.keras")
        rng = np.random.default_rng(0)
        np.save(work / "calib.npy", rng.standard_normal((24,) + shape).astype(np.float32))
        res = convert(load_model(work / f"{name}.keras"), work / "calib.npy")
        return res.tflite
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tf_keras_plain() -> bytes:
    """An int8 LSTM that tinygen did not make: tf_keras model, the plain
    TFLiteConverter.from_keras_model route, full-integer quantization."""
    from tinygen import tfenv
    tf = tfenv.tf()
    import tf_keras
    tf_keras.utils.set_random_seed(21)
    L = tf_keras.layers
    m = tf_keras.Sequential([tf_keras.Input((15, 5), batch_size=1),
                             L.LSTM(10, return_sequences=True), L.LSTM(7),
                             L.Dense(3, activation="softmax")])
    rng = np.random.default_rng(1)

    def rep():
        for _ in range(30):
            yield [rng.standard_normal((1, 15, 5)).astype(np.float32)]
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with tfenv.quiet():
        return conv.convert()


@pytest.fixture(scope="module")
def whole_models():
    out = {name: _cached_model(name, build) for name, build in WHOLE_MODELS.items()}
    out["tf_keras_plain"] = _cached_plain()
    return out


def _cached_plain() -> bytes:
    import hashlib
    import inspect
    key = hashlib.sha256(inspect.getsource(_tf_keras_plain).encode()).hexdigest()[:16]
    path = _cache_dir() / f"lstm-tf_keras_plain-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_tf_keras_plain())
        os.replace(tmp, path)
    return path.read_bytes()


@pytest.mark.parametrize("name", list(WHOLE_MODELS) + ["tf_keras_plain"])
def test_whole_model_bit_exact_with_state(whole_models, tmp_path, name):
    tflite = whole_models[name]
    ops = [op.opcode for op in parse_tflite(tflite).operators]
    if name in UNROLLED:
        assert "UNPACK" in ops, ops
    else:
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops, ops
    m = parse_tflite(tflite)
    n = 8
    seqs = random_inputs(m, np.random.default_rng(4), n)
    compared = _check_sequence(tflite, tmp_path, inputs=seqs, reset_after=5)
    assert compared == n * m.tensors[m.outputs[0]].num_elements


LSTM_ENTRY_POINTS = {"tg_lstm_s8", "tg_lstm_dsp_s8", "tg_lstm_dsp_e0_s8"}
# what only some entry points use (--gc-sections drops it with them): the
# assembly row routines, the mirrored table of the dsp kernels, the logistic
# table and the out-of-line requantization of tg_lstm_s8
LSTM_USERS = {"tg_lstm_row_asm": {"tg_lstm_dsp_s8"}, "tg_lstm_row_asm_e0": {"tg_lstm_dsp_e0_s8"},
              "tg_lstm_mirror": {"tg_lstm_dsp_s8", "tg_lstm_dsp_e0_s8"},
              "tg_lstm_sigmoid_lut": {"tg_lstm_s8"}, "tg_lstm_rq16": {"tg_lstm_s8"}}


def test_whole_models_cortex_m4_build(whole_models, tmp_path):
    """-Wall -Wextra -Werror -Os for Cortex-M4F, every model."""
    from harness import compile_cortex_m4
    for name, tflite in whole_models.items():
        out = generate_aot(parse_tflite(tflite), tmp_path / name, copy_api_header=True).out_dir
        compile_cortex_m4(out)
        if name not in UNROLLED:
            # what the model links of tg_lstm.c (--gc-sections drops the entry points
            # it does not call): the kernel it calls, its helpers and the table
            called = (out / "model.c").read_text()
            nm = subprocess.run(["arm-none-eabi-nm", "-S", str(out / "arm-obj" / "tg_lstm.o")],
                                check=True, capture_output=True, text=True).stdout
            users = lambda sym: LSTM_USERS.get(  # noqa: E731
                sym, {sym} if sym in LSTM_ENTRY_POINTS else None)
            linked = sum(int(f[1], 16) for f in (ln.split() for ln in nm.splitlines())
                         if len(f) == 4 and (users(f[3]) is None
                                             or any(u in called for u in users(f[3]))))
            assert linked < 4096, (name, nm)


@pytest.mark.skipif(not (__import__("harness").qemu_available()), reason="no QEMU")
def test_autoencoder_on_cortex_m4_qemu(whole_models, tmp_path):
    """The same generated code on an emulated Cortex-M4F: 5 invocations with
    the state carried, 0 LSB vs TFLM."""
    from harness import assert_bit_exact_m4
    assert_bit_exact_m4(whole_models["lstm_autoencoder"], tmp_path, n_inputs=5, seed=3)
    assert_bit_exact_m4(whole_models["stacked_lstm"], tmp_path / "s", n_inputs=5, seed=4)


@pytest.mark.skipif(not (__import__("harness").qemu_available()), reason="no QEMU")
@settings(max_examples=4, **FAST)
@given(lstm_cases(max_units=12))
def test_lstm_on_cortex_m4_qemu(case):
    """Single-operator LSTMs (odd sizes, batches, time-major) on the emulated
    Cortex-M4F, whose dot products take the SMLAD path: 4 invocations with
    the state carried."""
    from harness import assert_bit_exact_m4
    kw, seed = case
    with tempfile.TemporaryDirectory(prefix="tg_lstm_m4_") as d:
        assert_bit_exact_m4(lstm_model(seed, **kw), Path(d), n_inputs=4, seed=seed)


@pytest.mark.skipif(not (__import__("harness").qemu_available()), reason="no QEMU")
@settings(max_examples=4, **FAST)
@given(lstm_cases(max_units=12), st.sampled_from([0.01, 0.03, 0.25]))
def test_lstm_fast_requant_on_cortex_m4_qemu(case, spread):
    """Small gate multipliers: the fast requantization with the real SMMULR
    and SMLAD on 16-bit weights (0.25: some gates without a right shift)."""
    from harness import assert_bit_exact_m4
    kw, seed = case
    with tempfile.TemporaryDirectory(prefix="tg_lstm_m4_") as d:
        binary = assert_bit_exact_m4(lstm_model(seed, **{**kw, "spread": spread}), Path(d),
                                     n_inputs=4, seed=seed)
        kernels = [c.kernel for c in binary.result.calls if c.kernel.startswith("tg_lstm")]
        assert kernels and all(k in ("tg_lstm_dsp_s8", "tg_lstm_dsp_e0_s8") for k in kernels)


@pytest.mark.skipif(not (__import__("harness").qemu_available()), reason="no QEMU")
@settings(max_examples=6, **FAST)
@given(lstm_cases(max_units=13), st.sampled_from([0.01, 0.25]), st.sampled_from([0.05, 0.7]))
def test_lstm_row_routine_with_cell_clip_on_cortex_m4_qemu(case, spread, cell_clip):
    """tg_lstm_dsp_s8's row routine (assembly on the Cortex-M4) with the
    cell clip on, with and without gates that do not shift (0.25: e = 0,
    tg_lstm_dsp_e0_s8), unit counts and input sizes drawn across multiples
    of 4 and 8: 4 invocations with the state carried, 0 LSB vs TFLM."""
    from harness import assert_bit_exact_m4
    from hypothesis import assume

    from tinygen.plan.aot import plan_aot
    kw, seed = case
    tflite = lstm_model(seed, **{**kw, "spread": spread, "cell_clip": cell_clip})
    # shapes whose gate multipliers leave the fast requantization unproved
    # (few inputs: a multiplier above 1) run tg_lstm_s8, tested elsewhere
    calls = [c for c in plan_aot(parse_tflite(tflite), core="cortex-m4f")[0]
             if c.kernel.startswith("tg_lstm")]
    assume(all(c.kernel in ("tg_lstm_dsp_s8", "tg_lstm_dsp_e0_s8") for c in calls))
    assert calls and all(c.params["use_cell_clip"] == "1" for c in calls)
    with tempfile.TemporaryDirectory(prefix="tg_lstm_m4_") as d:
        assert_bit_exact_m4(tflite, Path(d), n_inputs=4, seed=seed)


def test_state_tensors_are_never_shared(whole_models, tmp_path):
    """The planner keeps every LSTM state tensor alive over the whole run, and
    the generated reset writes the hidden zero point / 0 over them."""
    m = parse_tflite(whole_models["stacked_lstm"])
    res = generate_aot(m, tmp_path / "aot")
    states = [t for t in m.tensors if t.is_variable]
    assert len(states) == 6          # three LSTMs, h and c each
    n_ops = len(m.operators)
    for buf in res.plan.buffers:
        if any(m.tensors[t].is_variable for t in buf.tensors):
            assert len(buf.tensors) == 1 and buf.first == -1 and buf.last == n_ops
    model_c = (tmp_path / "aot" / "model.c").read_text()
    # the model's own reset (<name>_reset; tg_model_reset only forwards to it)
    reset = model_c[model_c.index("void model_reset(void)"):model_c.index("model_init(void)")]
    for t in states:
        fill = t.zero_point & 0xFF if t.dtype == "int8" else 0
        assert f"tg_arena[{res.plan.offsets[t.index]}u + i] = (int8_t){fill};" in reset


# ---------------------------------------------------------------------------
# the lstm_anomaly example on its own calibration windows

ANOMALY = REPO / "examples" / "lstm_anomaly"


def _anomaly_model() -> bytes:
    """examples/lstm_anomaly converted as `tinygen verify` converts it (all 100
    calibration windows), cached by the model's and the windows' bytes."""
    import hashlib
    import inspect

    from tinygen.convert import convert
    from tinygen.load import load_model
    key = hashlib.sha256((ANOMALY / "model.h5").read_bytes() + (ANOMALY / "calib.npy").read_bytes()
                         + inspect.getsource(_anomaly_model).encode()).hexdigest()[:16]
    path = _cache_dir() / f"lstm-anomaly-{key}.tflite"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(convert(load_model(ANOMALY / "model.h5"), ANOMALY / "calib.npy").tflite)
        os.replace(tmp, path)
    return path.read_bytes()


def _anomaly_windows(model) -> np.ndarray:
    t = model.tensors[model.inputs[0]]
    x = np.load(ANOMALY / "calib.npy")
    q = np.round(x / t.quant.scale[0]) + t.quant.zero_point[0]
    return np.clip(q, -128, 127).astype(np.int8).reshape((-1,) + tuple(t.shape))


def _tflm_each_reset(tflite, windows) -> list[np.ndarray]:
    from tinygen.reference import TflmReference
    ref = TflmReference(tflite)
    outs = []
    for w in windows:
        ref.reset()
        outs.append(np.asarray(ref.run([w])[0]))
    return outs


# windows whose gate pre-activations land on a double-rounding tie that the
# float32 product of the input and weight scales moves (see gate_multiplier)
ANOMALY_TIE_WINDOWS = (70, 90)


@pytest.mark.parametrize("layout", ["portable", "dsp", "dsp_fast"])
def test_lstm_anomaly_calibration_windows_bit_exact(tmp_path, layout):
    """All 100 calibration windows of examples/lstm_anomaly (state reset
    before each, as tinygen verify runs them), 0 LSB vs the TFLM interpreter,
    on the host: the portable kernel, the DSP cores' int8 four-gate layout
    and the 16-bit fast path (tg_lstm_dsp_s8 / _e0_s8), portable intrinsics.
    Windows 70 and 90 were 1-3 LSB off while the gate multipliers took the
    scale product in float32."""
    tflite = _anomaly_model()
    model = parse_tflite(tflite)
    opts = {"portable": {}, "dsp": dict(core="cortex-m4f", fast_requant=False),
            "dsp_fast": dict(core="cortex-m4f", fast_requant=True)}[layout]
    binary = build_reset_host(model, tmp_path, **opts)
    kernels = {c.kernel for c in binary.result.calls if c.kernel.startswith("tg_lstm")}
    if layout == "dsp_fast":
        assert kernels <= {"tg_lstm_dsp_s8", "tg_lstm_dsp_e0_s8"}, kernels
    else:
        assert kernels == {"tg_lstm_s8"}, kernels
    windows = _anomaly_windows(model)
    out_t = model.tensors[model.outputs[0]]
    payload = b"".join(b"\x01\x00" + w.tobytes() for w in windows)
    res = subprocess.run([str(binary.exe)], input=payload, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    ours = np.frombuffer(res.stdout, out_t.np_dtype).reshape((len(windows),) + tuple(out_t.shape))
    ref = _tflm_each_reset(tflite, windows)
    bad = [k for k in range(len(windows))
           if not np.array_equal(ref[k].reshape(ours[k].shape), ours[k])]
    assert not bad, f"windows {bad} differ from TFLM"


@pytest.mark.skipif(not (__import__("harness").qemu_available()), reason="no QEMU")
def test_lstm_anomaly_tie_windows_on_cortex_m4_qemu(tmp_path):
    """The two windows that hit the tie, each from the reset state, on the
    emulated Cortex-M4F (SMLAD / SMMULR fast path): 0 LSB vs TFLM."""
    from harness import build_m4, run_m4
    tflite = _anomaly_model()
    model = parse_tflite(tflite)
    binary = build_m4(model, tmp_path)
    windows = _anomaly_windows(model)
    for k in ANOMALY_TIE_WINDOWS:
        ours = run_m4(binary, [[windows[k]]])[0][0]
        ref = _tflm_each_reset(tflite, [windows[k]])[0].reshape(ours.shape)
        assert np.array_equal(ref, ours), \
            f"window {k}: max |delta| {int(np.abs(ref.astype(int) - ours).max())}"
