"""The IR against the flatbuffers object API generated from TFLite's schema."""

import numpy as np
import pytest

from tinygen.ir import ModelFormatError, parse_tflite
from tinygen.ir.schema_enums import BUILTIN_OPS


def reference_model(data: bytes):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))


def test_ir_matches_schema_object_api(cnn_tflite):
    data = cnn_tflite.read_bytes()
    ir = parse_tflite(data)
    ref = reference_model(data)
    sg = ref.subgraphs[0]
    assert ir.inputs == list(sg.inputs) and ir.outputs == list(sg.outputs)
    assert len(ir.tensors) == len(sg.tensors)
    for t, rt in zip(ir.tensors, sg.tensors):
        assert t.shape == tuple(rt.shape)
        assert t.name == rt.name.decode()
        if rt.quantization is not None and rt.quantization.scale is not None \
                and len(rt.quantization.scale):
            np.testing.assert_array_equal(t.quant.scale, np.asarray(rt.quantization.scale, np.float32))
            np.testing.assert_array_equal(t.quant.zero_point, np.asarray(rt.quantization.zeroPoint))
            assert t.quant.axis == rt.quantization.quantizedDimension
        buf = ref.buffers[rt.buffer].data
        if buf is not None and len(buf):
            assert t.data.tobytes() == bytes(np.asarray(buf, np.uint8))
        else:
            assert t.data is None
    assert len(ir.operators) == len(sg.operators)
    for op, rop in zip(ir.operators, sg.operators):
        code = ref.operatorCodes[rop.opcodeIndex]
        assert op.opcode == BUILTIN_OPS[max(code.builtinCode, code.deprecatedBuiltinCode)]
        assert op.inputs == list(rop.inputs) and op.outputs == list(rop.outputs)
        assert op.version == code.version
        if op.opcode == "CONV_2D":
            o = rop.builtinOptions
            assert (op.options["stride_w"], op.options["stride_h"]) == (o.strideW, o.strideH)
            assert op.options["padding"] == ("SAME", "VALID")[o.padding]


def test_ir_signature_is_sha256_of_file(cnn_tflite):
    import hashlib
    data = cnn_tflite.read_bytes()
    assert parse_tflite(data).signature == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cut", [8, 100, 0.5, -40])
def test_truncated_model_is_rejected_cleanly(cnn_tflite, cut):
    data = cnn_tflite.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    with pytest.raises(ModelFormatError):
        parse_tflite(data[:n])


def test_random_bytes_are_rejected():
    rng = np.random.default_rng(3)
    for _ in range(50):
        blob = bytearray(rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
        blob[4:8] = b"TFL3"
        try:
            parse_tflite(bytes(blob))
        except ModelFormatError:
            pass


def test_out_of_range_tensor_index_is_named(cnn_tflite):
    """Corrupt an operator's input index and expect an error that says so."""
    data = bytearray(cnn_tflite.read_bytes())
    ir = parse_tflite(bytes(data))
    op = ir.operators[0]
    # find the int32 vector holding op.inputs and bump its first entry far out of range
    needle = np.asarray(op.inputs, np.int32).tobytes()
    at = bytes(data).find(np.asarray([len(op.inputs)], np.uint32).tobytes() + needle)
    assert at > 0
    data[at + 4:at + 8] = np.asarray([9999], np.int32).tobytes()
    with pytest.raises(ModelFormatError, match="tensor 9999"):
        parse_tflite(bytes(data))
