"""Build stage: a complete PlatformIO project for one board and runtime.

The project is rendered into a staging directory beside the destination and
moved into place only when everything succeeded, so a failed build never
leaves a half-written output directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import __version__
from ..analyze import fit as fitmod
from ..analyze.analysis import Analysis, analyze, require_fit
from ..boards import Board, get_board
from ..codegen.api import DEFAULT_NAME, check_names
from ..codegen.render import render_to
from ..convert import ConversionResult, convert
from ..errors import TinygenError
from ..ir import Model
from ..load import load_model
from ..paths import TEMPLATES_DIR
from ..plan.aot import wide_weights_fit
from ..prune.channels import ChannelRemoval, remove_channels
from ..prune.sparsity import lost_zero_layers
from . import tflm_tree as tflm_tree_mod

MANIFEST = "tinygen.json"
COMMON_SOURCES = ["tg_hal.h", "tg_model_api.h", "tg_protocol.h", "tg_protocol.c"]
TFLM_TARGET_SOURCES = ["tg_tflm_target.h", "tg_tflm_target.cc"]
TFLM_LIB_DIR = "lib/tflite-micro"
MIN_ARENA_BYTES = 256
# What `build` writes: an application calling the model's API (the default), or
# the serial-protocol firmware `tinygen verify` talks to.
FIRMWARE_APP, FIRMWARE_PROTOCOL = "app", "protocol"
FIRMWARES = (FIRMWARE_APP, FIRMWARE_PROTOCOL)
PIO_REGISTRY_HOST = "api.registry.platformio.org"


@dataclass
class BuildResult:
    out_dir: Path
    board: Board
    runtime: str
    model_name: str
    signature: str
    analysis: Analysis
    conversion: ConversionResult
    arena_bytes: int
    arena_in_psram: bool
    model_flash: int                       # sizes.py: weights + biases + metadata
    code_flash: int | None = None          # from the linked ELF, when built
    code_estimate: int = 0
    elf: Path | None = None
    built: bool = False
    pio_message: str = ""
    resolver: list[str] = field(default_factory=list)
    weight_symbols: list[str] = field(default_factory=list)
    profile: bool = False                  # firmware times every operator (READ_PROFILE)
    memory_plan: dict | None = None        # aot arena plan (see plan_manifest)
    tflm_tree: str | None = None           # TFLM source tree compiled in (tflm runtime)
    tflm_flavour: str | None = None        # its kernels: cmsis-nn or reference
    arena_measured: int | None = None      # tflm: TFLM's recording allocator on the host
    warnings: list[str] = field(default_factory=list)   # said to the user at the end
    c_name: str = DEFAULT_NAME             # prefix of the model's C API (--name)
    model_path: str = ""                   # the source model, resolved (-o reuse check)
    firmware: str = FIRMWARE_APP           # app or protocol
    more_models: list[dict] = field(default_factory=list)  # --add: name, signature, arena
    update: dict | None = None             # --updatable: slots, key, fingerprint (updatable.py)
    device_ir: Model | None = None         # what the firmware runs: conversion.ir without
    #                                        its removable channels (prune/channels.py)
    channels: ChannelRemoval = field(default_factory=ChannelRemoval)

    def manifest(self) -> dict:
        return {
            "tinygen_version": __version__, "board": self.board.id, "runtime": self.runtime,
            "model": self.model_name, "model_signature": self.signature,
            "arena_bytes": self.arena_bytes, "arena_in_psram": self.arena_in_psram,
            "model_flash": self.model_flash, "code_flash": self.code_flash,
            "code_estimate": self.code_estimate, "resolver": self.resolver,
            "weight_symbols": self.weight_symbols,
            "inputs": self.analysis.inputs, "outputs": self.analysis.outputs,
            "profile": self.profile, "memory_plan": self.memory_plan,
            "tflm_tree": self.tflm_tree, "tflm_flavour": self.tflm_flavour,
            "arena_measured": self.arena_measured, "model_path": self.model_path,
            "c_name": self.c_name, "firmware": self.firmware, "more_models": self.more_models,
            "update": self.update,
            "channels_removed": self.channels.removed,
        }


def plan_manifest(plan, ir, calls) -> dict:
    """The aot arena plan as JSON: one record per arena buffer with its offset,
    size and lifetime in operator indices (-1: before the run, n_ops: after),
    and per operator the index of the fused call that does its work (None: its
    own call), which is why a profile shows nothing against such an op."""
    names = {t.index: t.name for t in ir.tensors}
    return {
        "arena_bytes": plan.arena_bytes, "alignment": plan.alignment,
        "strategy": plan.strategy, "lower_bound_bytes": plan.lower_bound_bytes,
        "greedy_bytes": plan.greedy_bytes, "naive_bytes": plan.naive_bytes,
        "ops": [op.opcode for op in ir.operators],
        "done_by": [c.absorbed_by for c in calls],
        "buffers": [{"key": b.key, "offset": b.offset, "size": b.size, "first": b.first,
                     "last": b.last, "scratch_op": b.scratch_op,
                     "tensors": [names.get(t, str(t)) for t in b.tensors]}
                    for b in plan.buffers],
    }


def default_out_dir(model_path: Path, board: Board, firmware: str = FIRMWARE_APP) -> Path:
    """tinygen-out/MODEL-BOARD for an application, MODEL-BOARD-verify for the
    protocol firmware, so that `verify` never replaces the app a user edits."""
    stem = model_path.stem if model_path.suffix else model_path.name
    if stem in ("model", "saved_model") and model_path.resolve().parent.name:
        # examples/kws_cnn/model.h5 -> kws_cnn-model: generic names would collide
        stem = f"{model_path.resolve().parent.name}-{stem}"
    suffix = "-verify" if firmware == FIRMWARE_PROTOCOL else ""
    return Path("tinygen-out") / f"{stem}-{board.id}{suffix}"


def choose_runtime(board: Board, runtime: str | None) -> str:
    runtime = runtime or board.default_runtime
    if runtime not in board.runtimes:
        raise TinygenError(
            f"board {board.id} does not offer the {runtime} runtime "
            f"(it has: {', '.join(board.runtimes)})")
    return runtime


def build(model_path: str | Path, board_id: str, runtime: str | None = None,
          calib: str | Path | None = None, out_dir: str | Path | None = None,
          tflm_source: str | Path | None = None, compile_firmware: bool = True,
          progress: Callable[[str], None] | None = None,
          detection: str | Path | None = None, profile: bool = False,
          arena_bytes: int | None = None, force: bool = False,
          name: str = DEFAULT_NAME, firmware: str = FIRMWARE_APP,
          more_models: Sequence[tuple[str, str | Path, str | Path | None]] = (),
          update=None, accept_dense: bool = False) -> BuildResult:
    """`more_models`: (name, model, calib) of further models linked into the
    same image (`--add`), each with its own prefixed API; the first model is
    the one the protocol firmware serves.  `update`: an updatable.UpdateConfig
    for `--updatable` (model slots, docs/model-update.md)."""
    note = progress or (lambda _m: None)
    check_names([name] + [m[0] for m in more_models])
    if firmware not in FIRMWARES:
        raise TinygenError(f"--firmware {firmware!r}: choose {' or '.join(FIRMWARES)}")
    board = get_board(board_id)
    runtime = choose_runtime(board, runtime)
    if update is not None:
        from .updatable import partition_of
        partition_of(board)
        if firmware != FIRMWARE_PROTOCOL:
            raise TinygenError("--updatable firmware receives models over the serial protocol: "
                               "add --firmware protocol (an application of your own is not "
                               "wired to the model slots yet; docs/model-update.md)")
        if more_models:
            raise TinygenError("--updatable keeps one model in its slots: drop --add")
    if profile and firmware != FIRMWARE_PROTOCOL:
        raise TinygenError("--profile times operators for `tinygen verify`, which talks to the "
                           "protocol firmware: add --firmware protocol")
    if arena_bytes is not None and runtime != "tflm":
        raise TinygenError("--arena-bytes sets the TFLM arena: it needs --runtime tflm "
                           "(the aot runtime plans its arena exactly)")
    if arena_bytes is not None and arena_bytes < MIN_ARENA_BYTES:
        raise TinygenError(f"--arena-bytes {arena_bytes} is too small to be an arena "
                           f"(at least {MIN_ARENA_BYTES})")
    model_path = Path(model_path)
    out = Path(out_dir) if out_dir else default_out_dir(model_path, board, firmware)
    _check_destination(out, board, model_path, force)
    if firmware != FIRMWARE_APP and not force and _manifest_field(out / MANIFEST, "firmware") \
            == FIRMWARE_APP:
        # the application is where the user's code goes: never replaced unasked
        raise TinygenError(
            f"output directory {out} holds the application project of this model; the "
            f"{firmware} firmware goes elsewhere: choose another -o, or pass --force to "
            "replace it")
    tree = _open_tflm_tree(board, runtime, tflm_source, note)

    note(f"loading {model_path}")
    source = load_model(model_path)
    conversion = convert(source, Path(calib) if calib else None, progress=note,
                         detection=Path(detection) if detection else None)
    check_lost_zeros(conversion.ir, accept_dense)
    ir, channels = remove_channels(conversion.ir)
    if channels.removed:
        note(f"pruned channels: {channels.summary()}")
    note("analyzing: op support, arena, fit")
    analysis = analyze(ir, board)
    fit = require_fit(analysis, board, runtime)
    if runtime == "aot" and not wide_weights_fit(ir, board.app_flash_bytes) \
            and any(op.opcode in ("CONV_2D", "FULLY_CONNECTED") for op in ir.operators):
        note(f"convolutions and fully connected layers keep 8-bit weights: the 16-bit copies "
             f"this core's fast kernels read would not fit {board.id}'s "
             f"{board.app_flash_bytes:,} bytes of flash (slower, half the weight flash; "
             "docs/performance.md sections 16 and 21)")
    extra = []
    for extra_name, extra_path, extra_calib in more_models:
        note(f"loading {extra_path} ({extra_name})")
        extra_conv = convert(load_model(extra_path), Path(extra_calib) if extra_calib else None,
                             progress=note)
        extra_analysis = analyze(extra_conv.ir, board)
        extra_fit = require_fit(extra_analysis, board, runtime)
        extra.append(_Extra(extra_name, Path(extra_path), extra_calib, extra_conv,
                            extra_analysis, bool(extra_fit.get("arena_in_psram"))))
    if tree is not None:
        from ..codegen.tflm import resolver_entries
        for m in [ir] + [e.conversion.ir for e in extra]:
            tflm_tree_mod.check_model_ops(tree, [e.method for e in resolver_entries(m)])

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tinygen-tmp",
                                    dir=out.parent))
    try:
        result = _render(staging, board, runtime, source.name, conversion, analysis, fit,
                         tree, note, profile, arena_bytes, name, firmware, extra,
                         Path(calib) if calib else None, update, device_ir=ir)
        result.channels = channels
        if compile_firmware and board.emulated:
            note(f"compiling firmware for {board.id} with PlatformIO (offline platform)")
            _compile_emulated(staging, result)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out_dir = out
    result.model_path = str(model_path.resolve())
    if result.elf is not None:
        result.elf = out / result.elf.relative_to(staging)
    (out / MANIFEST).write_text(json.dumps(result.manifest(), indent=2))
    if not board.emulated and compile_firmware:
        result.pio_message = _try_real_board_build(out, board)
    return result


# ---------------------------------------------------------------------------


@dataclass
class _Extra:
    """A further model of the image (--add)."""
    name: str
    path: Path
    calib: str | Path | None
    conversion: ConversionResult
    analysis: Analysis
    arena_in_psram: bool


def _open_tflm_tree(board: Board, runtime: str, option, note):
    """The TFLM tree a tflm build compiles, checked before anything else runs."""
    source = tflm_tree_mod.tflm_source_from(option)
    what = "--tflm-source" if option else f"${tflm_tree_mod.SOURCE_ENV}"
    if runtime != "tflm" or board.family == "esp32":
        if option and board.family == "esp32":
            note(f"--tflm-source is not used for {board.id}: ESP32 projects get TFLM from the "
                 "ESP-IDF component espressif/esp-tflite-micro")
        elif option:
            raise TinygenError(f"--tflm-source is for the tflm runtime; this build uses {runtime} "
                               "(add --runtime tflm)")
        return None
    if source is None:
        if board.emulated:
            raise TinygenError(
                f"the tflm runtime on {board.id} compiles TensorFlow Lite Micro from a source "
                f"tree: give --tflm-source DIR or set {tflm_tree_mod.SOURCE_ENV} (make a tree "
                "with TFLM's create_tflm_tree.py, see docs/tflm-source.md)")
        return None
    tree = tflm_tree_mod.open_tree(source, what)
    note(f"TFLM source tree: {tree.describe()}")
    return tree


def _check_destination(out: Path, board: Board | None = None, model_path: Path | None = None,
                       force: bool = False) -> None:
    if out.exists():
        if not out.is_dir():
            raise TinygenError(f"output path {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / MANIFEST).exists():
            raise TinygenError(
                f"output directory {out} is not empty and was not made by tinygen; "
                "choose another -o or empty it")
        previous = _manifest_board(out / MANIFEST)
        if board is not None and previous and previous != board.id and not force:
            raise TinygenError(
                f"output directory {out} holds the project for board {previous}, not "
                f"{board.id}; choose another -o, or pass --force to replace it")
        old_model = _manifest_model(out / MANIFEST)
        if model_path is not None and old_model and not force and \
                Path(old_model) != model_path.resolve():
            raise TinygenError(
                f"output directory {out} holds the project of another model ({old_model}); "
                "choose another -o, or pass --force to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TinygenError(f"cannot create output directory {parent}: {exc.strerror}") from None
    probe = parent / f".tinygen-write-test-{out.name}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TinygenError(f"output directory {parent} is not writable: {exc.strerror}") from None


def _manifest_model(path: Path) -> str | None:
    """The source model a project was built from (projects before tinygen
    recorded it: None, and they may be replaced)."""
    try:
        value = json.loads(path.read_text()).get("model_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _manifest_field(path: Path, key: str):
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _manifest_board(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("board")
    except (OSError, ValueError, AttributeError):
        return None


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished project into place (the old one is removed only after)."""
    # mkdtemp made the staging folder private (0700); the project gets the
    # permissions any folder the user makes would get.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.tinygen-old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _copy_common(src: Path, names: list[str]) -> None:
    for name in names:
        shutil.copy2(TEMPLATES_DIR / "common" / name, src / name)


