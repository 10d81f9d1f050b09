"""The `tflm` backend: the model as a C array plus TensorFlow Lite Micro glue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..analyze.tflm_resolver import tflm_method
from ..errors import TinygenError
from ..ir import Model
from .api import DEFAULT_NAME, check_name, header_name, render_header
from .render import render_to, signature_c_bytes, tensor_info_rows

TEMPLATE_DIR = "tflm"


@dataclass
class ResolverEntry:
    name: str                    # op name as in the model
    method: str                  # MicroMutableOpResolver method
    registration: str = ""       # argument of the method: a type-specialised kernel, or ""


# Kernels TFLM offers specialised for int8 activations and int8 weights
# (CMSIS-NN defines them; reference trees alias them to the generic kernel).
# The generic Add<Op>() links the kernel for every type the op supports (with
# CMSIS-NN its int4 and int16 paths too); naming the int8 one links only it.
_INT8_REGISTRATIONS = {
    "CONV_2D": "Register_CONV_2D_INT8", "DEPTHWISE_CONV_2D": "Register_DEPTHWISE_CONV_2D_INT8",
    "FULLY_CONNECTED": "Register_FULLY_CONNECTED_INT8", "TRANSPOSE_CONV": "Register_TRANSPOSE_CONV_INT8",
    "AVERAGE_POOL_2D": "Register_AVERAGE_POOL_2D_INT8", "MAX_POOL_2D": "Register_MAX_POOL_2D_INT8",
    "ADD": "Register_ADD_INT8", "MUL": "Register_MUL_INT8", "SVDF": "Register_SVDF_INT8",
    "BATCH_MATMUL": "Register_BATCH_MATMUL_INT8",
    # Not UNIDIRECTIONAL_SEQUENCE_LSTM: CMSIS-NN's int8-only LSTM kernel aborted on
    # lstm_anomaly (TFLM tree 90b983c) where the generic registration runs it.
}


def int8_registration(model: Model, opcode: str, defined: frozenset[str] | set[str] = frozenset()) -> str:
    """The int8-only kernel for an opcode when every use of it in the model has
    int8 activations and (where it has them) int8 weights and the TFLM source
    defines that kernel itself (`defined`: the Register_X names its kernel files
    define, as read from the tree); else "" (the generic kernel).  Without a tree
    (ESP-IDF's component) nothing is assumed."""
    ops = [op for op in model.operators if op.opcode == opcode]

    def dtypes(idxs):
        return {model.tensors[i].dtype for i in idxs if i >= 0}

    if opcode == "SOFTMAX":
        ins = set().union(*(dtypes(op.inputs) for op in ops))
        outs = set().union(*(dtypes(op.outputs) for op in ops))
        if ins == {"int8"} and outs == {"int8"} and "SOFTMAX_INT8" in defined:
            return "tflite::Register_SOFTMAX_INT8()"
        if ins == {"int8"} and outs == {"int16"} and "SOFTMAX_INT8_INT16" in defined:
            return "tflite::Register_SOFTMAX_INT8_INT16()"
        return ""
    name = _INT8_REGISTRATIONS.get(opcode)
    if name is None or not ops or name.removeprefix("Register_") not in defined:
        return ""
    allowed = {"int8", "int32"}      # int32: biases
    for op in ops:
        first_in = model.tensors[op.inputs[0]].dtype if op.inputs and op.inputs[0] >= 0 else None
        if first_in != "int8" or dtypes(op.outputs) != {"int8"}:
            return ""
        if not dtypes(op.inputs) <= allowed:
            return ""
    return f"tflite::{name}()"


@dataclass
class TflmResult:
    files: list[Path]
    resolver: list[ResolverEntry]
    arena_bytes: int
    fingerprint: str = ""        # updatable: what the glue compiles in (tflm_fingerprint)


def tflm_fingerprint(model: Model, name: str = DEFAULT_NAME) -> str:
    """SHA-256 of what an updatable tflm glue compiles in: the resolver's
    methods and the input/output tensor descriptions.  Any .tflite with the
    same op set and the same inputs and outputs runs on it (its arena need is
    checked separately); the int8-only kernel choices are left out, a model
    they do not fit fails its self-test on the device."""
    import hashlib
    import json
    keep = {"runtime": "tflm", "name": name,
            "ops": [e.method for e in resolver_entries(model)],
            "inputs": tensor_info_rows(model.input_tensors()),
            "outputs": tensor_info_rows(model.output_tensors())}
    for rows in (keep["inputs"], keep["outputs"]):
        for row in rows:
            row.pop("name", None)
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def resolver_entries(model: Model, defined: frozenset[str] | set[str] = frozenset()) -> list[ResolverEntry]:
    """Exactly the model's distinct ops, in first-use order."""
    entries = []
    for name in model.op_names():
        method = tflm_method(name)
        if method is None:
            op = next(o for o in model.operators if o.opcode == name)
            raise TinygenError(f"TFLM has no kernel for {op.describe()}")
        entries.append(ResolverEntry(name=name, method=method,
                                     registration=int8_registration(model, name, defined)))
    return entries


def model_array(data: bytes, per_line: int = 16) -> str:
    rows = []
    for i in range(0, len(data), per_line):
        rows.append(", ".join(f"0x{b:02x}" for b in data[i:i + per_line]))
    return ",\n  ".join(rows)


def source_names(name: str) -> tuple[str, str]:
    """(glue file, model data stem): the default name keeps the names projects
    have always had; any other gets its own, so models share one folder."""
    if name == DEFAULT_NAME:
        return "tg_model_tflm.cc", "model_data"
    return f"{name}_tflm.cc", f"{name}_data"


def data_symbol(name: str) -> str:
    """The C array holding the .tflite (what the ELF's weights are)."""
    return f"{name}_tflite"


def generate_model_data(model: Model, model_name: str, out_dir: Path,
                        name: str = DEFAULT_NAME) -> list[Path]:
    stem = source_names(name)[1]
    ctx = dict(version=__version__, model_name=model_name, model_bytes=len(model.tflite),
               model_array=model_array(model.tflite), signature=model.signature,
               name=name, NAME=name.upper(), data_header=f"{stem}.h")
    return [render_to(f"{TEMPLATE_DIR}/model_data.h.j2", out_dir / f"{stem}.h", ctx),
            render_to(f"{TEMPLATE_DIR}/model_data.c.j2", out_dir / f"{stem}.c", ctx)]


def generate_tflm(model: Model, model_name: str, board_id: str, arena_measured: int,
                  arena_bytes: int, arena_in_psram: bool, out_dir: Path,
                  name: str = DEFAULT_NAME, protocol_binding: bool = True,
                  defined_kernels: frozenset[str] | set[str] = frozenset(),
                  updatable: bool = False) -> TflmResult:
    """The model data, `<name>.h` and the glue implementing it; see
    codegen/aot.py for name and protocol_binding.  `defined_kernels`: the
    Register_X names the TFLM tree's kernel files define (int8-only kernels
    are registered where the tree has them)."""
    check_name(name)
    resolver = resolver_entries(model, defined_kernels)
    glue, stem = source_names(name)
    # updatable: the .tflite lives in the model slots (firmware_templates/update/)
    files = [] if updatable else generate_model_data(model, model_name, out_dir, name)
    files.append(render_header(model, name, "tflm", arena_bytes, out_dir))
    ctx = dict(version=__version__, model_name=model_name, board=board_id,
               name=name, header=header_name(name), data_header=f"{stem}.h",
               protocol_binding=protocol_binding,
               ops=[{"name": e.name, "method": e.method, "registration": e.registration}
                    for e in resolver],
               arena_bytes=arena_bytes, arena_measured=arena_measured,
               arena_margin=arena_bytes - arena_measured, arena_in_psram=arena_in_psram,
               inputs=tensor_info_rows(model.input_tensors()),
               outputs=tensor_info_rows(model.output_tensors()),
               signature_bytes=signature_c_bytes(model.signature), updatable=updatable)
    files.append(render_to(f"{TEMPLATE_DIR}/tg_model_tflm.cc.j2", out_dir / glue, ctx))
    return TflmResult(files=files, resolver=resolver, arena_bytes=arena_bytes,
                      fingerprint=tflm_fingerprint(model, name) if updatable else "")
