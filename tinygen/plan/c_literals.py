"""C literals and types shared by every lowering and by the renderer.

One place decides how a float32, an int list or a tensor type is spelled in
the generated C, so that a value prints the same in every kernel's parameters.
"""

from __future__ import annotations

import math

import numpy as np

from .lowering import LoweringError

# TFLite dtype -> (C element type, tg_model_api.h TG_DTYPE_* code or None)
C_TYPES = {
    "int8": ("int8_t", 9), "uint8": ("uint8_t", 3), "int16": ("int16_t", 7),
    "int32": ("int32_t", 2), "float32": ("float", 0), "int64": ("int64_t", None),
    "bool": ("uint8_t", None), "float16": ("uint16_t", None), "uint16": ("uint16_t", None),
    "uint32": ("uint32_t", 15), "uint64": ("uint64_t", 12), "float64": ("double", None),
}
MAX_DIMS = 6


def c_float(v: float, what: str = "quantization scale") -> str:
    """A float literal that parses back to exactly this float32."""
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise LoweringError(f"non-finite {what} {v!r}; the aot kernels need a finite value")
    return repr(f) + "f"


def c_ints(values, n: int | None = None) -> str:
    """A brace list of integers, zero-padded to n entries ({0} when empty)."""
    vals = [int(v) for v in values]
    if n is not None:
        vals = vals + [0] * (n - len(vals))
    return "{" + ", ".join(str(v) for v in (vals or [0])) + "}"


def c_type(dtype: str, what: str) -> str:
    if dtype not in C_TYPES:
        raise LoweringError(f"{what} has type {dtype}, which the aot runtime cannot hold")
    return C_TYPES[dtype][0]