def check_lost_zeros(ir: Model, accept_dense: bool) -> None:
    """A pruned model whose zeros did not survive quantization runs dense:
    refused unless the user says that is what they want (prune/sparsity.py)."""
    lost = lost_zero_layers(ir)
    if lost and not accept_dense:
        more = f" (and {len(lost) - 1} more layers)" if len(lost) > 1 else ""
        raise TinygenError(
            f"{lost[0].describe()}{more}: the model looks pruned but its zeros did not "
            "survive quantization, so it would run dense; keep the pruning masks until "
            "conversion (tinygen prune writes exact zeros), or pass --accept-dense to build "
            "it dense anyway")


def _render(root: Path, board: Board, runtime: str, model_name: str,
            conversion: ConversionResult, analysis: Analysis, fit: dict,
            tree, note, profile: bool = False,
            arena_override: int | None = None, name: str = DEFAULT_NAME,
            firmware: str = FIRMWARE_APP, extra: Sequence[_Extra] = (),
            calib: Path | None = None, update=None,
            device_ir: Model | None = None) -> BuildResult:
    ir = device_ir or conversion.ir
    src = root / "src"
    src.mkdir(parents=True)
    (root / "model.tflite").write_bytes(ir.tflite)
    if conversion.report is not None:
        (root / "quantization_report.json").write_text(conversion.report.to_json())
        (root / "quantization_report.txt").write_text(conversion.report.summary() + "\n")
    _copy_common(src, COMMON_SOURCES)

    in_psram = bool(fit.get("arena_in_psram"))
    result = BuildResult(out_dir=root, board=board, runtime=runtime, model_name=model_name,
                         signature=ir.signature, analysis=analysis, conversion=conversion,
                         arena_bytes=0, arena_in_psram=in_psram, model_flash=0,
                         c_name=name, firmware=firmware, device_ir=ir)
    note(f"generating the {runtime} runtime sources")
    if runtime == "tflm":
        from ..codegen.tflm import generate_tflm
        measured = analysis.tflm_arena["total"]
        arena = arena_override or fitmod.tflm_arena_with_margin(measured)
        tflm = generate_tflm(ir, model_name, board.id, 0 if arena_override else measured,
                             arena, in_psram, src, name=name,
                             defined_kernels=tree.registrations if tree is not None else frozenset(),
                             updatable=update is not None)
        result.arena_bytes = arena
        result.arena_measured = measured
        result.model_flash = len(ir.tflite)
        result.resolver = [f"{e.method}  // {e.name}" for e in tflm.resolver]
        from ..codegen.tflm import data_symbol
        result.weight_symbols = [data_symbol(name)]
        if update is not None:
            from ..update.make import Payload, image_for
            from . import updatable
            note("signing the built-in model image (slot 0)")
            payload = Payload(ir.tflite, bytes.fromhex(tflm.fingerprint), measured, "tflm")
            image = image_for(ir, payload, update.version, update.sign, update.security_counter)
            result.update = updatable.render(src, root / "lib", board, image, payload.fingerprint,
                                             arena, update, runtime="tflm")
            result.weight_symbols = ["tg_factory_image"]
        result.code_estimate = fitmod.TFLM_CODE_BASE + fitmod.TFLM_CODE_PER_OP * len(tflm.resolver)
        methods = [e.method for e in tflm.resolver]
        for e in extra:
            e_measured = e.analysis.tflm_arena["total"]
            e_arena = fitmod.tflm_arena_with_margin(e_measured)
            more = generate_tflm(e.conversion.ir, e.path.name, board.id, e_measured, e_arena,
                                 e.arena_in_psram, src, name=e.name, protocol_binding=False,
                                 defined_kernels=tree.registrations if tree is not None
                                 else frozenset())
            # one TFLM library serves every model: it compiles the union of their kernels
            methods += [r.method for r in more.resolver if r.method not in methods]
            result.weight_symbols.append(data_symbol(e.name))
            result.more_models.append({"name": e.name, "model": e.path.name,
                                       "signature": e.conversion.ir.signature,
                                       "arena_bytes": e_arena,
                                       "resolver": [r.method for r in more.resolver]})
        if board.family == "esp32":
            # esp-tflite-micro brings DebugLog and the timer; the glue's log hooks stay
            for f in ("tg_tflm_target.h", "tg_tflm_nolog.cc"):
                shutil.copy2(TEMPLATES_DIR / "tflm" / f, src / f)
        else:
            _copy_tflm_target(src)
            _place_tflm_library(root, tree, note, methods)
            if tree is not None:
                result.tflm_tree = str(tree.root.resolve())
                result.tflm_flavour = tree.flavour
                if tree.cmsis_nn and "UNIDIRECTIONAL_SEQUENCE_LSTM" in ir.op_names():
                    # arm_lstm_unidirectional_s8 gets no hidden state from TFLM's glue
                    result.warnings.append(
                        "TFLM's CMSIS-NN UNIDIRECTIONAL_SEQUENCE_LSTM starts every inference from "
                        "a zero state, so a stateful model's second and later inferences differ "
                        "from the tflite_micro interpreter (49 LSB on lstm_anomaly in the bench); "
                        "for streaming use a reference-kernel TFLM tree or --runtime aot")
    else:
        from ..codegen.aot import generate_aot
        aot = generate_aot(ir, src, board=board.id, name=name, updatable=update is not None)
        result.arena_bytes = aot.arena_bytes
        result.model_flash = aot.constant_bytes
        # Model data = everything derived from the model's constants (weights, biases,
        # per-channel multipliers/shifts), as TFLM's "text minus model" counts it.
        result.weight_symbols = list(aot.weight_symbols) + list(aot.table_symbols)
        if update is not None:
            from ..update.make import Payload, image_for
            from . import updatable
            assert aot.payload is not None
            note("signing the built-in model image (slot 0)")
            payload = Payload(aot.payload, bytes.fromhex(aot.fingerprint), aot.arena_bytes, "aot")
            image = image_for(ir, payload, update.version, update.sign, update.security_counter)
            result.update = updatable.render(src, root / "lib", board, image, payload.fingerprint,
                                             aot.arena_bytes, update, runtime="aot")
            result.weight_symbols = ["tg_factory_image"]
        result.memory_plan = plan_manifest(aot.plan, ir, aot.calls)
        result.code_estimate = fitmod.AOT_CODE_BASE + fitmod.AOT_CODE_PER_KERNEL * len(
            {c.kernel for c in aot.calls})
        for e in extra:
            more_aot = generate_aot(e.conversion.ir, src, board=board.id, name=e.name,
                                    protocol_binding=False)
            result.weight_symbols += list(more_aot.weight_symbols) + list(more_aot.table_symbols)
            result.more_models.append({"name": e.name, "model": e.path.name,
                                       "signature": e.conversion.ir.signature,
                                       "arena_bytes": more_aot.arena_bytes})
    # aot: model.c calls the counter hook; tflm: the glue's profiler does
    result.profile = profile
    if extra:
        total = result.arena_bytes + sum(m["arena_bytes"] for m in result.more_models)
        if not in_psram and total > board.ram_available_bytes:
            result.warnings.append(
                f"the {1 + len(extra)} models' arenas take {total:,} B together, more than "
                f"the {board.ram_available_bytes:,} B of RAM {board.id} leaves for them")

    ctx = dict(version=__version__, board=board, runtime=runtime, model_name=model_name,
               signature=ir.signature, arena_in_psram=in_psram, project_name=_c_name(model_name),
               emulated_lines=[], build_flags=_build_flags(board, runtime, tree),
               src_flags=[] if board.family == "esp32" else _src_flags(board),
               build_cache_dir="", camera=False)
    if result.update is not None:
        key = "build_flags" if board.family == "esp32" else "src_flags"
        ctx[key] += ["-DTG_UPDATE"] + (["-DTG_UPDATE_FAULTS"]
                                       if result.update["fault_injection"] else [])
    if result.profile:
        key = "build_flags" if board.family == "esp32" else "src_flags"
        ctx[key] += ["-DTG_PROFILE_OPS", f"-DTG_PROFILE_MAX_OPS={max(1, len(ir.operators))}u"]
    if firmware == FIRMWARE_APP:
        # The protocol's entry points (tg_main.c, the HAL's setup/loop or
        # app_main) step aside for the application's.
        key = "build_flags" if board.family == "esp32" else "src_flags"
        ctx[key] += ["-DTG_NO_MAIN"]
        ctx["camera"] = _write_app(src, board, runtime, [(name, conversion.ir, calib)]
                                   + [(e.name, e.conversion.ir, e.calib) for e in extra])
    ctx["firmware"] = firmware
    if board.family == "qemu":
        from . import pio_offline
        ctx["emulated_lines"] = pio_offline.platformio_ini_lines(board.pio_board)
        ctx["build_cache_dir"] = str(pio_offline.build_cache_dir())
        if firmware == FIRMWARE_PROTOCOL:
            _copy_common(src, ["tg_main.c"])
    elif board.family == "esp32":
        shutil.copy2(TEMPLATES_DIR / "hal" / "tg_hal_espidf.c", src / "tg_hal_espidf.c")
        sources = sorted(p.name for p in src.iterdir() if p.suffix in (".c", ".cc", ".cpp"))
        render_to("project/esp_project_cmakelists.txt.j2", root / "CMakeLists.txt", ctx)
        render_to("project/esp_src_cmakelists.txt.j2", src / "CMakeLists.txt",
                  dict(ctx, sources=sources))
        render_to("project/idf_component.yml.j2", src / "idf_component.yml", ctx)
        render_to("project/sdkconfig.defaults.j2", root / "sdkconfig.defaults", ctx)
    else:
        shutil.copy2(TEMPLATES_DIR / "hal" / "tg_hal_arduino.cpp", src / "tg_hal_arduino.cpp")
    render_to("project/platformio.ini.j2", root / "platformio.ini", ctx)
    _write_readme(root, ctx, result, conversion.report is not None)
    return result


