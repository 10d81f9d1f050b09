"""The model IR: a .tflite flatbuffer parsed once into plain Python objects.

Every stage after conversion (analyze, codegen, build, verify) reads these
objects, never the flatbuffer, so the file format is handled in one place.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from .flatbuf import Buffer, FlatbufferError, Table
from .schema_enums import ACTIVATIONS, BUILTIN_OPS, PADDINGS, TENSOR_TYPES


class ModelFormatError(ValueError):
    """The bytes are not a usable .tflite model."""


_NUMPY_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "bool": np.bool_,
}

MAX_RANK = 8
MAX_ELEMENTS = 1 << 31


@dataclass
class Quantization:
    scale: np.ndarray            # float32, one per channel (length 1 when per-tensor)
    zero_point: np.ndarray       # int64, same length as scale
    axis: int = 0                # quantized dimension for per-channel

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                   # "int8", "int32", "float32", ...
    quant: Quantization | None
    data: np.ndarray | None      # constant contents, shaped and typed; None for activations
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def itemsize(self) -> int:
        return np.dtype(_NUMPY_DTYPES[self.dtype]).itemsize if self.dtype in _NUMPY_DTYPES else 0

    @property
    def nbytes(self) -> int:
        return self.num_elements * self.itemsize

    @property
    def np_dtype(self):
        return _NUMPY_DTYPES.get(self.dtype)

    @property
    def scale(self) -> float:
        return float(self.quant.scale[0]) if self.quant else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.quant.zero_point[0]) if self.quant else 0


@dataclass
class Operator:
    index: int
    opcode: str                  # builtin name ("CONV_2D") or the custom code
    builtin_code: int | None     # None for custom ops
    version: int
    inputs: list[int]            # tensor indices; -1 marks an omitted optional input
    outputs: list[int]
    intermediates: list[int] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    custom_options: bytes = b""

    @property
    def is_custom(self) -> bool:
        return self.builtin_code is None

    def describe(self) -> str:
        return f"{self.opcode} (operator #{self.index})"


@dataclass
class Model:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    tflite: bytes
    description: str = ""
    num_subgraphs: int = 1

    @property
    def signature(self) -> str:
        return hashlib.sha256(self.tflite).hexdigest()

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    def op_names(self) -> list[str]:
        """Distinct operator names in first-use order."""
        seen: dict[str, None] = {}
        for op in self.operators:
            seen.setdefault(op.opcode, None)
        return list(seen)

    def constant_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.is_constant)


# ---------------------------------------------------------------------------
# builtin options: field index -> (name, format, default) per options table.

_ACT = ("fused_activation_function", "b", 0)
_PAD = ("padding", "b", 0)

_OPTION_FIELDS: dict[str, list] = {
    "CONV_2D": [_PAD, ("stride_w", "i", 0), ("stride_h", "i", 0), _ACT,
                ("dilation_w_factor", "i", 1), ("dilation_h_factor", "i", 1)],
    "DEPTHWISE_CONV_2D": [_PAD, ("stride_w", "i", 0), ("stride_h", "i", 0),
                          ("depth_multiplier", "i", 0), _ACT,
                          ("dilation_w_factor", "i", 1), ("dilation_h_factor", "i", 1)],
    "AVERAGE_POOL_2D": [_PAD, ("stride_w", "i", 0), ("stride_h", "i", 0),
                        ("filter_width", "i", 0), ("filter_height", "i", 0), _ACT],
    "FULLY_CONNECTED": [_ACT, ("weights_format", "b", 0), ("keep_num_dims", "?", False),
                        ("asymmetric_quantize_inputs", "?", False)],
    "SOFTMAX": [("beta", "f", 0.0)],
    "CONCATENATION": [("axis", "i", 0), _ACT],
    "ADD": [_ACT, ("pot_scale_int16", "?", True)],
    "SUB": [_ACT, ("pot_scale_int16", "?", True)],
    "MUL": [_ACT],
    "MEAN": [("keep_dims", "?", False)],
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [_ACT, ("cell_clip", "f", 0.0), ("proj_clip", "f", 0.0),
                                     ("time_major", "?", False),
                                     ("asymmetric_quantize_inputs", "?", False),
                                     ("diagonal_recurrent_tensors", "?", False)],
    "STRIDED_SLICE": [("begin_mask", "i", 0), ("end_mask", "i", 0), ("ellipsis_mask", "i", 0),
                      ("new_axis_mask", "i", 0), ("shrink_axis_mask", "i", 0),
                      ("offset", "?", False)],
    "LEAKY_RELU": [("alpha", "f", 0.0)],
    "SQUEEZE": [("squeeze_dims", "[i", None)],
    "RESHAPE": [("new_shape", "[i", None)],
    "GATHER": [("axis", "i", 0), ("batch_dims", "i", 0)],
    "PACK": [("values_count", "i", 0), ("axis", "i", 0)],
    "UNPACK": [("num", "i", 0), ("axis", "i", 0)],
    "SPLIT": [("num_splits", "i", 0)],
    "SPLIT_V": [("num_splits", "i", 0)],
    "RESIZE_NEAREST_NEIGHBOR": [("align_corners", "?", False), ("half_pixel_centers", "?", False)],
    "RESIZE_BILINEAR": [None, None, ("align_corners", "?", False),
                        ("half_pixel_centers", "?", False)],
    "ARG_MAX": [("output_type", "b", 0)],
    "ARG_MIN": [("output_type", "b", 0)],
    "TRANSPOSE_CONV": [_PAD, ("stride_w", "i", 0), ("stride_h", "i", 0), _ACT],
}
_OPTION_FIELDS["MAX_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]
_OPTION_FIELDS["L2_POOL_2D"] = _OPTION_FIELDS["AVERAGE_POOL_2D"]
for _reducer in ("SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY"):
    _OPTION_FIELDS[_reducer] = _OPTION_FIELDS["MEAN"]


def _decode_options(opcode: str, table: Table | None) -> dict:
    fields = _OPTION_FIELDS.get(opcode)
    if fields is None:
        return {}
    out = {}
    for idx, spec in enumerate(fields):
        if spec is None:
            continue
        name, fmt, default = spec
        if table is None:
            value = default
        elif fmt.startswith("["):
            value = table.scalars(idx, fmt[1:])
        else:
            value = table.scalar(idx, fmt, default)
        if name == "fused_activation_function":
            value = ACTIVATIONS.get(value, f"UNKNOWN_{value}")
        elif name == "padding":
            value = PADDINGS.get(value, f"UNKNOWN_{value}")
        out[name] = value
    return out


# ---------------------------------------------------------------------------

_TFLITE_IDENTIFIER = b"TFL3"


def parse_tflite(data: bytes) -> Model:
    """Build the IR from .tflite bytes; raises ModelFormatError with a clear reason."""
    data = bytes(data)
    if len(data) < 16:
        raise ModelFormatError(f"file is only {len(data)} bytes, too short to be a .tflite model")
    if data[4:8] != _TFLITE_IDENTIFIER:
        raise ModelFormatError("not a TFLite flatbuffer (the 'TFL3' identifier is missing)")
    try:
        return _parse(data)
    except FlatbufferError as exc:
        raise ModelFormatError(f"corrupt or truncated .tflite: {exc}") from None
    except (UnicodeDecodeError, OverflowError, MemoryError, RecursionError) as exc:
        raise ModelFormatError(f"corrupt .tflite: {exc}") from None


def _parse(data: bytes) -> Model:
    buf = Buffer(data)
    root = buf.root()
    buffers = root.tables(4, "buffer")
    subgraphs = root.tables(2, "subgraph")
    if not subgraphs:
        raise ModelFormatError("the model has no subgraph")
    opcodes = []
    for oc in root.tables(1, "operator code"):
        code = max(oc.scalar(0, "b", 0), oc.scalar(3, "i", 0))
        custom = oc.string(1)
        version = oc.scalar(2, "i", 1)
        if code == 32:  # CUSTOM
            opcodes.append((custom or "CUSTOM", None, version))
        else:
            name = BUILTIN_OPS.get(code)
            if name is None:
                raise ModelFormatError(f"unknown builtin operator code {code}")
            opcodes.append((name, code, version))

    sg = subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tables(0, "tensor")):
        tensors.append(_parse_tensor(i, t, buffers, buf))

    def check_indices(indices, what, allow_missing=False):
        for ix in indices:
            if ix == -1 and allow_missing:
                continue
            if not 0 <= ix < len(tensors):
                raise ModelFormatError(
                    f"{what} refers to tensor {ix}, but the model has {len(tensors)} tensors")
        return indices

    operators = []
    for i, o in enumerate(sg.tables(3, "operator")):
        oi = o.scalar(0, "I", 0)
        if oi >= len(opcodes):
            raise ModelFormatError(
                f"operator #{i} uses operator code {oi}, but the model defines {len(opcodes)}")
        name, code, version = opcodes[oi]
        what = f"operator #{i} ({name})"
        opts_table = o.table(4, f"{name} options") if code is not None else None
        operators.append(Operator(
            index=i, opcode=name, builtin_code=code, version=version,
            inputs=check_indices(o.scalars(1, "i") or [], what, True),
            outputs=check_indices(o.scalars(2, "i") or [], what),
            intermediates=check_indices(o.scalars(8, "i") or [], what, True),
            options=_decode_options(name, opts_table) if code is not None else {},
            custom_options=o.bytes(5) or b"",
        ))
    inputs = check_indices(sg.scalars(1, "i") or [], "the subgraph inputs")
    outputs = check_indices(sg.scalars(2, "i") or [], "the subgraph outputs")
    return Model(tensors=tensors, operators=operators, inputs=inputs, outputs=outputs,
                 tflite=data, description=root.string(3, "") or "",
                 num_subgraphs=len(subgraphs))


def _parse_tensor(index: int, t: Table, buffers: list[Table], buf: Buffer) -> Tensor:
    name = t.string(3, "") or f"tensor_{index}"
    shape = tuple(t.scalars(0, "i") or [])
    if len(shape) > MAX_RANK:
        raise ModelFormatError(f"tensor '{name}' has rank {len(shape)} (at most {MAX_RANK})")
    if any(d < 0 for d in shape):
        sig = t.scalars(7, "i")
        raise ModelFormatError(
            f"tensor '{name}' has a dynamic shape {list(sig or shape)}; "
            "microcontroller firmware needs fixed shapes (give the model a fixed batch of 1)")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > MAX_ELEMENTS:
        raise ModelFormatError(f"tensor '{name}' has an absurd shape {list(shape)}")
    type_code = t.scalar(1, "b", 0)
    dtype = TENSOR_TYPES.get(type_code)
    if dtype is None:
        raise ModelFormatError(f"tensor '{name}' has unknown type code {type_code}")

    quant = None
    q = t.table(4, f"tensor '{name}' quantization")
    if q is not None:
        scale = q.scalars(2, "f")
        zp = q.scalars(3, "q")
        if scale:
            zp = zp if zp else [0] * len(scale)
            if len(zp) != len(scale):
                raise ModelFormatError(
                    f"tensor '{name}' has {len(scale)} scales but {len(zp)} zero points")
            # quantized_dimension is kept as written, even where it names no
            # dimension of the tensor: TFLM's allocator copies it unchecked and
            # only kernels that read per-channel scales check it (TFLM's own
            # person_detect.tflite has 1-D biases with quantized_dimension 3).
            # The lowerings that use per-channel scales apply TFLM's checks.
            axis = q.scalar(6, "i", 0)
            bad_scale = [s for s in scale if not (math.isfinite(s) and s >= 0)]
            if bad_scale:
                raise ModelFormatError(f"tensor '{name}' has an invalid quantization scale {bad_scale[0]}")
            np_int = _NUMPY_DTYPES.get(dtype)
            if np_int is not None and np.issubdtype(np_int, np.integer):
                lo, hi = np.iinfo(np_int).min, np.iinfo(np_int).max
                bad_zp = [z for z in zp if not lo <= z <= hi]
                if bad_zp:
                    raise ModelFormatError(
                        f"tensor '{name}' has zero point {bad_zp[0]} outside the {dtype} range")
            quant = Quantization(np.asarray(scale, np.float32), np.asarray(zp, np.int64), axis)

    data = None
    bi = t.scalar(2, "I", 0)
    if bi >= len(buffers):
        raise ModelFormatError(
            f"tensor '{name}' refers to buffer {bi}, but the model has {len(buffers)} buffers")
    if bi != 0:
        b = buffers[bi]
        raw = b.bytes(0)
        if not raw:
            off, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
            if off > 1 and size:
                buf.check(off, size, f"buffer {bi}")
                raw = bytes(buf.data[off:off + size])
        if raw:
            np_dtype = _NUMPY_DTYPES.get(dtype)
            if np_dtype is None:
                raise ModelFormatError(f"constant tensor '{name}' has unsupported type {dtype}")
            need = count * np.dtype(np_dtype).itemsize
            if len(raw) != need:
                raise ModelFormatError(
                    f"constant tensor '{name}' holds {len(raw)} bytes, its shape "
                    f"{list(shape)} of {dtype} needs {need}")
            data = np.frombuffer(raw, dtype=np_dtype).reshape(shape)
    return Tensor(index=index, name=name, shape=shape, dtype=dtype, quant=quant, data=data,
                  is_variable=bool(t.scalar(5, "?", False)))
