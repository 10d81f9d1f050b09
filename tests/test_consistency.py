"""Graph consistency (tinygen/ir/consistency.py): real converted models pass,
and each edit that makes a model contradict itself is reported in one line
naming the operator, the tensor, what was expected and what was found."""

from __future__ import annotations

import re
import sys

import flatbuffers
import numpy as np
import pytest
from conftest import ROOT, run_cli

from tinygen.convert import parse_checked
from tinygen.errors import TinygenError
from tinygen.ir import parse_tflite
from tinygen.ir.consistency import find_inconsistency

sys.path.insert(0, str(ROOT / "tests" / "aot"))

FOREIGN_LSTM = ROOT / "examples" / "lstm_anomaly" / "foreign_lstm.tflite"


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb


def unpack(data: bytes):
    fb = _schema()
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))


def pack(m) -> bytes:
    b = flatbuffers.Builder(4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _ops(m, opcode: str) -> list:
    """Operators of the first subgraph with this builtin name, in order."""
    fb = _schema()
    code = getattr(fb.BuiltinOperator, opcode)
    return [op for op in m.subgraphs[0].operators
            if max(m.operatorCodes[op.opcodeIndex].builtinCode,
                   m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == code]


def _first(m, opcode):
    return _ops(m, opcode)[0]


def _tensor(m, ix):
    return m.subgraphs[0].tensors[ix]


def _shape(t) -> list[int]:
    return [int(d) for d in t.shape]


def _own_buffer(m, t, data: np.ndarray) -> None:
    """Give t a buffer of its own: the converter shares identical buffers
    (all-zero biases of several layers, for one)."""
    buf = _schema().BufferT()
    buf.data = np.asarray(data, np.uint8)
    m.buffers.append(buf)
    t.buffer = len(m.buffers) - 1


def _op_index(m, op) -> int:
    return m.subgraphs[0].operators.index(op)


# ---------------------------------------------------------------------------
# valid models are not flagged


def test_converted_model_is_consistent(cnn_tflite):
    data = cnn_tflite.read_bytes()
    assert find_inconsistency(parse_tflite(data)) is None
    # and after a round trip through the schema's object API, which every
    # mutation below uses: a failure below is the mutation, not the repacking
    assert find_inconsistency(parse_tflite(pack(unpack(data)))) is None


def test_foreign_lstm_is_consistent():
    assert find_inconsistency(parse_tflite(FOREIGN_LSTM.read_bytes())) is None


# ---------------------------------------------------------------------------
# mutations of a real converted model (Conv2D, DepthwiseConv2D, MaxPool,
# Flatten, Dense, Softmax from the Keras converter)


def _model_output_shape(m):
    """Issue 13 item 6: an edit that changes a model output's shape."""
    sg = m.subgraphs[0]
    _tensor(m, sg.outputs[0]).shape = [1, 7]
    return _op_index(m, _first(m, "SOFTMAX")), "SOFTMAX", r"output 0 tensor", r"\[1, 5\]", r"\[1, 7\]"


def _conv_output_height(m):
    op = _first(m, "CONV_2D")
    out = _tensor(m, op.outputs[0])
    shape = _shape(out)
    found = shape.copy()
    found[1] += 1
    out.shape = found
    return _op_index(m, op), "CONV_2D", "output 0", re.escape(str(shape)), re.escape(str(found))


def _conv_stride(m):
    op = _first(m, "CONV_2D")
    op.builtinOptions.strideH = op.builtinOptions.strideW = 2
    shape = _shape(_tensor(m, op.outputs[0]))
    want = [shape[0], shape[1] // 2, shape[2] // 2, shape[3]]     # 10x10 VALID -> 5x5
    return _op_index(m, op), "CONV_2D", "output 0", re.escape(str(want)), re.escape(str(shape))


def _depthwise_padding(m):
    op = _first(m, "DEPTHWISE_CONV_2D")
    op.builtinOptions.padding = 1        # SAME -> VALID: a 3x3 filter loses 2 rows, 2 columns
    shape = _shape(_tensor(m, op.outputs[0]))
    want = [shape[0], shape[1] - 2, shape[2] - 2, shape[3]]
    return (_op_index(m, op), "DEPTHWISE_CONV_2D", "output 0", re.escape(str(want)),
            re.escape(str(shape)))


def _pool_filter(m):
    op = _first(m, "MAX_POOL_2D")
    op.builtinOptions.filterHeight = 3
    op.builtinOptions.strideH = 3
    shape = _shape(_tensor(m, op.outputs[0]))
    h_in = _shape(_tensor(m, op.inputs[0]))[1]
    want = [shape[0], (h_in - 3 + 3) // 3, shape[2], shape[3]]
    return _op_index(m, op), "MAX_POOL_2D", "output 0", re.escape(str(want)), re.escape(str(shape))


def _fc_units(m):
    op = _first(m, "FULLY_CONNECTED")
    out = _tensor(m, op.outputs[0])
    out.shape = [1, 6]
    return _op_index(m, op), "FULLY_CONNECTED", "output 0", r"\[1, 5\]", r"\[1, 6\]"


def _reshape_elements(m):
    op = _first(m, "RESHAPE")
    out = _tensor(m, op.outputs[0])
    n = int(np.prod(out.shape))
    out.shape = [1, n + 1]
    return _op_index(m, op), "RESHAPE", "output 0", f"element count expected {n}", str(n + 1)


def _per_channel_scales(m):
    op = _first(m, "CONV_2D")
    q = _tensor(m, op.inputs[1]).quantization
    assert len(q.scale) > 1 and q.quantizedDimension == 0
    n = len(q.scale)
    q.scale, q.zeroPoint = list(q.scale[:-1]), list(q.zeroPoint[:-1])
    return None, None, "tensor", f"per-channel quantization expected {n} scales", str(n - 1)


def _bias_elements(m):
    op = _first(m, "CONV_2D")
    bias = _tensor(m, op.inputs[2])
    n = _shape(bias)[0]
    bias.shape = [n - 1]
    q = bias.quantization                   # per channel too: keep it matching the shape
    q.scale, q.zeroPoint = list(q.scale[:-1]), list(q.zeroPoint[:-1])
    _own_buffer(m, bias, m.buffers[bias.buffer].data[:4 * (n - 1)])
    return _op_index(m, op), "CONV_2D", r"input 2 \(bias\)", f"element count expected {n}", str(n - 1)


def _filter_channels(m):
    op = _first(m, "CONV_2D")
    w = _tensor(m, op.inputs[1])
    cout, kh, kw, cin = _shape(w)               # 3 input channels in the model
    w.shape = [cout, kh, kw, cin - 1]
    _own_buffer(m, w, m.buffers[w.buffer].data[:cout * kh * kw * (cin - 1)])
    return (_op_index(m, op), "CONV_2D", r"input 1 \(filter\)",
            f"input channels expected a divisor of the input's {cin}", str(cin - 1))


def _ops_out_of_order(m):
    ops = m.subgraphs[0].operators
    ops[0], ops[1] = ops[1], ops[0]
    return 0, "DEPTHWISE_CONV_2D", "input 0", "value expected", "no earlier operator writes it"


def _output_never_written(m):
    fb = _schema()
    sg = m.subgraphs[0]
    t = fb.TensorT()
    t.shape, t.type, t.name, t.buffer = [1, 5], fb.TensorType.INT8, "orphan", 0
    sg.tensors.append(t)
    sg.outputs = [len(sg.tensors) - 1]
    return None, None, "model output 0 tensor", "value expected", "no operator writes it"


def _filter_omitted(m):
    op = _first(m, "CONV_2D")
    op.inputs = [op.inputs[0], -1, op.inputs[2]]
    return _op_index(m, op), "CONV_2D", r"input 1 \(filter\)", "expected a tensor", r"it omitted \(-1\)"


MUTATIONS = [_filter_omitted, _model_output_shape, _conv_output_height, _conv_stride, _depthwise_padding,
             _pool_filter, _fc_units, _reshape_elements, _per_channel_scales, _bias_elements,
             _filter_channels, _ops_out_of_order, _output_never_written]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda f: f.__name__.lstrip("_"))
def test_mutation_is_reported(cnn_tflite, mutate):
    m = unpack(cnn_tflite.read_bytes())
    op_index, opcode, role, expected, found = mutate(m)
    data = pack(m)
    with pytest.raises(TinygenError) as err:
        parse_checked(data, "model.tflite")         # what inspect, build and verify call
    line = str(err.value)
    assert "\n" not in line
    if op_index is not None:
        assert line.startswith(f"model.tflite: inconsistent model at operator #{op_index} "
                               f"({opcode})"), line
    else:
        assert line.startswith("model.tflite: inconsistent model: "), line
    assert re.search(role, line), line
    assert re.search(expected, line), line
    assert re.search(found, line), line


def test_buffer_size_against_shape_and_type(cnn_tflite):
    """A constant whose shape no longer matches its bytes (the parser's check)."""
    m = unpack(cnn_tflite.read_bytes())
    w = _tensor(m, _first(m, "FULLY_CONNECTED").inputs[1])
    units, depth = _shape(w)
    w.shape = [units, depth + 1]
    with pytest.raises(TinygenError, match=rf"holds {units * depth} bytes, its shape "
                                           rf"\[{units}, {depth + 1}\] of int8 needs "
                                           rf"{units * (depth + 1)}"):
        parse_checked(pack(m), "model.tflite")


def test_lstm_output_shape_is_checked():
    m = unpack(FOREIGN_LSTM.read_bytes())
    op = _first(m, "UNIDIRECTIONAL_SEQUENCE_LSTM")
    out = _tensor(m, op.outputs[0])
    out.shape = list(out.shape[:-1]) + [out.shape[-1] + 1]
    p = find_inconsistency(parse_tflite(pack(m)))
    assert p is not None and p.op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM" and p.what == "shape"


def test_inspect_reports_the_inconsistency_in_one_line(cnn_tflite, tmp_path):
    m = unpack(cnn_tflite.read_bytes())
    _model_output_shape(m)
    path = tmp_path / "edited model.tflite"
    path.write_bytes(pack(m))
    r = run_cli("inspect", path, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("tinygen: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(r"operator #\d+ \(SOFTMAX\), output 0 tensor \d+ '.*': shape expected "
                     r"\[1, 5\] \(from its inputs and options\), found \[1, 7\]", errors[0]), errors[0]


# ---------------------------------------------------------------------------
# ops the converted model above does not have, built directly


def _builder():
    import tflite_builder as tb
    tb.OPTION_TABLES.setdefault("STRIDED_SLICE", "StridedSliceOptions")
    return tb


def _ew_options(name, **fields):
    obj = getattr(_schema(), name + "T")()
    for k, v in fields.items():
        setattr(obj, k, v)
    return obj


def _add_broadcast(out_shape):
    b = _builder().GraphBuilder()
    x = b.activation((1, 4, 4, 3), scale=0.1)
    y = b.activation((1, 1, 1, 3), scale=0.1)
    z = b.activation(out_shape, scale=0.2)
    b.op("ADD", [x, y], [z], _ew_options("AddOptions"))
    return b.build([x, y], [z])


def _concat(out_shape):
    b = _builder().GraphBuilder()
    x = b.activation((1, 4, 2), scale=0.1)
    y = b.activation((1, 4, 5), scale=0.1)
    z = b.activation(out_shape, scale=0.1)
    b.op("CONCATENATION", [x, y], [z], _ew_options("ConcatenationOptions", axis=-1))
    return b.build([x, y], [z])


def _pad(out_shape):
    b = _builder().GraphBuilder()
    x = b.activation((1, 4, 4, 2), scale=0.1)
    p = b.constant(np.asarray([[0, 0], [1, 2], [0, 3], [0, 0]], np.int32), "int32")
    z = b.activation(out_shape, scale=0.1)
    b.op("PAD", [x, p], [z], _ew_options("PadOptions"))
    return b.build([x], [z])


def _mean(out_shape):
    b = _builder().GraphBuilder()
    x = b.activation((1, 5, 5, 8), scale=0.1)
    a = b.constant(np.asarray([1, 2], np.int32), "int32")
    z = b.activation(out_shape, scale=0.1)
    b.op("MEAN", [x, a], [z], _ew_options("ReducerOptions", keepDims=False))
    return b.build([x], [z])


def _strided_slice(out_shape):
    b = _builder().GraphBuilder()
    x = b.activation((1, 10, 6), scale=0.1)
    begin = b.constant(np.asarray([0, -1, 1], np.int32), "int32")
    end = b.constant(np.asarray([1, 0, 6], np.int32), "int32")
    strides = b.constant(np.asarray([1, 1, 2], np.int32), "int32")
    z = b.activation(out_shape, scale=0.1)
    # last time step (shrunk), every second feature from 1
    b.op("STRIDED_SLICE", [x, begin, end, strides], [z],
         _ew_options("StridedSliceOptions", beginMask=1, endMask=1, shrinkAxisMask=2), version=2)
    return b.build([x], [z])


@pytest.mark.parametrize("build, good, bad", [
    (_add_broadcast, (1, 4, 4, 3), (1, 4, 4, 1)),
    (_concat, (1, 4, 7), (1, 4, 8)),
    (_pad, (1, 7, 7, 2), (1, 7, 4, 2)),
    (_mean, (1, 8), (1, 1, 1, 8)),
    (_strided_slice, (1, 3), (1, 6)),
], ids=["ADD", "CONCATENATION", "PAD", "MEAN", "STRIDED_SLICE"])
def test_built_op_shapes(build, good, bad):
    assert find_inconsistency(parse_tflite(build(good))) is None
    p = find_inconsistency(parse_tflite(build(bad)))
    assert p is not None and p.what == "shape" and p.op.index == 0, p
    assert p.expected.startswith(str(list(good))) and p.found == str(list(bad)), p.line()


def test_tflm_runs_the_built_models():
    """The shapes called consistent above are the ones TFLM computes."""
    from tflite_micro.python.tflite_micro import runtime
    for build, shape in [(_add_broadcast, (1, 4, 4, 3)), (_concat, (1, 4, 7)),
                         (_pad, (1, 7, 7, 2)), (_mean, (1, 8)), (_strided_slice, (1, 3))]:
        data = build(shape)
        interp = runtime.Interpreter.from_bytes(data)
        m = parse_tflite(data)
        for k, i in enumerate(m.inputs):
            interp.set_input(np.zeros(m.tensors[i].shape, np.int8), k)
        interp.invoke()
        assert interp.get_output(0).shape == shape


# ---------------------------------------------------------------------------
# no false alarm on the models users build: the zoo and the examples, converted


@pytest.mark.slow
def test_zoo_and_example_models_are_consistent(tmp_path):
    from tinygen.convert import convert
    from tinygen.load import load_model
    from tinygen.models import zoo
    ex = ROOT / "examples"
    cases = [(ex / "quickstart/model.h5", ex / "quickstart/calib.npy", None),
             (ex / "kws_cnn/model.h5", ex / "kws_cnn/calib.npy", None),
             (ex / "lstm_anomaly/model.h5", ex / "lstm_anomaly/calib.npy", None),
             (ex / "mobilenet_ssd/model.keras", ex / "mobilenet_ssd/calib.npy",
              ex / "mobilenet_ssd/ssd.json")]
    for name in zoo.MLPERF_TINY:
        model = zoo.build(name, 0.25)
        path = tmp_path / f"{name}.keras"
        model.save(path)
        np.save(tmp_path / f"{name}.npy", zoo.calibration_data(model, 8))
        cases.append((path, tmp_path / f"{name}.npy", None))
    for model_path, calib, det in cases:
        # convert() runs the check itself and raises on an inconsistency
        ir = convert(load_model(model_path), calib, detection=det).ir
        assert find_inconsistency(ir) is None, model_path
