"""The `tflm` backend: the model as a C array plus TensorFlow Lite Micro glue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..analyze.tflm_resolver import tflm_method
from ..errors import TinygenError
from ..ir import Model
from .render import render_to, signature_c_bytes, tensor_info_rows

TEMPLATE_DIR = "tflm"


@dataclass
class ResolverEntry:
    name: str                    # op name as in the model
    method: str                  # MicroMutableOpResolver method


@dataclass
class TflmResult:
    files: list[Path]
    resolver: list[ResolverEntry]
    arena_bytes: int


def resolver_entries(model: Model) -> list[ResolverEntry]:
    """Exactly the model's distinct ops, in first-use order."""
    entries = []
    for name in model.op_names():
        method = tflm_method(name)
        if method is None:
            op = next(o for o in model.operators if o.opcode == name)
            raise TinygenError(f"TFLM has no kernel for {op.describe()}")
        entries.append(ResolverEntry(name=name, method=method))
    return entries


def model_array(data: bytes, per_line: int = 16) -> str:
    rows = []
    for i in range(0, len(data), per_line):
        rows.append(", ".join(f"0x{b:02x}" for b in data[i:i + per_line]))
    return ",\n  ".join(rows)


def generate_model_data(model: Model, model_name: str, out_dir: Path) -> list[Path]:
    ctx = dict(version=__version__, model_name=model_name, model_bytes=len(model.tflite),
               model_array=model_array(model.tflite), signature=model.signature,
               signature_bytes=signature_c_bytes(model.signature))
    return [render_to(f"{TEMPLATE_DIR}/model_data.h.j2", out_dir / "model_data.h", ctx),
            render_to(f"{TEMPLATE_DIR}/model_data.c.j2", out_dir / "model_data.c", ctx)]


def generate_tflm(model: Model, model_name: str, board_id: str, arena_measured: int,
                  arena_bytes: int, arena_in_psram: bool, out_dir: Path) -> TflmResult:
    resolver = resolver_entries(model)
    files = generate_model_data(model, model_name, out_dir)
    ctx = dict(version=__version__, model_name=model_name, board=board_id,
               ops=[{"name": e.name, "method": e.method} for e in resolver],
               arena_bytes=arena_bytes, arena_measured=arena_measured,
               arena_margin=arena_bytes - arena_measured, arena_in_psram=arena_in_psram,
               inputs=tensor_info_rows(model.input_tensors()),
               outputs=tensor_info_rows(model.output_tensors()),
               signature_bytes=signature_c_bytes(model.signature))
    files.append(render_to(f"{TEMPLATE_DIR}/tg_model_tflm.cc.j2", out_dir / "tg_model_tflm.cc", ctx))
    return TflmResult(files=files, resolver=resolver, arena_bytes=arena_bytes)