def _write_readme(root: Path, ctx: dict, result: BuildResult, has_report: bool) -> None:
    from ..codegen.app import app_file_name
    from ..codegen.tflm import source_names
    glue, stem = source_names(result.c_name)
    render_to("project/README.md.j2", root / "README.md",
              dict(ctx, c_name=result.c_name, glue=glue, data_stem=stem,
                   arena_bytes=result.arena_bytes, has_report=has_report,
                   app_file=app_file_name(_entry(result.board)),
                   more_models=result.more_models))


def _entry(board: Board) -> str:
    from ..codegen.app import ENTRY_ARDUINO, ENTRY_ESP_IDF, ENTRY_MAIN
    return {"esp32": ENTRY_ESP_IDF, "stm32": ENTRY_ARDUINO,
            "esp8266": ENTRY_ARDUINO}.get(board.family, ENTRY_MAIN)


def example_input(ir, calib: Path | None) -> tuple[list[np.ndarray], str]:
    """One input for the application to run before the user's sensor code
    exists: the first --calib sample (quantized as `tinygen verify` quantizes
    its vectors), else every input at its zero point (float 0.0)."""
    from ..convert import quantize
    from ..data import load_samples
    ins = ir.input_tensors()
    if calib is not None and all(t.dtype == "int8" for t in ins):
        loaded = load_samples(calib, [t.shape for t in ins], integers="float", keep_int8=True)
        if loaded:
            sample = [np.asarray(x).reshape(t.shape).astype(np.int8) if np.asarray(x).dtype
                      == np.int8 else quantize(x, t) for x, t in zip(loaded[0], ins)]
            return sample, f"sample 0 of {calib.name}"
    zeros = [np.full(t.shape, t.zero_point if t.quant else 0, np.dtype(t.dtype)) for t in ins]
    return zeros, "an input of zeros (0.0 at every element; no --calib was given)"


