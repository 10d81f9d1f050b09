"""keras_compat: Keras 3 -> tf_keras translation and the conversion routes it enables.

Fast tests check the translation (same floats, clear errors); slow ones convert
to int8 and run the result on the TFLM interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygen.convert import keras_compat as kc


@pytest.fixture(scope="module")
def tf():
    from tinygen import tfenv
    return tfenv.tf()


@pytest.fixture(scope="module")
def K(tf):
    import keras
    return keras


def _stacked_lstm(K):
    K.utils.set_random_seed(0)
    L = K.layers
    return K.Sequential([
        K.Input((20, 3)),
        L.LSTM(16, return_sequences=True),
        L.Dropout(0.2),
        L.LSTM(8),
        L.Dense(4, activation="relu"),
        L.BatchNormalization(),
        L.Dense(2),
    ], name="stacked")


def _autoencoder(K):
    K.utils.set_random_seed(1)
    L = K.layers
    inp = K.Input((10, 2), name="signal")
    x = L.Conv1D(8, 3, padding="same", activation="relu")(inp)
    x = L.LSTM(12)(x)
    x = L.RepeatVector(10)(x)
    x = L.LSTM(12, return_sequences=True)(x)
    x = L.TimeDistributed(L.Dense(2))(x)
    return K.Model(inp, x, name="autoencoder")


def _zoo(K):
    """Two inputs, a shared layer, a nested Sequential, dict outputs, odd activations."""
    K.utils.set_random_seed(2)
    L = K.layers
    a = K.Input((8, 4), name="a")
    b = K.Input((8, 4), name="b")
    shared = L.Dense(6, activation="hard_sigmoid")      # differs between Keras 2 and 3
    x = L.Concatenate()([shared(a), shared(b)])
    x = L.Bidirectional(L.LSTM(5, return_sequences=True))(x)
    x = L.GRU(7)(x)
    x = L.LeakyReLU(negative_slope=0.1)(x)
    sub = K.Sequential([K.Input((7,)), L.Dense(3, activation="swish"), L.Reshape((3, 1)),
                        L.Flatten()], name="head")
    return K.Model([a, b], {"y": sub(x), "features": x}, name="zoo")


def _randomize_bn(model):
    """Non-trivial BatchNormalization statistics, as a trained model has."""
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.5, beta.shape).astype(np.float32),
                               rng.normal(0, 0.5, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 2, var.shape).astype(np.float32)])


def _max_diff(a, b, tf):
    fa, fb = tf.nest.flatten(a), tf.nest.flatten(b)
    assert len(fa) == len(fb)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(fa, fb))


# ---------------------------------------------------------------------------
# translation: same floats


def test_stacked_lstm_translates_to_identical_floats(K, tf):
    import tf_keras
    m = _stacked_lstm(K)
    _randomize_bn(m)
    assert kc.needs_legacy_conversion(m)
    t = kc.to_tf_keras(m)
    assert isinstance(t, tf_keras.Model)
    assert not kc.needs_legacy_conversion(t)
    x = np.random.default_rng(0).standard_normal((4, 20, 3)).astype(np.float32)
    assert _max_diff(m(x), t(x), tf) <= 1e-5


def test_trained_model_translates_to_identical_floats(K, tf):
    m = _stacked_lstm(K)
    m.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 20, 3)).astype(np.float32)
    m.fit(x, x[:, -1, :2], epochs=2, batch_size=8, verbose=0)
    t = kc.to_tf_keras(m)
    assert _max_diff(m(x[:5]), t(x[:5]), tf) <= 1e-5


def test_functional_autoencoder_translates(K, tf):
    m = _autoencoder(K)
    t = kc.to_tf_keras(m)
    x = np.random.default_rng(1).standard_normal((3, 10, 2)).astype(np.float32)
    assert _max_diff(m(x), t(x), tf) <= 1e-5
    assert [l.name for l in t.layers][1:] == [l.name for l in m.layers][1:]


def test_multi_input_shared_nested_dict_outputs(K, tf):
    m = _zoo(K)
    t = kc.to_tf_keras(m)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((2, 8, 4)).astype(np.float32) for _ in range(2)]
    out_m, out_t = m(xs), t(xs)
    assert set(out_m) == set(out_t) == {"y", "features"}
    assert _max_diff(out_m, out_t, tf) <= 1e-5


def test_simple_rnn_and_fixed_batch(K, tf):
    L = K.layers
    m = K.Sequential([K.Input((6, 2)), L.SimpleRNN(4), L.Activation("softmax")])
    t = kc.to_tf_keras(m, batch_size=1)
    assert tuple(t.inputs[0].shape) == (1, 6, 2)
    x = np.ones((1, 6, 2), np.float32)
    assert _max_diff(m(x), t(x), tf) <= 1e-5


def test_lstm_keeps_fusable_path(K):
    """A fusable LSTM is rebuilt with unroll=False (even if asked to unroll); GRU unrolls."""
    L = K.layers
    m = K.Sequential([K.Input((5, 2)), L.LSTM(3, return_sequences=True, unroll=True, name="l"),
                      L.GRU(3, name="g"),
                      L.Dense(1)])
    t = kc.to_tf_keras(m)
    assert t.get_layer("l").unroll is False
    assert t.get_layer("g").unroll is True


# ---------------------------------------------------------------------------
# which models need it


def test_needs_legacy_conversion(K):
    import tf_keras
    L = K.layers
    cnn = K.Sequential([K.Input((8, 8, 1)), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])
    assert not kc.needs_legacy_conversion(cnn)
    assert kc.needs_legacy_conversion(_stacked_lstm(K))
    assert kc.needs_legacy_conversion(_zoo(K))           # GRU/Bidirectional, nested
    inner = K.Sequential([K.Input((4, 2)), L.LSTM(2)])
    outer = K.Sequential([K.Input((4, 2)), inner, L.Dense(1)])
    assert kc.needs_legacy_conversion(outer)             # LSTM inside a nested model
    legacy = tf_keras.Sequential([tf_keras.Input((4, 2)), tf_keras.layers.LSTM(2)])
    assert not kc.needs_legacy_conversion(legacy)
    assert kc.to_tf_keras(legacy) is legacy


# ---------------------------------------------------------------------------
# errors: one line, naming the layer


def _error(build):
    with pytest.raises(kc.TranslationError) as info:
        kc.to_tf_keras(build())
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_errors_name_the_layer(K):
    L = K.layers

    class Doubler(L.Layer):
        def call(self, x):
            return x * 2

    msg = _error(lambda: K.Sequential([K.Input((3,)), Doubler(name="twice")]))
    assert "'twice'" in msg and "custom" in msg
    msg = _error(lambda: K.Sequential([K.Input((3,)), L.Lambda(lambda x: x, name="lam")]))
    assert "'lam'" in msg and "Lambda" in msg
    msg = _error(lambda: K.Sequential([K.Input((None, 3)), L.GRU(3, name="g")]))
    assert "'g'" in msg and "timesteps" in msg
    msg = _error(lambda: K.Sequential([K.Input((4, 3)),
                                       L.LayerNormalization(rms_scaling=True, name="ln")]))
    assert "'ln'" in msg and "rms_scaling" in msg
    msg = _error(lambda: K.Sequential([K.Input((4, 3), batch_size=1),
                                       L.LSTM(3, stateful=True, name="st")]))
    assert "'st'" in msg and "stateful" in msg
    assert kc.UnsupportedLayerError is kc.TranslationError


def test_converter_refuses_untranslated_rnn(K):
    with pytest.raises(kc.TranslationError):
        kc.tflite_converter(_stacked_lstm(K))


# ---------------------------------------------------------------------------
# int8 conversion and TFLM


def _int8(tf, model, calib):
    conv = kc.tflite_converter(model, batch=1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    from tinygen import tfenv
    with tfenv.quiet():
        return conv.convert()


def _check_integer_only(ir):
    for t in ir.input_tensors() + ir.output_tensors():
        assert t.dtype == "int8", t.name
    for op in ir.operators:
        for i in op.inputs + op.outputs:     # LSTM intermediates carry only quant params
            if i >= 0:
                assert ir.tensors[i].dtype in ("int8", "int16", "int32"), (op.opcode, ir.tensors[i])


def _run_tflm(buf, ir, xs, reset=True):
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(buf, arena_size=400_000)
    ti, to = ir.input_tensors()[0], ir.output_tensors()[0]
    outs = []
    for x in xs:
        if reset:
            interp.reset()
        q = np.clip(np.round(x / ti.scale) + ti.zero_point, -128, 127).astype(np.int8)
        interp.set_input(q, 0)
        interp.invoke()
        outs.append((interp.get_output(0).astype(np.float32) - to.zero_point) * to.scale)
    return outs, to.scale


@pytest.mark.slow
def test_stacked_lstm_int8_fused_and_runs_on_tflm(K, tf):
    from tinygen.ir import parse_tflite
    m = _stacked_lstm(K)
    _randomize_bn(m)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 20, 3)).astype(np.float32) for _ in range(40)]
    buf = _int8(tf, kc.to_tf_keras(m), calib)
    ir = parse_tflite(buf)
    # Dense(relu) -> BatchNormalization cannot fold: it stays MUL + ADD
    assert [op.opcode for op in ir.operators] == [
        "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE",
        "FULLY_CONNECTED", "MUL", "ADD", "FULLY_CONNECTED"]
    assert ir.num_subgraphs == 1
    _check_integer_only(ir)
    lstm = ir.operators[0]
    states = [ir.tensors[i] for i in lstm.inputs if i >= 0 and ir.tensors[i].is_variable]
    assert sorted(t.dtype for t in states) == ["int16", "int8"]    # cell state is int16

    outs, scale = _run_tflm(buf, ir, calib[:10])
    ref = np.concatenate([m(x).numpy() for x in calib[:10]])
    err = np.max(np.abs(np.concatenate(outs) - ref))
    assert err <= max(8 * scale, 0.05 * np.max(np.abs(ref))), err
    # the state tensors persist across invokes: without reset() a sequence sees the last state
    again, _ = _run_tflm(buf, ir, [calib[0], calib[0]], reset=False)
    assert not np.array_equal(again[0], again[1]) or np.allclose(again[0], 0)


@pytest.mark.slow
def test_autoencoder_int8_uses_broadcast_not_tile(K, tf):
    from tinygen.ir import parse_tflite
    m = _autoencoder(K)
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 10, 2)).astype(np.float32) for _ in range(30)]
    buf = _int8(tf, kc.to_tf_keras(m), calib)
    ir = parse_tflite(buf)
    ops = [op.opcode for op in ir.operators]
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    assert "BROADCAST_TO" in ops and "TILE" not in ops        # TFLM has no TILE kernel
    assert "WHILE" not in ops
    _check_integer_only(ir)
    outs, scale = _run_tflm(buf, ir, calib[:5])
    ref = np.concatenate([m(x).numpy() for x in calib[:5]])
    assert np.max(np.abs(np.concatenate(outs) - ref)) <= max(8 * scale, 0.05 * np.max(np.abs(ref)))


@pytest.mark.slow
def test_keras3_cnn_fixed_batch_route_has_no_shape_ops(K, tf):
    from tinygen.ir import parse_tflite
    L = K.layers
    K.utils.set_random_seed(4)
    m = K.Sequential([K.Input((16, 10, 1)), L.Conv2D(4, 3, padding="same", activation="relu"),
                      L.BatchNormalization(), L.DepthwiseConv2D(3, padding="same"), L.ReLU(),
                      L.MaxPooling2D(), L.Flatten(), L.Dropout(0.2),
                      L.Dense(5, activation="softmax")])
    _randomize_bn(m)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 16, 10, 1)).astype(np.float32) for _ in range(30)]
    buf = _int8(tf, m, calib)
    ir = parse_tflite(buf)
    ops = [op.opcode for op in ir.operators]
    assert not {"SHAPE", "PACK", "STRIDED_SLICE", "READ_VARIABLE", "VAR_HANDLE"} & set(ops)
    assert ops[0] == "CONV_2D" and ops[-1] == "SOFTMAX"
    _check_integer_only(ir)
    outs, scale = _run_tflm(buf, ir, calib[:5])
    ref = np.concatenate([m(x).numpy() for x in calib[:5]])
    assert np.max(np.abs(np.concatenate(outs) - ref)) <= 8 * scale
