"""Jinja2 rendering shared by the backends and the build stage.

Templates only print what Python decided; StrictUndefined makes a missing
value an error instead of an empty string in generated C.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from ..paths import TEMPLATES_DIR

DTYPE_CODES = {"float32": 0, "int32": 2, "uint8": 3, "int16": 7, "int8": 9}
MAX_DIMS = 6


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def render(template: str, context: dict) -> str:
    return environment().get_template(template).render(**context)


def render_to(template: str, path: Path, context: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(template, context))
    return path


def signature_c_bytes(signature_hex: str) -> str:
    return ", ".join(f"0x{signature_hex[i:i + 2]}" for i in range(0, 64, 2))


def tensor_info_rows(tensors) -> list[dict]:
    """tg_tensor_info initializer fields for the model API's input/output tables."""
    rows = []
    for t in tensors:
        if len(t.shape) > MAX_DIMS:
            raise ValueError(f"tensor {t.name} has more than {MAX_DIMS} dimensions")
        dims = list(t.shape) + [0] * (MAX_DIMS - len(t.shape))
        rows.append({"dtype_code": DTYPE_CODES.get(t.dtype, 255), "rank": len(t.shape),
                     "dims": ", ".join(str(d) for d in dims), "bytes": t.nbytes,
                     "scale": repr(float(t.scale)), "zero_point": t.zero_point})
    return rows