def _write_app(src: Path, board: Board, runtime: str, models: list) -> bool:
    """The application; True when it captures frames from the board's camera."""
    from ..codegen.app import AppModel, camera_for, generate_app
    from ..convert.pipeline import image_frontend_info, pipeline_parts
    apps = []
    camera_used = False
    for model_name, ir, model_calib in models:
        sample, how = example_input(ir, Path(model_calib) if model_calib else None)
        app = AppModel(model_name, ir, sample, how)
        frames = image_frontend_info(ir.tflite)
        if frames is not None and pipeline_parts(ir.tflite):
            app.answer_from = 1          # output 0 is the front end's image
            if board.camera and not camera_used:
                # one camera: the first camera pipeline reads it
                app.camera = camera_for(frames.frame_width, frames.frame_height,
                                        frames.pixel_format, board.id, dict(board.camera))
                camera_used = True
        apps.append(app)
    # Debian's xtensa-lx106 libgcc, which the emulated ESP8266 links, has no
    # soft-float routines (__mulsf3, __addsf3, __floatsisf are undefined)
    no_float = board.emulated and board.core == "xtensa-lx106"
    generate_app(apps, src, entry=_entry(board), board_id=board.id, board_name=board.name,
                 baud=board.baud, runtime=runtime, use_float=not no_float)
    return camera_used


