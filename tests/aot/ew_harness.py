"""Test support for the element-wise kernel family of the aot runtime.

Builds one-operator .tflite flatbuffers directly (TFLite's own generated
schema module, loaded from the installed tensorflow package without importing
tensorflow), runs them on the TFLM interpreter (the bit-exact reference), and
runs the same operator through tinygen's lowering + C kernels compiled for the
host, so a test can compare the two outputs.

The C side is a tiny driver generated per example: it prints the KernelCall's
constants and params struct exactly as lowered (designated initializers),
reads the inputs from files, calls the kernel and writes the outputs.  The
kernel sources are compiled once per session (with UBSan) and linked in.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygen.codegen.aot_lowering import KernelCall, LoweringContext, c_array_literal, lower
from tinygen.ir import parse_tflite

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO / "firmware_templates" / "aot" / "kernels"
CFLAGS = ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
          "-fno-sanitize-recover=all"]

_CTYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float",
           "uint8": "uint8_t"}
_NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "float32": np.float32,
       "uint8": np.uint8}


# ---------------------------------------------------------------------------
# .tflite building

@functools.lru_cache(maxsize=1)
def schema():
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tensorflow is not installed (its TFLite schema module is needed)")
    path = Path(spec.submodule_search_locations[0]) / "lite" / "python" / "schema_py_generated.py"
    mod_spec = importlib.util.spec_from_file_location("_tg_tflite_schema", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


@dataclass
class TensorSpec:
    shape: tuple
    dtype: str = "int8"
    scale: float | None = None
    zero_point: int | None = None
    data: np.ndarray | None = None     # constant contents


_TYPE_CODES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int16": 7, "int8": 9}


def build_model(opcode: str, tensors: list[TensorSpec], inputs: list[int], outputs: list[int],
                options=None, options_type: str | None = None, version: int = 1) -> bytes:
    """A one-operator model; graph inputs are the operator's non-constant inputs."""
    s = schema()
    import flatbuffers

    model = s.ModelT()
    model.version = 3
    model.description = "tinygen element-wise test"
    model.buffers = [s.BufferT()]
    sg = s.SubGraphT()
    sg.tensors = []
    for i, spec in enumerate(tensors):
        t = s.TensorT()
        t.shape = list(int(d) for d in spec.shape)
        t.type = _TYPE_CODES[spec.dtype]
        t.name = f"t{i}"
        buf = s.BufferT()
        if spec.data is not None:
            arr = np.ascontiguousarray(np.asarray(spec.data, dtype=_NP.get(spec.dtype, np.int64)))
            buf.data = list(arr.reshape(-1).view(np.uint8))
        t.buffer = len(model.buffers)
        model.buffers.append(buf)
        if spec.scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(spec.scale)]
            q.zeroPoint = [int(spec.zero_point or 0)]
            t.quantization = q
        sg.tensors.append(t)
    code = getattr(s.BuiltinOperator, opcode)
    oc = s.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    model.operatorCodes = [oc]
    op = s.OperatorT()
    op.opcodeIndex = 0
    op.inputs = list(inputs)
    op.outputs = list(outputs)
    if options is not None:
        op.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
        op.builtinOptions = options
    sg.operators = [op]
    sg.inputs = [i for i in inputs if i >= 0 and tensors[i].data is None]
    sg.outputs = list(outputs)
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def options(name: str, **fields):
    """An options object, e.g. options("AddOptions", fusedActivationFunction=1)."""
    obj = getattr(schema(), name + "T")()
    for k, v in fields.items():
        setattr(obj, k, v)
    return obj


ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


# ---------------------------------------------------------------------------
# the reference: TFLM

def run_tflm(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model, arena_size=256 * 1024)
    for i, arr in enumerate(inputs):
        interp.set_input(arr, i)
    interp.invoke()
    outs = []
    i = 0
    m = parse_tflite(model)
    for _ in m.outputs:
        outs.append(np.array(interp.get_output(i)))
        i += 1
    return outs


# ---------------------------------------------------------------------------
# ours: lowering + C kernels on the host

@functools.lru_cache(maxsize=1)
def _work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tg_ew_"))


@functools.lru_cache(maxsize=None)
def _kernel_objects(sources: tuple[str, ...]) -> tuple[str, ...]:
    objs = []
    for src in sources:
        path = KERNEL_DIR / src
        digest = hashlib.sha1(path.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:12]
        obj = _work_dir() / f"{path.stem}_{digest}.o"
        if not obj.exists():
            subprocess.run(["gcc", *CFLAGS, "-I", str(KERNEL_DIR), "-c", str(path), "-o", str(obj)],
                           check=True, capture_output=True, text=True)
        objs.append(str(obj))
    return tuple(objs)


