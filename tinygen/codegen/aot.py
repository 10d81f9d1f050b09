"""The `aot` backend: tinygen's own ahead-of-time runtime.

For one model it writes plain C99 that calls tinygen's kernels in order with
every shape, quantization constant and buffer offset resolved here, the
constants baked in as const arrays (flash) and all activations in one static
arena planned from tensor lifetimes.  No interpreter, no malloc.

    generate_aot(model, out_dir, board="host", runtime_name="aot",
                 copy_api_header=False, alignment=16, memory_first=True,
                 core=None) -> AotResult
    plan_aot(model, memory_first=True, core=None) -> (calls, plan)   # same decisions, no files

The target core picks the kernel family: on cores with the DSP extension
(Cortex-M4/M7/M33/M55: `dsp_core()`) CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED use the "dsp" kernels (tg_dsp.h: SIMD matrix
multiplication, weights re-laid out here), everywhere else (ESP32, the host,
Cortex-M0/M3) the portable C kernels.  `core` defaults to the core of
`board` (a board id from boards/, or a QEMU machine name); the dsp kernels
carry portable C equivalents of every intrinsic, so they also run -- and are
tested bit-exactly -- on the host when core="cortex-m4f" is asked for.

out_dir receives a flat set of files: <name>.c, <name>.h (name="model" by
default), tg_kernels.h and the kernel sources the model uses (only those).
<name>.c implements the prefixed API of <name>.h (docs/api.md) and, with
protocol_binding=True (the default), also tg_model_info and the tg_model_*
functions of firmware_templates/common/tg_model_api.h that the serial
protocol calls; several models in one image need protocol_binding=False on
all but one.  The build stage copies tg_model_api.h next to the sources (pass
copy_api_header=True to have it copied here too).

Compiling model.c with -DTG_PROFILE_OPS makes it call
`void tg_profile_op(int op_index, int phase)` (defined by the application)
before (phase 0) and after (phase 1) every operator that runs code: per-layer
timing without touching the generated file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from ..ir import Model
from ..paths import TEMPLATES_DIR
from ..plan.aot import (
    ARENA_ALIGN,
    SCRATCH_GROWTH,
    board_core,
    plan_aot,
)
from ..plan.c_literals import C_TYPES, MAX_DIMS, c_float, c_type
from ..plan.lowering import ConstArray, KernelCall, LoweringError, c_array_literal
from ..plan.memory import MemoryPlan, check_plan
from ..plan.staging import stage_bytes, stage_layout
from .api import DEFAULT_NAME, check_name, header_name, render_header

KERNELS_DIR = TEMPLATES_DIR / "aot" / "kernels"
AOT_TEMPLATES_DIR = TEMPLATES_DIR / "aot"
API_HEADER = TEMPLATES_DIR / "common" / "tg_model_api.h"



@dataclass
class AotResult:
    out_dir: Path
    files: list[Path]                    # every file written into out_dir
    arena_bytes: int                     # static activation arena (tg_arena)
    weights_bytes: int                   # constant arrays that are model weights
    tables_bytes: int                    # other constant arrays (multipliers, shifts, tables)
    calls: list[KernelCall]              # one per operator, in execution order
    plan: MemoryPlan
    kernel_files: list[str] = field(default_factory=list)   # kernel sources copied
    skipped_ops: list[int] = field(default_factory=list)    # views resolved by the planner
    weight_symbols: list[str] = field(default_factory=list)  # C names of the weight arrays
    table_symbols: list[str] = field(default_factory=list)   # C names of the other const arrays
    payload: bytes | None = None         # updatable: the constants as one slot payload
    fingerprint: str = ""                # updatable: SHA-256 of everything compiled into the code

    @property
    def constant_bytes(self) -> int:
        return self.weights_bytes + self.tables_bytes


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(AOT_TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)






_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _includes(path: Path) -> list[str]:
    return _INCLUDE.findall(path.read_text())


def _kernel_files(calls: list[KernelCall]) -> tuple[list[str], list[str]]:
    """(files to copy, headers model.c includes) for the kernels used."""
    listed: list[str] = []
    for call in calls:
        for src in call.sources:
            if src not in listed:
                listed.append(src)
    headers: list[str] = []
    for src in listed:
        path = KERNELS_DIR / src
        if not path.is_file():
            raise LoweringError(f"kernel source {src} is missing from {KERNELS_DIR}")
        if src.endswith(".h"):
            cands = [src]
        else:
            cands = [h for h in _includes(path) if (KERNELS_DIR / h).is_file()]
            sibling = src[:-2] + ".h"
            if (KERNELS_DIR / sibling).is_file() and sibling not in cands:
                cands.append(sibling)
        for h in cands:
            if h != "tg_kernels.h" and h not in headers:
                headers.append(h)
    # transitive closure of local includes
    files = ["tg_kernels.h"]
    todo = list(listed) + headers
    while todo:
        f = todo.pop(0)
        if f in files:
            continue
        files.append(f)
        for inc in _includes(KERNELS_DIR / f):
            if (KERNELS_DIR / inc).is_file() and inc not in files:
                todo.append(inc)
    return files, headers




















def board_flash_budget(board: str) -> int | None:
    """The application flash of `board` (plan.aot.wide_weights_fit); None for
    the host and unknown names."""
    from ..boards import all_boards
    for b in all_boards():
        if board in (b.id, b.pio_board):
            return int(b.app_flash_bytes)
    return None


def _board_weights_in_flash(board: str) -> bool:
    from ..boards import all_boards
    return any(b.weights_in_flash and board in (b.id, b.pio_board) for b in all_boards())


def generate_aot(model: Model, out_dir: Path, board: str = "host", runtime_name: str = "aot",
                 copy_api_header: bool = False, alignment: int = ARENA_ALIGN,
                 memory_first: bool = True, core: str | None = None,
                 scratch_growth: float = SCRATCH_GROWTH, overlap: bool = True,
                 fast_requant: bool = True, name: str = DEFAULT_NAME,
                 protocol_binding: bool = True, updatable: bool = False,
                 weights_in_flash: bool | None = None) -> AotResult:
    """Write the aot sources for `model` into out_dir; see the module docstring.

    core: the target core ("cortex-m4f", "xtensa-lx6", ...); default: the
    core of `board` (None for "host": portable kernels).
    overlap / fast_requant: switch off the planner's output-over-input overlaps
    or the dsp kernels' fast requantization (for measurements; both are exact).

    memory_first: never let kernels' optional scratch buffers grow the arena
    by more than scratch_growth (a fraction of the scratch-free plan's arena;
    0: not at all) -- those kernels then run their scratch-free variants;
    False keeps every faster kernel whatever it costs in RAM.

    updatable: the constants are not compiled in; they are laid out in one
    payload (AotResult.payload) that the firmware reads from a model slot
    (firmware_templates/update/), the kernel parameters that point at them
    are patched by tg_model_bind(), and AotResult.fingerprint hashes
    everything that stays compiled in, so an image fits this firmware
    exactly when its model would generate the same code.

    weights_in_flash: weight arrays in flash, copied per operator into a RAM
    staging buffer with aligned 32-bit loads (tinygen/plan/staging.py);
    default: the board's `weights_in_flash` (the ESP8266's emulated twin),
    never with updatable (the constants are then the slot's)."""
    out_dir = Path(out_dir)
    check_name(name)
    tensors = model.tensors
    if core is None:
        core = board_core(board)
    calls, plan = plan_aot(model, memory_first, alignment, core=core,
                           scratch_growth=scratch_growth, overlap=overlap,
                           fast_requant=fast_requant, flash_budget=board_flash_budget(board))
    check_plan(plan)
    if weights_in_flash is None:
        weights_in_flash = _board_weights_in_flash(board)
    weights_in_flash = weights_in_flash and not updatable
    layouts = {id(call): stage_layout(call) for call in calls} if weights_in_flash else {}
    in_flash = {c.name for lay in layouts.values() for c, _off in lay}

    # ---- constants -------------------------------------------------------
    constants: list[dict] = []
    names: set[str] = set()
    weight_symbols: list[str] = []
    table_symbols: list[str] = []
    weights_bytes = 0
    tables_bytes = 0

    payload = bytearray()
    const_offsets: dict[str, int] = {}
    layout: list[tuple[str, int, int]] = []

    def add_const(c: ConstArray) -> None:
        nonlocal weights_bytes, tables_bytes
        if c.name in names:
            raise LoweringError(f"two constant arrays are named {c.name}")
        names.add(c.name)
        values = np.asarray(c.values).reshape(-1)
        nbytes = values.size * np.dtype(values.dtype).itemsize if values.size else 0
        if updatable:
            align = max(int(c.align), ARENA_ALIGN)
            payload.extend(b"\0" * (-len(payload) % align))
            const_offsets[c.name] = len(payload)
            blob = values.astype(_PAYLOAD_DTYPES[c.ctype]).tobytes() if values.size else b""
            layout.append((c.ctype, values.size, len(payload)))
            payload.extend(blob)
        if c.is_weight:
            weights_bytes += nbytes
            weight_symbols.append(c.name)
        else:
            tables_bytes += nbytes
            table_symbols.append(c.name)
        flash = c.name in in_flash
        if flash:
            # whole words: tg_stage reads the array as 32-bit words
            per_word = max(1, 4 // int(values.dtype.itemsize))
            values = np.concatenate([values, np.zeros(-values.size % per_word, values.dtype)])
        constants.append({
            "name": c.name, "ctype": c.ctype, "align": max(int(c.align), ARENA_ALIGN),
            "count": max(values.size, 1), "flash": flash,
            "literal": c_array_literal(values) if values.size else "0",
        })

    const_tensor_names: dict[int, str] = {}

    def const_tensor(t: int) -> str:
        if t not in const_tensor_names:
            tt = tensors[t]
            name = f"tg_const_t{t}"
            add_const(ConstArray(name, c_type(tt.dtype, f"constant '{tt.name}'"),
                                 np.asarray(tt.data).reshape(-1), align=ARENA_ALIGN))
            const_tensor_names[t] = name
        return const_tensor_names[t]

    # ---- calls -------------------------------------------------------------
    params_blocks: list[dict] = []
    bindings: list[dict] = []
    steps: list[dict] = []
    skipped: list[int] = []
    states: list[dict] = []
    for op, call in zip(model.operators, calls):
        for c in call.constants:
            add_const(c)
        detail = call.comment or ""
        if detail.startswith(op.opcode):
            detail = detail[len(op.opcode):].strip()
        comment = f"#{op.index} {op.opcode}" + (f" {detail}" if detail else "")
        comment = comment.replace("*/", "* /")
        if call.absorbed_by is not None:
            skipped.append(op.index)
            steps.append({"comment": comment + f" (done by #{call.absorbed_by}: no code)",
                          "code": None, "index": op.index})
            continue
        out0 = call.outputs[0] if call.outputs else None
        if call.view and out0 is not None and out0 in plan.views:
            skipped.append(op.index)
            steps.append({"comment": comment + " (shares its input's buffer: no code)",
                          "code": None, "index": op.index})
            continue
        pname = f"op{op.index}_params"
        fields = list(call.params.items())
        if updatable:
            fields = _bind_fields(pname, fields, const_offsets, bindings)
        stage = []
        for c, off in layouts.get(id(call), []):
            # the kernel reads the RAM copy: the parameters point there
            ram = f"(const {c.ctype} *)(void *)(tg_wstage + {off})"
            fields = [(k, re.sub(rf"\b{re.escape(c.name)}\b", ram, v)) for k, v in fields]
            stage.append({"offset": off, "src": c.name,
                          "bytes": next(x["count"] for x in constants if x["name"] == c.name)
                          * int(np.dtype(c.values.dtype).itemsize)})
        params_blocks.append({"type": call.params_type, "name": pname, "fields": fields})
        args = [f"&{pname}"]
        for t in call.inputs:
            tt = tensors[t]
            if tt.is_constant:
                cname = const_tensor(t)
                args.append(f"TG_CONST({c_type(tt.dtype, tt.name)}, {const_offsets[cname]}u)"
                            if updatable else cname)
            else:
                args.append(f"TG_ACT({c_type(tt.dtype, tt.name)}, {plan.offsets[t]})")
        for t in call.outputs:
            tt = tensors[t]
            if tt.is_constant:
                raise LoweringError(f"{op.describe()} writes the constant tensor '{tt.name}'")
            args.append(f"TG_ACT({c_type(tt.dtype, tt.name)}, {plan.offsets[t]})")
        if call.state_bytes > 0:
            sname = f"tg_state_op{op.index}"
            states.append({"name": sname, "count": (call.state_bytes + 7) // 8})
            args.append(f"(void *){sname}")
        if call.scratch_bytes > 0:
            args.append(f"(void *)(tg_arena + {plan.scratch_offsets[op.index]})")
        steps.append({"comment": comment, "code": f"{call.kernel}({', '.join(args)});",
                      "index": op.index, "stage": stage})

    # ---- model API tables --------------------------------------------------
    def info_row(i: int) -> dict:
        t = tensors[i]
        dims = [int(d) for d in t.shape] + [0] * (MAX_DIMS - len(t.shape))
        return {"dtype": C_TYPES[t.dtype][1], "rank": len(t.shape),
                "dims": ", ".join(str(d) for d in dims), "bytes": t.nbytes,
                "scale": c_float(t.scale) if t.quant else "0.0f",
                "zero_point": t.zero_point if t.quant else 0, "name": t.name}

    def pointer(i: int) -> str:
        t = tensors[i]
        if t.is_constant:
            cname = const_tensor(i)
            if updatable:
                return f"TG_CONST(uint8_t, {const_offsets[cname]}u)"
            return f"(const uint8_t *){cname}"
        return f"(tg_arena + {plan.offsets[i]})"

    outputs_ptr = [pointer(i) for i in model.outputs]
    inputs_ptr = [f"(uint8_t *)(tg_arena + {plan.offsets[i]})" for i in model.inputs]

    variables = []
    for t in plan.offsets:
        tt = tensors[t]
        if tt.is_variable:
            # TFLM's ResetVariableTensors: memset to the zero point for INT8
            # tensors, to 0 for every other type (an int16 cell state too).
            fill = tt.zero_point if tt.dtype == "int8" and tt.quant else 0
            variables.append({"offset": plan.offsets[t], "bytes": tt.nbytes,
                              "fill": fill & 0xFF})

    skipped_set = set(skipped)
    used_calls = [c for op, c in zip(model.operators, calls) if op.index not in skipped_set]
    files, headers = _kernel_files(used_calls)
    model_turn = _model_turn(model)
    sig = model.signature
    context = {
        "description": model.description.replace("*/", "* /")[:200],
        "signature_hex": sig,
        "signature_bytes": ", ".join(f"0x{sig[i:i + 2]}" for i in range(0, 64, 2)),
        "runtime": runtime_name, "board": board,
        "arena_bytes": plan.arena_bytes, "arena_decl_bytes": max(plan.arena_bytes, alignment),
        "alignment": alignment,
        "headers": headers, "constants": constants, "params": params_blocks, "steps": steps,
        "inputs": [info_row(i) for i in model.inputs],
        "outputs": [info_row(i) for i in model.outputs],
        "inputs_ptr": inputs_ptr, "outputs_ptr": outputs_ptr, "variables": variables,
        "states": states,
        "weights_bytes": weights_bytes, "tables_bytes": tables_bytes,
        "plan_summary": plan.summary(), "num_ops": len(model.operators),
        "name": name, "header": header_name(name), "protocol_binding": protocol_binding,
        "version": __version__, "updatable": updatable, "bindings": bindings,
        "payload_bytes": len(payload),
        "stage_bytes": stage_bytes(calls) if weights_in_flash else 0,
        "model_turn": model_turn,
    }
    fingerprint = _fingerprint(context, layout) if updatable else ""

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    env = _env()
    path = out_dir / f"{name}.c"
    path.write_text(env.get_template("model.c.j2").render(**context))
    written.append(path)
    written.append(render_header(model, name, runtime_name, plan.arena_bytes, out_dir,
                                 [("WEIGHTS_BYTES", f"{weights_bytes}u")]))
    for f in files:
        dst = out_dir / f
        shutil.copyfile(KERNELS_DIR / f, dst)
        written.append(dst)
    if copy_api_header:
        dst = out_dir / API_HEADER.name
        shutil.copyfile(API_HEADER, dst)
        written.append(dst)
    return AotResult(out_dir=out_dir, files=written, arena_bytes=plan.arena_bytes,
                     weights_bytes=weights_bytes, tables_bytes=tables_bytes, calls=calls,
                     plan=plan, kernel_files=files, skipped_ops=skipped,
                     weight_symbols=weight_symbols, table_symbols=table_symbols,
                     payload=bytes(payload) if updatable else None, fingerprint=fingerprint)


_PAYLOAD_DTYPES = {"int8_t": "<i1", "uint8_t": "<u1", "int16_t": "<i2", "uint16_t": "<u2",
                   "int32_t": "<i4", "uint32_t": "<u4", "float": "<f4"}


def _bind_fields(pname: str, fields: list, offsets: dict[str, int],
                 bindings: list[dict]) -> list:
    """Kernel parameter fields that name a constant array become NULL in the
    initializer and a pointer set by tg_model_bind(); a constant used any
    other way could not move into the slot."""
    out = []
    for key, value in fields:
        text = str(value)
        if text in offsets:
            bindings.append({"params": pname, "field": key, "offset": offsets[text]})
            out.append((key, "NULL"))
            continue
        for cname in offsets:
            if re.search(rf"\b{re.escape(cname)}\b", text):
                raise LoweringError(f"{pname}.{key} = {text}: a constant used in an expression "
                                    "cannot move into an updatable model slot")
        out.append((key, value))
    return out


def _model_turn(model: Model) -> dict | None:
    """A pipeline joined with --model-every N: the model's operators (an index
    range its metadata records) run at every N-th invoke only."""
    from ..convert.frontend import METADATA_NAME
    from ..convert.pipeline import pipeline_parts
    # unpacking a whole model is slow: only files that carry the name can be pipelines
    tagged = bool(model.tflite) and METADATA_NAME.encode() in model.tflite
    meta = pipeline_parts(model.tflite) if tagged else None
    every = int((meta or {}).get("model_every", 1) or 1)
    first, end = (meta or {}).get("model_ops") or [0, 0]
    if every <= 1 or end <= first:
        return None
    return {"every": every, "first": int(first), "last": int(end) - 1}


def _fingerprint(context: dict, layout: list) -> str:
    """SHA-256 of what an updatable build compiles in: kernel calls and their
    parameters, tensor descriptions, arena, constant layout.  Not the
    constants' values, not the model's own signature."""
    keep = copy.deepcopy({k: context[k] for k in (
        "runtime", "arena_bytes", "alignment", "headers", "params", "steps", "inputs", "outputs",
        "inputs_ptr", "outputs_ptr", "variables", "bindings", "name")})
    for rows in (keep["inputs"], keep["outputs"]):
        for row in rows:
            row.pop("name", None)      # tensor names are not compiled into the code
    for step in keep["steps"]:
        step.pop("comment", None)
    keep["layout"] = layout
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
