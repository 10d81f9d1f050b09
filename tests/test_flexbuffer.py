"""tinygen.ir.flexbuffer against bytes written by the flatbuffers package's
FlexBuffers Builder (the same format the TFLite converter writes custom
operator options in)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from flatbuffers import flexbuffers as fb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygen.ir import flexbuffer as fx

VECTOR = fx.VECTOR

FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

DETECTION_KEYS = dict(max_detections=10, max_classes_per_detection=1, num_classes=90,
                      nms_score_threshold=0.3, nms_iou_threshold=0.6, y_scale=10.0,
                      x_scale=10.0, h_scale=5.0, w_scale=5.0)


def build_map(fields: dict, float_width: int = 0, bool_as: str = "bool") -> bytes:
    """A map as the converter writes options (ints, floats, bools)."""
    b = fb.Builder()
    with b.Map():
        for k, v in fields.items():
            if isinstance(v, bool):
                if bool_as == "bool":
                    b.Bool(k, v)
                else:
                    b.Int(k, int(v))
            elif isinstance(v, int):
                b.Int(k, v)
            else:
                b.Float(k, v, float_width)
    return bytes(b.Finish())


def f32(x: float) -> float:
    return float(np.float32(x))


# ---------------------------------------------------------------------------
# well-formed buffers


@pytest.mark.parametrize("float_width", [0, 4, 8])
@pytest.mark.parametrize("bool_as", ["bool", "int"])
def test_detection_options_map(float_width, bool_as):
    data = build_map({**DETECTION_KEYS, "use_regular_nms": True}, float_width, bool_as)
    m = fx.read_map(data)
    assert sorted(m.keys()) == m.keys() == sorted([*DETECTION_KEYS, "use_regular_nms"])
    assert m["max_detections"].as_int32() == 10
    assert m["num_classes"].as_int32() == 90
    # AsFloat: float32 of the stored value, whatever width it was stored with
    assert m["nms_score_threshold"].as_float() == f32(0.3)
    assert m["nms_iou_threshold"].as_float() == f32(0.6)
    assert m["y_scale"].as_float() == 10.0
    assert m["use_regular_nms"].as_bool() is True
    assert "detections_per_class" not in m
    missing = m["detections_per_class"]
    assert missing.is_null and missing.as_int32() == 0 and missing.as_float() == 0.0
    assert missing.as_bool() is False


def test_converter_written_options():
    """Bytes the TF 2.21 converter wrote for TFLite_Detection_PostProcess
    (keys in insertion order, ints and float32s of width 4, use_regular_nms an int)."""
    data = bytes.fromhex(
        "6d61785f646574656374696f6e73006d61785f636c61737365735f7065725f646574656374696f"
        "6e006e756d5f636c6173736573006e6d735f73636f72655f7468726573686f6c64006e6d735f69"
        "6f755f7468726573686f6c6400795f7363616c6500785f7363616c6500685f7363616c6500775f"
        "7363616c65007573655f726567756c61725f6e6d73000a217e8e465b681720313a00000c000000"
        "010000000a0000000000a040010000000a0000000000003f9a99993e03000000010000000000a0"
        "4000002041000020410e06060e0e06060e0e0e322601")
    assert fx.loads(data) == {
        "h_scale": 5.0, "max_classes_per_detection": 1, "max_detections": 10,
        "nms_iou_threshold": 0.5, "nms_score_threshold": f32(0.3), "num_classes": 3,
        "use_regular_nms": 1, "w_scale": 5.0, "x_scale": 10.0, "y_scale": 10.0}
    m = fx.read_map(data)
    assert m["use_regular_nms"].type_name == "int" and m["use_regular_nms"].as_bool()


def test_conversions_follow_the_cpp_accessors():
    m = fx.read_map(build_map({"f": 2.75, "neg": -2.75, "i": -3, "big": 2 ** 40, "half": 0.5,
                               "t": True, "u8": 200}))
    assert m["f"].as_int() == 2 and m["neg"].as_int() == -2          # truncation
    assert m["i"].as_float() == -3.0 and m["i"].as_double() == -3.0
    assert m["big"].as_int() == 2 ** 40 and m["big"].as_int32() == 0  # static_cast<int32_t>
    assert m["half"].as_bool() is False                               # (uint64)0.5 == 0
    assert m["t"].as_int() == 1 and m["t"].as_float() == 1.0
    assert m["u8"].as_int() == 200
    with pytest.raises(fx.FlexBufferError, match="not a string"):
        m["i"].as_str()
    with pytest.raises(fx.FlexBufferError, match="not a map"):
        m["i"].as_map()


def test_float32_rounding_of_doubles():
    m = fx.read_map(build_map({"a": 0.1, "b": 1e300, "c": -1e-320}, float_width=8))
    assert m["a"].as_double() == 0.1 and m["a"].as_float() == f32(0.1)
    assert m["b"].as_float() == math.inf
    assert m["c"].as_float() == 0.0 and math.copysign(1, m["c"].as_float()) == -1
    with pytest.raises(fx.FlexBufferError, match="integer"):
        fx.read_map(build_map({"x": math.inf}))["x"].as_int()


def test_all_value_kinds_round_trip():
    obj = {"ints": [1, -2, 300, -70000, 2 ** 40], "floats": [0.5, 1.25], "s": "hé",
           "nested": {"b": [True, False], "none": None, "m": {"k": "v"}},
           "mixed": [1, "x", 2.5, None, [3]], "blob": b"\x00\x01\xff"}
    assert fx.loads(fb.Dumps(obj)) == obj
    b = fb.Builder()
    with b.Vector():
        b.IndirectInt(-5)
        b.IndirectUInt(7)
        b.IndirectFloat(2.5)
        b.Key("k")
    assert fx.loads(bytes(b.Finish())) == [-5, 7, 2.5, "k"]
    for fixed in ([1, 2], [1.5, 2.5, 3.5], [4, 5, 6, 7]):
        b = fb.Builder()
        b.FixedTypedVectorFromElements(fixed)
        assert fx.loads(bytes(b.Finish())) == fixed
    b = fb.Builder()
    b.TypedVectorFromElements([1.0, 2.0, -3.0])
    assert fx.loads(bytes(b.Finish())) == [1.0, 2.0, -3.0]


# (the Python Builder itself fails on floats beyond about 1e38 and on
# non-ASCII keys, so those are left out of the round trip)
scalars = (st.integers(-2 ** 63, 2 ** 63 - 1) | st.booleans() | st.none()
           | st.floats(-1e30, 1e30) | st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text("abcdefgh_XYZ019", min_size=1, max_size=6),
                                      inner, max_size=5), max_leaves=20)


@FAST
@given(values)
def test_round_trip_matches_the_reference_reader(obj):
    data = bytes(fb.Dumps(obj))
    assert fx.loads(data) == obj == fb.Loads(data)


# ---------------------------------------------------------------------------
# malformed buffers: FlexBufferError (a ValueError), never IndexError/struct.error


def test_bad_roots():
    for data in (b"", b"\x01", b"\x00\x01", b"\x00\x00\x03", b"\x01\x04\x08"):
        with pytest.raises(fx.FlexBufferError):
            fx.loads(data)
    with pytest.raises(fx.FlexBufferError, match="unknown FlexBuffers type"):
        fx.loads(bytes([0, 30 << 2, 1]))
    with pytest.raises(fx.FlexBufferError, match="not a map"):
        fx.read_map(fb.Dumps([1, 2]))
    assert issubclass(fx.FlexBufferError, ValueError)


def test_offsets_outside_the_buffer():
    data = bytearray(build_map(DETECTION_KEYS))
    data[-3] = 0xF0                        # the root map's offset points before byte 0
    with pytest.raises(fx.FlexBufferError, match="outside"):
        fx.read_map(bytes(data))


def test_unsorted_keys_are_rejected():
    data = bytearray(build_map({"a": 1, "b": 2}))
    i, j = data.index(b"a\0"), data.index(b"b\0")
    data[i], data[j] = data[j], data[i]
    with pytest.raises(fx.FlexBufferError, match="not sorted"):
        fx.read_map(bytes(data))


def test_narrow_float_is_rejected():
    # a float stored inline with a 1-byte parent width
    with pytest.raises(fx.FlexBufferError, match="4 or 8"):
        fx.loads(bytes([0x40, 3 << 2, 1]))


def test_deep_nesting_is_limited():
    data = fb.Dumps([[[[[[[[1]]]]]]]])
    assert fx.loads(data) == [[[[[[[[1]]]]]]]]
    # an untyped vector whose one element is an offset (0) to the vector itself
    vec = bytes([1, 0, VECTOR << 2])                      # length 1, element, its type
    buf = vec + bytes([2, VECTOR << 2, 1])                # root: offset 2 back -> byte 1
    with pytest.raises(fx.FlexBufferError, match="nest deeper"):
        fx.loads(buf)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_buffers_fail_cleanly(data):
    good = bytearray(fb.Dumps({**DETECTION_KEYS, "use_regular_nms": False,
                               "name": "x", "v": [1, 2.5]}))
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 3))
    buf = bytes(good[cut:])
    try:
        fx.loads(buf)
        m = fx.read_map(buf)
        for _k, v in m.items():
            try:
                v.as_float()
                v.as_int()
                v.as_bool()
            except fx.FlexBufferError:
                pass
    except fx.FlexBufferError:
        pass
    except RecursionError:          # pragma: no cover - must not happen
        raise AssertionError("unbounded recursion") from None


def test_struct_errors_never_escape():
    # every truncation of a valid buffer
    good = build_map({**DETECTION_KEYS, "use_regular_nms": True})
    for cut in range(len(good)):
        for buf in (good[cut:], good[:cut]):
            try:
                fx.read_map(buf)
            except fx.FlexBufferError:
                pass
            except (struct.error, IndexError) as exc:   # pragma: no cover
                raise AssertionError(f"unchecked read: {exc!r}") from exc