def render_driver(model, call: KernelCall) -> str:
    """A C program that runs one KernelCall on inputs read from files."""
    lines = ['#include <stdio.h>', '#include <stdlib.h>', '#include "tg_elementwise.h"', ""]
    for c in call.constants:
        lines.append(f"static const {c.ctype} {c.name}[{max(1, len(c.values))}] TG_ALIGNED({c.align}) = "
                     f"{{\n  {c_array_literal(c.values)}\n}};")
    lines.append(f"static const {call.params_type} params = {{")
    for k, v in call.params.items():
        lines.append(f"  .{k} = {v},")
    lines.append("};")
    args = []
    for n, ti in enumerate(call.inputs):
        t = model.tensors[ti]
        lines.append(f"static {_CTYPES[t.dtype]} in{n}[{max(1, t.num_elements)}];")
        args.append(f"in{n}")
    for n, ti in enumerate(call.outputs):
        t = model.tensors[ti]
        lines.append(f"static {_CTYPES[t.dtype]} out{n}[{max(1, t.num_elements)}];")
        args.append(f"out{n}")
    lines.append("static void rd(const char *path, void *dst, size_t n) {")
    lines.append('  FILE *f = fopen(path, "rb");')
    lines.append("  if (!f || fread(dst, 1, n, f) != n) { exit(2); }")
    lines.append("  fclose(f);")
    lines.append("}")
    lines.append("int main(int argc, char **argv) {")
    lines.append("  (void)argc;")
    for n, ti in enumerate(call.inputs):
        lines.append(f"  rd(argv[{1 + n}], in{n}, sizeof in{n});")
    lines.append(f"  {call.kernel}(&params, {', '.join(args)});")
    for n, ti in enumerate(call.outputs):
        lines.append(f"  if (fwrite(out{n}, 1, sizeof out{n}, stdout) != sizeof out{n}) return 3;")
    lines.append("  return 0;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_aot(model_bytes: bytes, inputs: list[np.ndarray], in_place: bool = False) -> list[np.ndarray]:
    """Lower the model's single operator and run our C kernel on the host.

    inputs are given for the graph inputs (as for run_tflm); the lowering
    decides which tensors the kernel takes as activation arguments.
    With in_place, an in-place KernelCall runs with the output in the first
    input's buffer (checks that the kernel is really safe in place).
    """
    model = parse_tflite(model_bytes)
    assert len(model.operators) == 1
    op = model.operators[0]
    call = lower(op, LoweringContext(model))
    by_tensor = dict(zip(model.inputs, inputs))
    src = render_driver(model, call)
    if in_place and call.in_place:
        o_t = model.tensors[call.outputs[0]]
        src = src.replace(f"{call.kernel}(&params, in0,", f"{call.kernel}(&params, in0,", 1)
        # the output aliases in0: swap the output argument and read back in0
        src = src.replace(f", out0);", ", (void *)in0);").replace(
            "fwrite(out0, 1, sizeof out0", "fwrite(in0, 1, sizeof out0")
        assert model.tensors[call.inputs[0]].nbytes == o_t.nbytes
    wd = _work_dir()
    digest = hashlib.sha1(src.encode()).hexdigest()[:16]
    c_path = wd / f"drv_{digest}.c"
    exe = wd / f"drv_{digest}"
    if not exe.exists():
        c_path.write_text(src)
        objs = _kernel_objects(tuple(sorted(set(call.sources))))
        res = subprocess.run(["gcc", *CFLAGS, "-I", str(KERNEL_DIR), str(c_path), *objs,
                              "-o", str(exe)], capture_output=True, text=True)
        if res.returncode != 0:
            raise AssertionError(f"driver does not compile:\n{res.stderr}\n{src}")
    files = []
    for n, ti in enumerate(call.inputs):
        arr = by_tensor[ti]
        t = model.tensors[ti]
        p = wd / f"in_{digest}_{n}.bin"
        p.write_bytes(np.ascontiguousarray(arr, dtype=_NP[t.dtype]).tobytes())
        files.append(str(p))
    res = subprocess.run([str(exe), *files], capture_output=True)
    for f in files:
        os.unlink(f)
    if res.returncode != 0:
        raise AssertionError(f"kernel run failed ({res.returncode}): {res.stderr.decode()}")
    outs = []
    off = 0
    for ti in call.outputs:
        t = model.tensors[ti]
        n = t.nbytes
        outs.append(np.frombuffer(res.stdout[off:off + n], dtype=_NP[t.dtype]).reshape(t.shape))
        off += n
    return outs


def lower_only(model_bytes: bytes) -> KernelCall:
    model = parse_tflite(model_bytes)
    return lower(model.operators[0], LoweringContext(model))


def assert_same(model_bytes: bytes, inputs: list[np.ndarray], in_place: bool = False) -> None:
    """TFLM and our kernel agree exactly (0 LSB; bitwise for floats)."""
    ref = run_tflm(model_bytes, inputs)
    ours = run_aot(model_bytes, inputs, in_place=in_place)
    assert len(ref) == len(ours)
    for r, o in zip(ref, ours):
        r = np.asarray(r).reshape(o.shape)
        if r.dtype.kind == "f":
            same = np.array_equal(r.view(np.uint32), np.asarray(o, r.dtype).view(np.uint32))
        else:
            same = np.array_equal(r.astype(np.int64), o.astype(np.int64))
        if not same:
            diff = np.abs(r.astype(np.float64) - o.astype(np.float64))
            idx = np.argwhere(diff > 0)[:8].tolist()
            raise AssertionError(
                f"mismatch: max |delta| {diff.max()} at {len(np.argwhere(diff > 0))} elements, "
                f"first at {idx}\nref={r.reshape(-1)[:32]}\nours={o.reshape(-1)[:32]}")