def _src_flags(board: Board) -> list[str]:
    """Flags for the project's own sources only (build_src_flags), so that
    libraries such as TFLM compile the same for every board of a core and
    their objects come from PlatformIO's build cache."""
    return [f"-DTG_BAUD={board.baud}", "-DTG_BOARD=\\\"" + board.id + "\\\""]


def _build_flags(board: Board, runtime: str, tree=None) -> list[str]:
    flags = _src_flags(board) if board.family == "esp32" else []
    if runtime == "tflm":
        if tree is not None:
            # The glue includes TFLM headers whose content depends on CMSIS_NN.
            flags += tree.project_flags(TFLM_LIB_DIR)
        else:
            flags += ["-DTF_LITE_STATIC_MEMORY"]
    if board.family == "stm32" and runtime == "tflm":
        flags += ["-std=gnu++17"]
    return flags


def _copy_tflm_target(src: Path) -> None:
    for name in TFLM_TARGET_SOURCES:
        shutil.copy2(TEMPLATES_DIR / "tflm" / name, src / name)


def _place_tflm_library(root: Path, tree, note, methods: list[str]) -> None:
    lib = root / TFLM_LIB_DIR
    lib.mkdir(parents=True)
    if tree is None:
        (lib / "PUT_TFLM_TREE_HERE.md").write_text(
            "This project needs a TensorFlow Lite Micro source tree in this folder.\n"
            "Make one with TFLM's create_tflm_tree.py (docs/tflm-source.md in tinygen) and\n"
            "rerun `tinygen build ... --tflm-source DIR`, or copy the tree here by hand.\n")
        note("no --tflm-source given: lib/tflite-micro/ is left for a TFLM source tree")
        return
    note(f"copying the TFLM source tree from {tree.root}")
    _copy_tree_contents(tree.root, lib)
    render_to("project/tflm_library.json.j2", lib / "library.json",
              dict(version=__version__, tflm_source=str(tree.root), flavour=tree.flavour,
                   src_filter=tree.src_filter(methods), flags=tree.library_flags()))


def _copy_tree_contents(src: Path, dst: Path) -> None:
    """Copy files only, not modes: a read-only tree must give a writable project."""
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(Path(folder) / name, dst / rel / name)


def _c_name(name: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in name)
    return out if out and not out[0].isdigit() else f"m_{out}"


def _compile_emulated(root: Path, result: BuildResult) -> None:
    from . import pio_offline
    from .elf_size import measure_elf
    elf = pio_offline.run_build(root, result.board.pio_board)
    result.elf = elf
    result.built = True
    sizes = measure_elf(elf, result.weight_symbols)
    result.code_flash = sizes.code
    result.model_flash = sizes.weights or result.model_flash


def registry_reachable(host: str = PIO_REGISTRY_HOST) -> bool:
    """Name resolution only: no connection is made when the network is absent."""
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _try_real_board_build(out: Path, board: Board) -> str:
    if not registry_reachable():
        return (f"PlatformIO cannot install the {board.pio_platform} platform here (no "
                f"registry access); the project in {out} is ready for `pio run`.")
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "platformio", "run", "-d", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
        return f"`pio run` failed in {out}: {tail[0]}"
    return f"`pio run` built {out}"
