"""tinygen's command line: one subcommand per job, one line per error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import TinygenError
from .sizes import help_text as sizes_help

# The size words inspect, build and verify print, defined where --help shows them.
SIZES_HELP = {"epilog": sizes_help(), "formatter_class": argparse.RawDescriptionHelpFormatter}

EPILOG = """\
typical session:
  tinygen build model.h5 --calib calib.npy                 # an app for the emulated STM32F405
  tinygen export --format arduino model.h5 --calib calib.npy --name kws -o kws-lib
  tinygen verify model.h5 --calib calib.npy --samples 20   # build, run in QEMU, compare with TFLM
  tinygen inspect model.h5 --calib calib.npy --board nucleo_f446re
  tinygen build --board esp32cam model.h5 --calib calib.npy --firmware protocol -o esp32cam-kws
  tinygen verify --board esp32cam --port /dev/ttyUSB0 model.h5 --calib calib.npy
  tinygen verify model.h5 --calib calib.npy --profile --html report.html   # plots, per-op times
  tinygen verify --board esp32cam --port rfc2217://farm:7001 --port rfc2217://farm:7002 model.h5
"""


class Console:
    """Where a command's output goes: results on stdout; progress and warnings
    on stderr (the long steps shown live on a terminal, report/text.py)."""

    def __init__(self, quiet: bool = False):
        from .report.text import StepDisplay
        self.quiet = quiet
        self.steps = StepDisplay(quiet=quiet)

    def progress(self, message: str) -> None:
        self.steps.step(message)

    def done(self) -> None:
        """The long steps are over: the results follow."""
        self.steps.finish()

    def out(self, text: str = "") -> None:
        self.done()
        print(text, flush=True)

    def warn(self, text: str) -> None:
        if self.steps.bar is not None:
            self.steps.bar.note(f"warning: {text}")
            return
        self.done()
        print(f"tinygen: warning: {text}", file=sys.stderr, flush=True)


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MB"
    if n >= 1 << 10:
        return f"{n / 1024:.1f} KB"
    return f"{n} B"


# ---------------------------------------------------------------------------
# subcommands


def cmd_boards(args, con: Console) -> int:
    from .boards import DEFAULT_EMULATED_BOARD, all_boards
    boards = all_boards()
    if args.json:
        con.out(json.dumps([b.__dict__ for b in boards], indent=2))
        return 0
    con.out(f"{'board':20} {'kind':8} {'core':11} {'MHz':>4} {'flash':>9} {'RAM':>9} "
            f"{'PSRAM':>8}  runtimes (default first)  PlatformIO")
    for b in boards:
        rts = [b.default_runtime] + [r for r in b.runtimes if r != b.default_runtime]
        star = " *" if b.id == DEFAULT_EMULATED_BOARD else ""
        pio = f"{b.pio_platform}/{b.pio_board}" + (f" ({b.pio_framework})" if b.pio_framework else "")
        con.out(f"{b.id:20} {b.kind:8} {b.core:11} {b.clock_mhz:>4} {_human(b.flash_bytes):>9} "
                f"{_human(b.ram_bytes):>9} {_human(b.psram_bytes) if b.psram_bytes else '-':>8}  "
                f"{', '.join(rts):24} {pio}{star}")
    con.out(f"\n* the default board when none is given: {DEFAULT_EMULATED_BOARD} (runs under QEMU)")
    return 0


def cmd_convert(args, con: Console) -> int:
    from .convert import convert
    from .load import load_model
    src = load_model(args.model)
    out = Path(args.output) if args.output else Path(src.path.with_suffix(".int8.tflite").name)
    result = convert(src, Path(args.calib) if args.calib else None, progress=con.progress,
                     detection=args.detection)
    _write_atomic(out, result.tflite)
    con.out(f"wrote {out} ({len(result.tflite):,} bytes, {len(result.ir.operators)} ops: "
            f"{', '.join(result.ir.op_names())})")
    if result.report is not None:
        report_path = out.with_suffix(".report.json")
        _write_atomic(report_path, result.report.to_json().encode())
        con.out(result.report.summary())
        con.out(f"report: {report_path}")
        for w in result.report.warnings:
            con.warn(w)
    else:
        con.out("input was already a full-int8 .tflite: checked and passed through")
    return 0


def _pair(text: str | None, what: str, n: int = 2) -> tuple[int, ...] | None:
    """'160x120' or '8,6,120,120' -> ints; one line when it is not."""
    if text is None:
        return None
    parts = text.replace(",", "x").lower().split("x")
    try:
        vals = tuple(int(v) for v in parts)
    except ValueError:
        vals = ()
    if len(vals) != n:
        form = "WIDTHxHEIGHT" if n == 2 else "X,Y,WIDTH,HEIGHT"
        raise TinygenError(f"{what} '{text}': expected {form}")
    return vals


def _image_frontend(args, con: Console) -> int:
    from .convert.image_frontend import ImageFrontendParams, make_image_frontend
    for flag in ("sample_rate", "window_ms", "stride_ms", "channels", "lower_hz", "upper_hz"):
        if getattr(args, flag) is not None:
            raise TinygenError(f"--{flag.replace('_', '-')} is an audio front end option; "
                               "--image takes --frame, --format, --size, --crop, --resize")
    size, out_ch = _pair(args.size, "--size"), args.out_channels
    out_scale, out_zp = args.out_scale, args.out_zero_point
    if args.model:
        from .convert import parse_checked
        path = Path(args.model)
        if path.suffix != ".tflite" or not path.is_file():
            raise TinygenError(f"--model {path}: give the model's int8 .tflite (`tinygen convert` "
                               "writes it from Keras)")
        ir = parse_checked(path.read_bytes(), f"--model {path}")
        if len(ir.inputs) != 1:
            raise TinygenError(f"--model {path} has {len(ir.inputs)} inputs; a front end feeds one")
        t = ir.input_tensors()[0]
        shape = [int(d) for d in t.shape]
        if t.dtype != "int8" or len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3) \
                or t.quant is None:
            raise TinygenError(f"--model {path}: its input '{t.name}' is {t.dtype} {shape}; an "
                               "image front end feeds int8 [1, height, width, 1 or 3]")
        size = size or (shape[2], shape[1])
        out_ch = out_ch or shape[3]
        out_scale = t.scale if out_scale is None else out_scale
        out_zp = t.zero_point if out_zp is None else out_zp
    frame = _pair(args.frame, "--frame") or (160, 120)
    size = size or (96, 96)
    params = ImageFrontendParams(
        frame_width=frame[0], frame_height=frame[1], pixel_format=args.format,
        out_width=size[0], out_height=size[1], out_channels=out_ch or 1,
        crop=_pair(args.crop, "--crop", 4), resize=args.resize,  # type: ignore[arg-type]
        pixel_scale=args.pixel_scale, pixel_zero_point=args.pixel_zero_point,
        out_scale=1.0 / 255.0 if out_scale is None else out_scale,
        out_zero_point=-128 if out_zp is None else out_zp)
    tflite, ir = make_image_frontend(params)
    out = Path(args.output)
    _write_atomic(out, tflite)
    x, y, w, h = params.crop_box
    con.out(f"wrote {out} ({len(tflite):,} bytes, {len(ir.operators)} ops: "
            f"{', '.join(ir.op_names())})")
    con.out(f"  input  uint8 [1, {params.frame_height}, {params.frame_width}, "
            f"{params.bytes_per_pixel}] ({params.pixel_format}); crop {w}x{h} at ({x}, {y}), "
            f"{params.resize} resize")
    con.out(f"  output int8 [1, {params.out_height}, {params.out_width}, {params.out_channels}] "
            f"scale {params.out_scale:.6g} zp {params.out_zero_point}")
    return 0


def cmd_frontend(args, con: Console) -> int:
    from .convert.frontend import FrontendParams, make_frontend
    if args.image:
        return _image_frontend(args, con)
    for flag in ("frame", "size", "crop", "model", "out_channels"):
        if getattr(args, flag) is not None:
            raise TinygenError(f"--{flag.replace('_', '-')} is an image front end option "
                               "(with --image)")
    defaults = dict(sample_rate=16000, window_ms=30.0, stride_ms=20.0, channels=40,
                    lower_hz=125.0, upper_hz=7500.0, out_scale=26.0 / 255.0, out_zero_point=-128)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    params = FrontendParams(
        sample_rate=args.sample_rate, window_ms=args.window_ms, stride_ms=args.stride_ms,
        channels=args.channels, lower_hz=args.lower_hz, upper_hz=args.upper_hz,
        noise_reduction=not args.no_noise_reduction,
        pcan=not (args.no_pcan or args.no_noise_reduction),
        out_scale=args.out_scale, out_zero_point=args.out_zero_point)
    tflite, ir = make_frontend(params)
    out = Path(args.output)
    _write_atomic(out, tflite)
    con.out(f"wrote {out} ({len(tflite):,} bytes, {len(ir.operators)} ops: "
            f"{', '.join(ir.op_names())})")
    con.out(f"  input  int16 [{params.window_samples}] ({params.window_ms:g} ms at "
            f"{params.sample_rate} Hz; a new window every {params.stride_samples} samples, "
            f"{params.stride_ms:g} ms), {params.fft_length}-point FFT")
    con.out(f"  output int8 [{params.channels}] scale {params.out_scale:.6g} "
            f"zp {params.out_zero_point}")
    return 0


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TinygenError(f"cannot write {path}: {exc.strerror}") from None


def _load_ir_any(model: str, calib: str | None, con: Console, detection: str | None = None):
    from .convert import convert
    from .load import load_model
    src = load_model(model)
    return convert(src, Path(calib) if calib else None, progress=con.progress,
                   detection=detection)


def cmd_inspect(args, con: Console) -> int:
    from .analyze.analysis import analyze
    from .boards import get_board
    board = get_board(args.board) if args.board else None
    conv = _load_ir_any(args.model, args.calib, con, args.detection)
    ir = conv.ir
    for w in (conv.report.warnings if conv.report is not None else []):
        con.warn(w)
    con.progress("measuring the TFLM arena with the recording allocator")
    a = analyze(ir, board)
    if args.json:
        d = a.as_dict()
        if conv.report is not None:
            d["calibration"] = {"source": conv.report.calibration,
                                "synthetic": conv.report.synthetic_calibration}
        con.out(json.dumps(d, indent=2, default=str))
        return 0
    con.out(f"model {args.model}: {len(ir.tflite):,} bytes, SHA-256 {ir.signature}")
    for t in a.inputs:
        con.out(f"  input  {t['name']}: {t['shape']} {t['dtype']} scale {t['scale']:.6g} zp {t['zero_point']}")
    for t in a.outputs:
        con.out(f"  output {t['name']}: {t['shape']} {t['dtype']} scale {t['scale']:.6g} zp {t['zero_point']}")
    con.out("")
    con.out(f"{'#':>3}  {'op':30} {'v':>2}  {'TFLM resolver':32} {'tflm':4} {'aot':4} "
            f"{'params':>9} {'weights+biases':>14} {'MACs':>11}  output")
    for r in a.ops:
        con.out(f"{r.index:>3}  {r.opcode:30} {r.version:>2}  {r.tflm_method or '-':32} "
                f"{'yes' if r.supported.get('tflm') else 'NO':4} "
                f"{'yes' if r.supported.get('aot') else 'NO':4} {r.params:>9,} "
                f"{r.weights_biases_bytes:>14,} {r.macs:>11,}  {list(r.output_shape)}")
    con.out(f"{'':3}  {'total':30} {'':2}  {'':32} {'':4} {'':4} {a.params:>9,} "
            f"{a.weights_biases_bytes:>14,} {a.macs:>11,}")
    con.out("")
    ta = a.tflm_arena
    if ta["total"]:
        con.out(f"TFLM arena (measured, recording allocator): total {ta['total']:,} B "
                f"(head {ta['head']:,}, tail {ta['tail']:,}); a tflm build reserves "
                f"{a.tflm_arena_planned:,} B")
    if a.aot_arena is not None:
        con.out(f"aot arena (tinygen planner): {a.aot_arena:,} B")
    _print_pruning(ir, con)
    # model flash in sizes.py's sense, per runtime (code flash needs a board: see the fit)
    flash = [f"tflm {len(ir.tflite):,} B (the .tflite)"] if ta["total"] else []
    if a.aot_arena is not None:
        flash.append(f"aot {a.weights_biases_bytes:,} B (weights+biases; the requantization "
                     "tables codegen adds come on top)")
    if flash:
        con.out("model flash: " + ", ".join(flash))
    for msg in a.unsupported.values():
        if msg:
            con.out(f"unsupported: {msg}")
    for f in a.fits:
        if "flash_total" not in f:
            con.out(f"fit on {f['board']} ({f['runtime']}): NO: {'; '.join(f['problems'])}")
            continue
        verdict = "fits" if f["fits"] else "DOES NOT FIT"
        psram = " (arena in PSRAM)" if f.get("arena_in_psram") else ""
        con.out(f"fit on {f['board']} ({f['runtime']}): {verdict}{psram}: total flash "
                f"{f['flash_total']:,} of {f['flash_available']:,} B (margin {f['flash_margin']:,}; "
                f"model flash {f['model_flash']:,} + code flash ~{f['code_flash']:,}), total RAM "
                f"{f['ram_total']:,} of {f['ram_available']:,} B (margin {f['ram_margin']:,}; "
                f"arena {f['arena']:,}"
                + (f" + weights {f['weights_in_ram']:,}" if f.get("weights_in_ram") else "")
                + ")")
        for p in f["problems"]:
            con.out(f"    {p}")
    return 0


def _print_pruning(ir, con: Console) -> None:
    """What builds will make of exact zeros (docs/pruning.md); the analysis
    above is of the model as converted."""
    from .prune.channels import remove_channels
    from .prune.sparsity import lost_zero_layers, weight_sparsity
    _, removal = remove_channels(ir)
    if removal.removed:
        con.out(f"pruning (what a build does): {removal.summary()}")
    sparse = [s for s in weight_sparsity(ir) if s.exact >= 0.25]
    if sparse:
        con.out("pruning: exact int8 zeros in " + ", ".join(
            f"{s.op} {s.exact:.0%}" for s in sparse))
    for s in lost_zero_layers(ir):
        con.warn(f"{s.describe()}: looks pruned, but its zeros did not survive quantization "
                 "(a build refuses it without --accept-dense)")


def _default_board(args) -> str:
    from .boards import DEFAULT_EMULATED_BOARD
    return args.board or DEFAULT_EMULATED_BOARD


def _join_frontend(args, con: Console, workdir: Path):
    """--frontend: the front end and the model as one .tflite in workdir (a
    streaming one for audio); args.model then names it.  Returns the front
    end's FrontendInfo (audio) or ImageInfo (camera), and frames per input."""
    from .convert.pipeline import build_image_pipeline, build_pipeline, image_frontend_info
    fe_path = Path(args.frontend)
    if not fe_path.is_file():
        raise TinygenError(f"--frontend {fe_path}: no such file")
    model = Path(args.model)
    if model.suffix.lower() == ".tflite" and not args.calib:
        model_bytes = model.read_bytes() if model.is_file() else b""
        if not model_bytes:
            raise TinygenError(f"{model}: no such file")
    else:
        model_bytes = _load_ir_any(args.model, args.calib, con).tflite
    every = getattr(args, "model_every", None) or 1
    if every > 1:
        from .boards import get_board
        if (args.runtime or get_board(_default_board(args)).default_runtime) != "aot":
            raise TinygenError("--model-every needs --runtime aot: TFLM invokes every operator "
                               "of the one pipeline graph")
    con.progress(f"joining the front end {fe_path.name} and {model.name} into one pipeline")
    fe_bytes = fe_path.read_bytes()
    image = image_frontend_info(fe_bytes)
    if image is not None and every > 1:
        raise TinygenError("--model-every is for audio front ends (a camera front end answers "
                           "every frame)")
    if image is not None:
        tflite, info = build_image_pipeline(fe_bytes, bytes(model_bytes))
        frames = 1
        con.progress(f"pipeline: {image.frame_width}x{image.frame_height} {image.pixel_format} "
                     "frames, one answer per frame")
    else:
        tflite, info, frames = build_pipeline(fe_bytes, bytes(model_bytes), every)
        con.progress(f"pipeline: {info.stride_samples} samples per stride at "
                     f"{info.sample_rate} Hz, {frames} frames per model input")
    args.pipeline_parts = (fe_bytes, bytes(model_bytes), tflite)
    joined = workdir / f"{model.stem}+{fe_path.stem}.tflite"
    joined.write_bytes(tflite)
    args.model, args.calib = str(joined), None
    return info, frames


def _check_model_every(args) -> None:
    every = getattr(args, "model_every", None)
    if getattr(args, "pipeline_parts", None) is not None:
        return                       # checked before the pipeline was joined
    if every is not None and not getattr(args, "frontend", None):
        raise TinygenError("--model-every needs --frontend FRONTEND.tflite (it says how often "
                           "the pipeline's model runs)")
    if every is not None and every < 1:
        raise TinygenError(f"--model-every {every}: give a whole number of strides, 1 or more")


def cmd_build(args, con: Console) -> int:
    _check_model_every(args)
    if getattr(args, "frontend", None):
        import tempfile
        with tempfile.TemporaryDirectory(prefix="tinygen-pipeline-") as tmp:
            _join_frontend(args, con, Path(tmp))
            args.frontend = None
            return cmd_build(args, con)
    from .project.build import build
    from .tools.model_update import update_config
    board = _default_board(args)
    r = build(args.model, board, runtime=args.runtime, calib=args.calib, out_dir=args.output,
              tflm_source=args.tflm_source, compile_firmware=not args.no_compile,
              progress=con.progress, detection=args.detection, profile=args.profile,
              arena_bytes=args.arena_bytes, force=args.force, name=args.name,
              firmware=args.firmware, more_models=_added_models(args.add),
              update=update_config(args),
              accept_dense=args.accept_dense)
    parts = getattr(args, "pipeline_parts", None)
    if parts is not None:
        # the graph the firmware runs (front end + model), for inspect and reruns
        _write_atomic(Path(r.out_dir) / "pipeline.tflite", parts[2])
        from .convert.pipeline import image_frontend_info
        io = "a frame in, the image and answers out" if image_frontend_info(parts[2]) \
            else "samples in, features and answers out"
        con.out(f"pipeline: {Path(r.out_dir) / 'pipeline.tflite'} (the front end and the "
                f"model joined: {io})")
    print_build_summary(r, con)
    return 0


def _added_models(specs: list[str] | None) -> list[tuple[str, str, str | None]]:
    """--add NAME=MODEL[,CALIB] -> (name, model, calib)."""
    out = []
    for spec in specs or []:
        name, sep, rest = spec.partition("=")
        model, _, calib = rest.partition(",")
        if not sep or not name or not model:
            raise TinygenError(f"--add {spec!r}: write it NAME=MODEL or NAME=MODEL,CALIB "
                               "(e.g. --add vib=vib.tflite)")
        out.append((name, model, calib or None))
    return out


def cmd_export(args, con: Console) -> int:
    from .project.export import export
    r = export(args.model, args.format, args.output, runtime=args.runtime, name=args.name,
               calib=args.calib, board_id=args.board, more_models=_added_models(args.add),
               detection=args.detection, force=args.force, progress=con.progress,
               warn=con.warn, accept_dense=args.accept_dense)
    con.out(f"exported {', '.join(r.names)} ({r.runtime} runtime) as {args.format}: {r.out_dir}")
    for n, arena in r.arena_bytes.items():
        con.out(f"  {n}: arena {arena:,} B")
    con.out(f"  {len(r.files)} files; what is where: {r.out_dir / 'README.md'}")
    return 0


def print_build_summary(r, con: Console) -> None:
    con.out(f"project: {r.out_dir}  (board {r.board.id}, runtime {r.runtime}, "
            f"model SHA-256 {r.signature[:16]}...)")
    if r.conversion.report is not None:
        for w in r.conversion.report.warnings:
            con.warn(w)
    for w in r.warnings:
        con.warn(w)
    code = (f"{r.code_flash:,} B (from the ELF)" if r.code_flash is not None
            else f"~{r.code_estimate:,} B (estimate; not linked here)")
    where = " in PSRAM" if r.arena_in_psram else ""
    con.out(f"  model flash:  {r.model_flash:,} B")
    con.out(f"  code flash:   {code}")
    con.out(f"  arena:        {r.arena_bytes:,} B{where}")
    if r.channels.removed:
        con.out(f"  channels:     {r.channels.summary()} (bit-exact: zero-weight channels)")
    if r.resolver:
        con.out(f"  resolver:     MicroMutableOpResolver<{len(r.resolver)}>: "
                + ", ".join(x.split()[0] for x in r.resolver))
    for m in getattr(r, "more_models", []):
        con.out(f"  also:         {m['name']} ({m['model']}), arena {m['arena_bytes']:,} B")
    if r.elf is not None:
        kind = "application" if getattr(r, "firmware", "") == "app" else "protocol firmware"
        con.out(f"  firmware:     {r.elf} ({kind})")
    if r.pio_message:
        con.out(r.pio_message)


def cmd_prune(args, con: Console) -> int:
    from .prune.train import prune_model
    r = prune_model(args.model, args.sparsity, args.data, structured=args.structured,
                    test=args.test, epochs=args.epochs, learning_rate=args.learning_rate,
                    output=args.output, progress=con.progress)
    con.out(f"wrote {r.output} ({'structured: whole channels' if args.structured else 'unstructured'}"
            f", {r.epochs} epochs of fine-tuning)")
    con.out(f"  accuracy on {r.evaluated_on} ({r.samples:,} samples): "
            f"{r.accuracy_before:.2%} before, {r.accuracy_after:.2%} after "
            f"({(r.accuracy_after - r.accuracy_before) * 100:+.2f} points)")
    for name, share in r.layers.items():
        extra = ""
        if name in r.channels:
            zeroed, total = r.channels[name]
            extra = f", {zeroed} of {total} channels"
        con.out(f"  {name:28} {share:6.1%} zero weights{extra}")
    con.out("build or verify it as any model: zero channels are removed and sparse layers "
            "stored sparse where that is smaller and faster (docs/pruning.md)")
    return 0


def cmd_flash(args, con: Console) -> int:
    from .device.flash import flash
    return flash(args, con)


def cmd_verify(args, con: Console) -> int:
    _check_model_every(args)
    if getattr(args, "raw", None) and not getattr(args, "frontend", None):
        raise TinygenError("--raw needs --frontend FRONTEND.tflite (the raw samples go through "
                           "the front end to the model)")
    if getattr(args, "frontend", None):
        import tempfile
        with tempfile.TemporaryDirectory(prefix="tinygen-pipeline-") as tmp:
            info, frames = _join_frontend(args, con, Path(tmp))
            args.frontend = None
            from .convert.pipeline import ImageInfo
            if args.raw and isinstance(info, ImageInfo):
                import numpy as np

                from .data import read_raw_frames
                shots = read_raw_frames(args.raw, info.frame_width, info.frame_height,
                                        info.pixel_format, info.bytes_per_pixel)
                data = Path(tmp) / "raw_frames.npy"
                np.save(data, shots)
                con.progress(f"--raw: {len(shots)} frame(s) of {info.frame_width}x"
                             f"{info.frame_height} {info.pixel_format}")
                args.data, args.samples = str(data), len(shots)
            elif args.raw:
                from .data import read_raw_audio, stride_chunks
                clips = read_raw_audio(args.raw, info.sample_rate)
                chunks = stride_chunks(clips, info.stride_samples)
                import numpy as np
                data = Path(tmp) / "raw_strides.npy"
                np.save(data, chunks)
                con.progress(f"--raw: {len(clips)} clip(s), {sum(len(c) for c in clips):,} "
                             f"samples: {len(chunks)} strides of {info.stride_samples}")
                args.data, args.samples = str(data), len(chunks)
                starts = np.cumsum([0] + [-(-len(c) // info.stride_samples) for c in clips])
                args.clip_starts = [int(i) for i in starts[:-1]]
            args.pipeline, args.raw = (info, frames), None
            if not args.port:
                # per-operator counters (aot's own, TFLM's profiler hook): the
                # report splits the stride into the front end, the stacking and
                # the model
                args.profile = True
            return cmd_verify(args, con)
    from .data import clip_starts, model_turns
    every = getattr(args, "model_every", None) or 1
    with clip_starts(getattr(args, "clip_starts", None) or []), \
            model_turns(every if getattr(args, "pipeline", None) else 1):
        with _farm_places(args, con) as farm:
            outcome = _verify_call(args, con, farm)
        runs, reports, failed = outcome.runs, outcome.reports, outcome.failed
        # inside: the HTML report's device-vs-reference plots keep only the answers too
        return _verify_finish(args, con, outcome, runs, reports, failed)


def _farm_places(args, con: Console):
    """The labgrid places of --place/--place-tag, acquired for the block."""
    import contextlib
    if not (args.place or args.place_tag):
        return contextlib.nullcontext(None)
    if args.port:
        raise TinygenError("give boards with --port or with --place/--place-tag, not both")
    from .farm import acquire_places
    return acquire_places(args.place or [], args.place_tag or [], wait=args.place_wait,
                          progress=con.progress, warn=con.warn)


def _verify_call(args, con: Console, farm=None):
    from .report.text import VectorProgress
    from .verify import verify_model
    board_id = args.board
    if farm is not None and board_id is None:
        from .farm import board_of_places
        board_id = board_of_places(farm.board_tag)
    return verify_model(
        args.model, board_id=board_id, runtime=args.runtime,
        ports=farm.ports if farm is not None else args.port or [],
        places=farm.names if farm is not None else (), calib=args.calib, data=args.data,
        samples=args.samples, tolerance=args.tolerance,
        detection=args.detection, output=args.output, profile=args.profile,
        tflm_source=args.tflm_source, arena_bytes=args.arena_bytes,
        class_names=args.labels, force=args.force, accept_dense=args.accept_dense,
        float_model=args.float_model,
        min_agreement=None if args.min_agreement is None else args.min_agreement / 100,
        min_accuracy=None if args.min_accuracy is None else args.min_accuracy / 100,
        progress=con.progress, warn=con.warn,
        progress_bar=lambda n, labels: VectorProgress(n, labels, quiet=con.quiet,
                                                      steps=con.steps))


def _verify_finish(args, con: Console, outcome, runs, reports, failed) -> int:
    from .errors import VerificationFailed
    from .report.text import format_report
    html = getattr(args, "html", None)
    json_to_stdout = args.json == "-"
    con.done()
    human = sys.stderr if json_to_stdout else sys.stdout
    quiet_human = json_to_stdout and con.quiet
    for r in reports:
        if not quiet_human:
            print(format_report(r), file=human, flush=True)
    for r in failed:
        print(f"verify {outcome.board.id} over {r.label}: no verdict: {r.error}",
              file=sys.stderr, flush=True)
    if len(runs) > 1 and not quiet_human:
        exact = not failed and all(r.bit_exact for r in reports)
        notes = outcome.failures + outcome.warnings
        print(f"{'PASS' if outcome.passed else 'FAIL'}: {len(reports)} of {len(runs)} boards "
              "verified" + (", all bit-exact" if exact else "")
              + (f" ({'; '.join(notes)})" if notes else ""), file=human, flush=True)
    pipeline = getattr(args, "pipeline", None)
    if pipeline is not None:
        outcome.payload["pipeline"] = _pipeline_costs(pipeline, outcome,
                                                      getattr(args, "pipeline_parts", None),
                                                      getattr(args, "model_every", None) or 1)
        if not quiet_human:
            p = outcome.payload["pipeline"]
            if p.get("ms_per_frame") is not None:
                print(f"  pipeline: {p['instructions_per_frame']:,} instructions, "
                      f"{p['ms_per_frame']:.2f} ms per {p['frame_width']}x{p['frame_height']} "
                      f"frame at {p['clock_mhz']} MHz (estimate: one instruction per cycle)",
                      file=human, flush=True)
            if p.get("ms_per_stride") is not None:
                print(f"  pipeline: {p['ms_per_stride']:.2f} ms per {p['stride_ms']:g} ms stride "
                      f"at {p['clock_mhz']} MHz ({100 * p['realtime_fraction']:.1f}% of real "
                      "time; estimate: one instruction per cycle)", file=human, flush=True)
            if p.get("model_every"):
                print(f"  model every {p['model_every']} strides: the stride with the model "
                      f"{p.get('ms_worst_stride', 0):.2f} ms "
                      f"({100 * p.get('worst_realtime_fraction', 0):.1f}% of its stride); "
                      "answers compared at those strides", file=human, flush=True)
            for part, e in (p.get("parts") or {}).items():
                bits = []
                if "instructions" in e:
                    per = "frame" if p.get("frame_width") else "stride"
                    bits.append(f"{e['instructions']:,} instructions per {per}")
                for k, label in (("arena_bytes", "arena"), ("tflm_arena_bytes", "TFLM arena"),
                                 ("state_bytes", "state")):
                    if k in e:
                        bits.append(f"{label} {e[k]:,} B")
                if bits:
                    print(f"    {part}: {', '.join(bits)}", file=human, flush=True)
    if json_to_stdout:
        sys.stdout.write(json.dumps(outcome.payload, indent=2) + "\n")
        sys.stdout.flush()
    elif args.json:
        Path(args.json).write_text(json.dumps(outcome.payload, indent=2))
    if args.junit and reports:
        from .report.junit import write_junit
        write_junit(reports, Path(args.junit))
    if html:
        from .report.html import write_html
        from .verify import load_memory_plan
        con.progress(f"writing {html}")
        plan = load_memory_plan(outcome.project_dir, outcome.ir, outcome.runtime)
        write_html(Path(html), outcome.ir, runs, outcome.ref_outs, float_outs=outcome.float_outs,
                   memory_plan=plan, model_name=Path(args.model).name, board=outcome.board,
                   payload=outcome.payload)
        con.done()
        if not quiet_human:
            print(f"report: {html}", file=human, flush=True)
    if failed:
        raise TinygenError(f"{len(failed)} of {len(runs)} boards could not be verified: "
                           + "; ".join(f"{r.label}: {r.error}" for r in failed))
    if not outcome.passed:
        if outcome.failures and all(r.bit_exact or all(o.passed for o in r.outputs)
                                    for r in reports):
            raise VerificationFailed("; ".join(outcome.failures))
        raise VerificationFailed("device outputs differ from the reference beyond the tolerance")
    return 0


def _pipeline_costs(pipeline, outcome, parts, model_every: int = 1) -> dict:
    """The stride's budget: instructions per stride (front end, stacking and
    model together) at the board's clock against the stride's duration."""
    from .convert.pipeline import ImageInfo
    info, frames = pipeline
    lat = outcome.payload.get("latency") or {}
    if isinstance(info, ImageInfo):
        d = {"frame_width": info.frame_width, "frame_height": info.frame_height,
             "pixel_format": info.pixel_format, "clock_mhz": outcome.board.clock_mhz}
        instr = lat.get("instructions") if isinstance(lat, dict) else None
        if instr:
            d.update(instructions_per_frame=instr,
                     ms_per_frame=instr / (outcome.board.clock_mhz * 1000.0))
        d.update(_pipeline_split(parts, lat, outcome.runtime))
        return d
    stride_ms = 1000.0 * info.stride_samples / info.sample_rate
    d = {"sample_rate": info.sample_rate, "window_samples": info.window_samples,
         "stride_samples": info.stride_samples, "stride_ms": stride_ms, "frames": frames,
         "clock_mhz": outcome.board.clock_mhz}
    lat = outcome.payload.get("latency") or {}
    instr = lat.get("instructions") if isinstance(lat, dict) else None
    if instr and model_every > 1 and lat.get("mean"):
        instr = round(lat["mean"])     # strides differ: the model runs at some only
    if instr:
        ms = instr / (outcome.board.clock_mhz * 1000.0)
        d.update(instructions_per_stride=instr, ms_per_stride=ms,
                 realtime_fraction=ms / stride_ms)
    if model_every > 1:
        # the mean stride is what must keep up; the stride with the model
        # (the max) is what a buffer of stride samples must absorb
        d["model_every"] = model_every
        worst = lat.get("max") if isinstance(lat, dict) else None
        if worst:
            wms = worst / (outcome.board.clock_mhz * 1000.0)
            d.update(instructions_worst_stride=worst, ms_worst_stride=wms,
                     worst_realtime_fraction=wms / stride_ms)
    d.update(_pipeline_split(parts, lat, outcome.runtime))
    return d


def _pipeline_split(args_parts, lat, runtime: str) -> dict:
    """Instructions (from the per-operator counters, when the firmware has
    them) and RAM of the front end, the stacking and the model on their own."""
    from .convert.pipeline import pipeline_parts
    from .ir import parse_tflite
    if not args_parts:
        return {}
    fe_bytes, model_bytes, joined = args_parts
    meta = pipeline_parts(joined) or {}
    per_op = lat.get("per_op") if isinstance(lat, dict) else None
    parts: dict = {}
    for part in ("frontend", "model") if meta.get("image") else ("frontend", "stacking", "model"):
        rng = meta.get(f"{part}_ops")
        entry: dict = {}
        if per_op and rng:
            entry["instructions"] = round(sum(o["mean"] for o in per_op
                                              if rng[0] <= o["index"] < rng[1]))
        parts[part] = entry
    if runtime == "aot":
        from .plan.aot import plan_aot
        joined_calls, _ = plan_aot(parse_tflite(joined))
        rng = meta.get("stacking_ops") or [0, 0]
        if "stacking" in parts:
            parts["stacking"]["state_bytes"] = sum(
                c.state_bytes for i, c in enumerate(joined_calls) if rng[0] <= i < rng[1])
        for part, data in (("frontend", fe_bytes), ("model", model_bytes)):
            calls, plan = plan_aot(parse_tflite(data))
            parts[part]["arena_bytes"] = plan.arena_bytes
            parts[part]["state_bytes"] = sum(c.state_bytes for c in calls)
        parts["frontend"]["state_bytes"] += sum(
            c.state_bytes for c in joined_calls[:1])      # the framer's sample history
    else:
        from .analyze.analysis import zero_inputs
        from .reference import measure_arena
        for part, data in (("frontend", fe_bytes), ("model", model_bytes)):
            ir = parse_tflite(data)
            parts[part]["tflm_arena_bytes"] = measure_arena(data, zero_inputs(ir)).total
    return {"parts": parts}


# ---------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinygen",
        description="Turn a trained Keras model into verified microcontroller firmware: int8 "
                    "TFLite, TFLM glue or tinygen's ahead-of-time C, a PlatformIO project, and "
                    "hardware-in-the-loop verification over serial.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tinygen {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress messages")
    from .tools import model_update
    _add = sub.add_parser

    def add_parser(*a, **kw):
        return _add(*a, parents=[common], **kw)
    sub.add_parser = add_parser

    def tflm_args(sp):
        sp.add_argument("--tflm-source", metavar="DIR",
                        help="TFLM source tree made by TFLM's create_tflm_tree.py (CMSIS-NN or "
                             "reference kernels, detected from its files), compiled into the "
                             "project's lib/tflite-micro for STM32 and emulated boards with "
                             "--runtime tflm (default: $TINYGEN_TFLM_SOURCE; docs/tflm-source.md)")
        sp.add_argument("--arena-bytes", type=int, metavar="N",
                        help="tflm: reserve N bytes of tensor arena instead of the size tinygen "
                             "measures with TFLM's recording allocator plus a margin")

    def dense_arg(sp):
        sp.add_argument("--accept-dense", action="store_true",
                        help="build a model whose layers look pruned but hold no exact int8 "
                             "zeros (pruned, then quantized without the masks) as a dense "
                             "model instead of refusing it (docs/pruning.md)")

    def force_arg(sp):
        sp.add_argument("--force", action="store_true",
                        help="let -o DIR replace a project built for another board or model "
                             "(without it that is refused, never silently overwritten)")

    def frontend_arg(sp):
        sp.add_argument("--frontend", metavar="FRONTEND.tflite",
                        help="a front end (`tinygen frontend`) to put before the model: one "
                             "firmware that takes raw samples, a stride at a time, and gives each "
                             "frame's features and the model's answer (audio), or takes a camera "
                             "frame and gives the model's image and answer (--image front ends; "
                             "docs/frontend.md)")
        sp.add_argument("--model-every", type=int, metavar="N",
                        help="with an audio --frontend: run the model at every N-th stride only "
                             "(the front end and the stacker still take every frame; aot "
                             "runtime); verify compares the features every stride and the "
                             "answers at the strides that have them")

    def model_arg(sp):
        sp.add_argument("model", help="Keras .h5/.keras file, SavedModel directory or .tflite")

    def calib_arg(sp):
        sp.add_argument("--calib", metavar="FILE",
                        help="calibration inputs (.npy with shape [N, *input_shape], or .npz with "
                             "one array per input); without it synthetic data is used, loudly")
        sp.add_argument("--drop-nonfinite", action="store_true",
                        help="skip --calib/--data samples holding NaN or +-Inf (and say how "
                             "many); without it such samples are an error")
        sp.add_argument("--detection", metavar="JSON",
                        help="SSD detectors: anchors and TFLite_Detection_PostProcess options "
                             "to append to the model's box/class outputs (see examples/mobilenet_ssd/README.md)")

    sp = sub.add_parser("boards", help="list the boards tinygen knows",
                        description="List the boards in boards/: real boards (built with their "
                                    "official PlatformIO platform) and emulated ones (QEMU).")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_boards)

    sp = sub.add_parser("convert", help="Keras/SavedModel -> full-int8 .tflite + quantization report",
                        description="Quantize a model to full integer int8 (int8 input and output, "
                                    "builtin int8 ops only) with a representative dataset, and "
                                    "report float-vs-int8 error. A .tflite is checked and passed "
                                    "through.")
    model_arg(sp)
    sp.add_argument("-o", "--output", metavar="FILE", help="output .tflite (default MODEL.int8.tflite)")
    calib_arg(sp)
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser("frontend", help="write an audio or camera (--image) front end .tflite",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Write a sensor front end as a .tflite graph that runs before "
                                    "the model (build/verify --frontend) on --runtime tflm and on "
                                    "the tflite_micro interpreter, its reference; "
                                    "docs/frontend.md.\n\n"
                                    "audio (default): one window of int16 samples in, int8 "
                                    "log-mel features out, TFLM signal ops (Hann window, FFT, mel "
                                    "filter bank, noise reduction, PCAN, log).\n\n"
                                    "--image: one camera frame (uint8 bytes as the driver gives "
                                    "them) in, the model's int8 image out, builtin ops (crop, "
                                    "resize, RGB565 unpacking, colour mix, requantization).",
                        epilog="examples:\n"
                               "  tinygen frontend -o mic.tflite --channels 40\n"
                               "  tinygen frontend --image --frame 160x120 --format rgb565 "
                               "--model detector.int8.tflite -o cam.tflite\n"
                               "  tinygen frontend --image --frame 320x240 --format grayscale "
                               "--size 96x96 --crop 40,0,240,240 --resize nearest")
    sp.add_argument("-o", "--output", metavar="FILE", default="frontend.tflite",
                    help="output .tflite (default frontend.tflite)")
    au = sp.add_argument_group("audio front end")
    au.add_argument("--sample-rate", type=int, metavar="HZ", help="(default 16000)")
    au.add_argument("--window-ms", type=float, metavar="MS",
                    help="samples per window, in ms (default 30)")
    au.add_argument("--stride-ms", type=float, metavar="MS",
                    help="hop between windows, in ms (default 20)")
    au.add_argument("--channels", type=int, metavar="N",
                    help="mel channels = features per frame (default 40)")
    au.add_argument("--lower-hz", type=float, metavar="HZ", help="(default 125)")
    au.add_argument("--upper-hz", type=float, metavar="HZ", help="(default 7500)")
    au.add_argument("--no-noise-reduction", action="store_true",
                    help="leave out SignalFilterBankSpectralSubtraction (and so PCAN)")
    au.add_argument("--no-pcan", action="store_true",
                    help="leave out SignalPCAN (per-channel amplitude normalization)")
    im = sp.add_argument_group("camera front end (--image)")
    im.add_argument("--image", action="store_true",
                    help="write a camera front end instead of an audio one")
    im.add_argument("--frame", metavar="WxH",
                    help="the camera's frame size in pixels (default 160x120, QQVGA)")
    im.add_argument("--format", choices=("grayscale", "rgb888", "rgb565"), default="grayscale",
                    help="the frame's pixels: grayscale (1 byte), rgb888 (3 bytes R, G, B) or "
                         "rgb565 (2 bytes, high byte first, as esp32-camera gives it); "
                         "default grayscale")
    im.add_argument("--size", metavar="WxH",
                    help="the model's image size (default: --model's input, else 96x96)")
    im.add_argument("--out-channels", type=int, choices=(1, 3),
                    help="1: grayscale (BT.601 luma from colour frames), 3: RGB (gray frames "
                         "repeated); default: --model's input, else 1")
    im.add_argument("--crop", metavar="X,Y,W,H",
                    help="the part of the frame to use (default: the largest centred box of the "
                         "output's aspect)")
    im.add_argument("--resize", choices=("bilinear", "nearest"), default="bilinear",
                    help="crop -> output size (default bilinear; nearest is cheaper)")
    im.add_argument("--pixel-scale", type=float, default=1.0 / 255.0, metavar="S",
                    help="what one pixel step meant to the model in training (default 1/255: "
                         "images in [0, 1])")
    im.add_argument("--pixel-zero-point", type=int, default=0, metavar="P",
                    help="the pixel value that meant 0.0 (default 0; 128 with --pixel-scale "
                         "0.0078125 for images in [-1, 1])")
    im.add_argument("--model", metavar="MODEL.tflite",
                    help="take --size, --out-channels, --out-scale and --out-zero-point from "
                         "this int8 model's input")
    sp.add_argument("--out-scale", type=float, metavar="S",
                    help="output scale (audio: in the microfrontend's unit, log energy x 10/256, "
                         "default 26/255; image: default --model's or 1/255)")
    sp.add_argument("--out-zero-point", type=int, metavar="ZP",
                    help="output zero point (default -128, or --model's)")
    sp.set_defaults(func=cmd_frontend)

    sp = sub.add_parser("inspect", help="ops, runtime support, MACs, sizes, fit", **SIZES_HELP,
                        description="Show each op with its TFLM resolver method and runtime support, "
                                    "parameters, weights+biases and MACs, the TFLM arena measured with the "
                                    "recording allocator, and with --board whether it fits.")
    model_arg(sp)
    calib_arg(sp)
    sp.add_argument("--board", help="check the fit against this board (see `tinygen boards`)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("build", help="generate (and for emulated boards compile) a PlatformIO project",
                        **SIZES_HELP,
                        description="Convert the model if needed, check it runs and fits, and write a "
                                    "complete PlatformIO project to -o DIR (atomically). Emulated "
                                    "boards are compiled offline; real boards are compiled when "
                                    "PlatformIO can fetch their platform.")
    model_arg(sp)
    sp.add_argument("--board", help="board id (default: qemu-stm32f405, emulated)")
    calib_arg(sp)
    sp.add_argument("--runtime", choices=["aot", "tflm"],
                    help="aot: tinygen's generated C; tflm: TensorFlow Lite Micro (default: the board's)")
    sp.add_argument("-o", "--output", metavar="DIR", help="project directory (default tinygen-out/MODEL-BOARD)")
    tflm_args(sp)
    sp.add_argument("--no-compile", action="store_true", help="render the project only")
    sp.add_argument("--name", default="model", metavar="NAME",
                    help="C name of the model: its API is NAME_init(), NAME_invoke(), ... in "
                         "NAME.h (default: model; docs/api.md)")
    sp.add_argument("--firmware", choices=["app", "protocol"], default="app",
                    help="app (default): a main that reads an input, runs the model and prints "
                         "the result and its time, for your code to take over; protocol: the "
                         "serial-protocol firmware `tinygen verify --port` talks to")
    sp.add_argument("--add", action="append", metavar="NAME=MODEL[,CALIB]",
                    help="link a further model into the same image with its own API "
                         "(NAME_init(), ...); repeatable (docs/api.md)")
    force_arg(sp)
    dense_arg(sp)
    sp.add_argument("--profile", action="store_true",
                    help="time every operator on the device (read back by `tinygen verify`; "
                         "adds two counter reads per operator; tflm: through TFLM's profiler "
                         "hook)")
    frontend_arg(sp)
    model_update.add_build_args(sp)
    sp.set_defaults(func=cmd_build)

    sp = sub.add_parser("export", help="the model as a library: plain C, Arduino, ESP-IDF",
                        description="Write only the model library, with its prefixed C API "
                                    "(docs/api.md), for your own firmware: --format c (a folder "
                                    "with a Makefile and a CMakeLists.txt), arduino (an Arduino "
                                    "library with an example sketch) or esp-idf (an ESP-IDF "
                                    "component with an example project).")
    model_arg(sp)
    sp.add_argument("--format", required=True, choices=["c", "arduino", "esp-idf"])
    calib_arg(sp)
    sp.add_argument("--runtime", choices=["aot", "tflm"],
                    help="aot: tinygen's generated C; tflm: TFLM glue for the platform's TFLM "
                         "library (esp-tflite-micro, an Arduino TFLM library); default: aot, "
                         "or the --board's default runtime")
    sp.add_argument("--board", help="pick kernels for this board and check the model fits "
                                    "(default: portable C kernels, no fit check)")
    sp.add_argument("--name", default="model", metavar="NAME",
                    help="C name of the model: NAME_init(), ... in NAME.h (default: model)")
    sp.add_argument("--add", action="append", metavar="NAME=MODEL[,CALIB]",
                    help="one more model in the same library; repeatable")
    sp.add_argument("-o", "--output", metavar="DIR",
                    help="output directory (default tinygen-out/NAME-FORMAT)")
    force_arg(sp)
    dense_arg(sp)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("prune", help="magnitude pruning with fine-tuning (structured or not)",
                        description="Prune a Keras model by weight magnitude while fine-tuning "
                                    "it on labelled data, and report accuracy before and after. "
                                    "Unstructured pruning zeroes single weights; --structured "
                                    "zeroes whole output channels, which `tinygen build` then "
                                    "removes from the model. See docs/pruning.md.")
    model_arg(sp)
    sp.add_argument("--sparsity", type=float, required=True, metavar="F",
                    help="share of weights (or with --structured, of channels) to zero, e.g. 0.75")
    sp.add_argument("--structured", action="store_true",
                    help="prune whole output channels of Conv2D/Dense layers (with the batch "
                         "normalization and depthwise channels that carry them)")
    sp.add_argument("--data", required=True, metavar="FILE",
                    help="labelled training data: a .npz with x and y, or inputs .npy with a "
                         "labels .npy beside it (docs/data.md)")
    sp.add_argument("--test", metavar="FILE",
                    help="labelled held-out data for the accuracy report (default: --data)")
    sp.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs (default 20)")
    sp.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR",
                    help="Adam learning rate for fine-tuning (default 1e-3)")
    sp.add_argument("-o", "--output", metavar="FILE",
                    help="pruned model (default MODEL.pruned.h5, MODEL.channels.h5 with "
                         "--structured)")
    sp.add_argument("--drop-nonfinite", action="store_true",
                    help="skip samples holding NaN or +-Inf (and say how many)")
    sp.set_defaults(func=cmd_prune)

    sp = sub.add_parser("flash", help="put a built project on its board (QEMU for emulated boards)",
                        description="Real boards: `pio run -t upload`. Emulated boards: start QEMU with "
                                    "the firmware and its UART on a free loopback port, and keep it "
                                    "running until Ctrl-C.")
    sp.add_argument("--board", help="board id (default: the project's)")
    sp.add_argument("--port", help="upload port for real boards")
    sp.add_argument("-o", "--output", metavar="DIR", required=True, help="the built project directory")
    sp.set_defaults(func=cmd_flash)

    model_update.add_commands(sub)

    sp = sub.add_parser("verify", help="run the same inputs on the device and on TFLM, compare",
                        **SIZES_HELP,
                        description="Build if needed, then run every input vector on the device over "
                                    "the serial protocol and on the tflite_micro reference, and "
                                    "report per-output agreement, latency and memory. Emulated "
                                    "boards are started and stopped automatically.")
    model_arg(sp)
    sp.add_argument("--board", help="board id (default: qemu-stm32f405, emulated)")
    sp.add_argument("--port", action="append", metavar="URL",
                    help="serial port or pyserial URL of a flashed board (/dev/ttyUSB0, "
                         "socket://host:port, rfc2217://host:port); give it several times to "
                         "verify several boards at once (one combined report)")
    sp.add_argument("--place", action="append", metavar="NAME",
                    help="a labgrid place to acquire and verify (repeatable; the coordinator "
                         "is $LG_COORDINATOR); docs/board-farm.md")
    sp.add_argument("--place-tag", action="append", metavar="KEY=VALUE",
                    help="acquire and verify every labgrid place carrying this tag "
                         "(e.g. board=qemu-stm32f405; repeat to require several tags)")
    sp.add_argument("--place-wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to SECONDS for places other jobs hold (labgrid "
                         "reservations); default 0: fail at once naming the holder")
    calib_arg(sp)
    sp.add_argument("--runtime", choices=["aot", "tflm"],
                    help="aot: tinygen's generated C; tflm: TensorFlow Lite Micro (default: the board's)")
    tflm_args(sp)
    group = sp.add_mutually_exclusive_group()
    group.add_argument("--samples", type=int, default=None, metavar="N",
                       help="number of input vectors (default 10; from --data or --calib, else random)")
    group.add_argument("--data", metavar="FILE|DIR",
                       help="test inputs (.npy/.npz, float or int8), with labels for accuracy: "
                            "a .npz holding x and y, a labels .npy beside the inputs "
                            "(test_x.npy + test_y.npy, or X_labels.npy), or a folder of one "
                            ".npy per class named after it (yes.npy, no.npy); docs/data.md")
    sp.add_argument("--labels", metavar="NAMES.TXT",
                    help="class names, one per line in class-index order, for the accuracy "
                         "report and confusion matrix (default: labels.txt beside --data)")
    sp.add_argument("--float-model", metavar="FILE",
                    help="the float model an int8 .tflite was quantized from (a float .tflite, "
                         "Keras .h5/.keras or SavedModel): run on the same inputs for the float "
                         "level of agreement and accuracy (a Keras source is its own); for a "
                         "detector, a float .tflite ending in TFLite_Detection_PostProcess gives "
                         "the float mAP@0.5 level")
    sp.add_argument("--min-accuracy", type=float, metavar="PCT",
                    help="fail when a device's top-1 accuracy on the --data labels (a "
                         "detector's mAP@0.5 on its ground-truth boxes) is below PCT percent")
    sp.add_argument("--min-agreement", type=float, metavar="PCT",
                    help="fail when the float model and the int8 model agree on the top-1 "
                         "class for fewer than PCT percent of the vectors (without it, below "
                         "90%% is a warning in the verdict)")
    sp.add_argument("--tolerance", type=int, default=None, metavar="LSB",
                    help="max allowed |device - reference| in LSB (default 0: bit-exact)")
    sp.add_argument("--json", metavar="FILE",
                    help="write the report as JSON; `--json -` prints it to stdout (the "
                         "human-readable summary then goes to stderr)")
    sp.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    sp.add_argument("--html", metavar="FILE",
                    help="write a self-contained HTML report with plots (error histograms, "
                         "device vs reference, float vs int8 top-1, latency, memory plan, "
                         "per-op times); see docs/reports.md")
    sp.add_argument("--profile", action="store_true",
                    help="build the firmware with per-operator timing (emulated boards "
                         "built here; flashed boards need `tinygen build --profile`)")
    sp.add_argument("-o", "--output", metavar="DIR",
                    help="project directory (default tinygen-out/MODEL-BOARD-verify)")
    force_arg(sp)
    dense_arg(sp)
    frontend_arg(sp)
    sp.add_argument("--raw", metavar="FILE",
                    help="with --frontend: raw audio to stream through the pipeline, a .wav "
                         "(mono, 16-bit, the front end's rate) or a .npy of int16 samples "
                         "([N] or [clips, N]), every stride a vector; with a camera front end, "
                         "frames: a .npy of uint8 [N, H, W, C] or [H, W, C] (the bytes as the "
                         "camera gives them) or a binary .pgm/.ppm (packed to RGB565 for an "
                         "RGB565 front end), every frame a vector")
    sp.set_defaults(func=cmd_verify)
    add_farm_parser(sub, model_arg, calib_arg, force_arg)
    return p


def add_farm_parser(sub, model_arg, calib_arg, force_arg) -> None:
    sp = sub.add_parser("farm", help="a labgrid board farm of emulated boards (up, down, status)",
                        description="Boot emulated boards running a model's firmware and serve "
                                    "them as labgrid places, for `tinygen verify --place` and "
                                    "any labgrid client (docs/board-farm.md).")
    fsub = sp.add_subparsers(dest="farm_command", metavar="ACTION", required=True)
    up = fsub.add_parser("up", help="build, boot N boards, export them as places B-1..B-N",
                         description="Build MODEL for BOARD, boot COUNT emulated boards with it, "
                                     "start a labgrid coordinator on loopback (unless "
                                     "LG_COORDINATOR names one), export the boards' UARTs with "
                                     "labgrid-exporter and create places BOARD-1..BOARD-COUNT "
                                     "tagged board=BOARD. Prints `export LG_COORDINATOR=...` "
                                     "for eval.")
    model_arg(up)
    up.add_argument("--board", required=True, help="an emulated board id (tinygen boards)")
    up.add_argument("--count", type=int, default=1, metavar="N", help="boards to boot (default 1)")
    calib_arg(up)
    up.add_argument("--runtime", choices=["aot", "tflm"])
    up.add_argument("--tflm-source", metavar="DIR", help="as for `tinygen build`")
    up.add_argument("-o", "--output", metavar="DIR", help="project directory")
    up.add_argument("--prefix", metavar="NAME", help="place names NAME-1.. (default: the board id)")
    force_arg(up)
    down = fsub.add_parser("down", help="stop what `farm up` started (and nothing else)")
    status = fsub.add_parser("status", help="the farm's places, boards and coordinator")
    for action in (up, down, status):
        action.add_argument("--dir", default="tinygen-farm", metavar="DIR",
                            help="the farm's folder: state, exporter config, log "
                                 "(default ./tinygen-farm)")
    sp.set_defaults(func=cmd_farm)


def cmd_farm(args, con: Console) -> int:
    from .farm.control import farm_down, farm_up, running_farm
    farm_dir = Path(args.dir)
    if args.farm_command == "up":
        state = farm_up(args.model, board_id=args.board, count=args.count, farm_dir=farm_dir,
                        runtime=args.runtime, calib=args.calib, output=args.output,
                        prefix=args.prefix, force=args.force, tflm_source=args.tflm_source,
                        progress=con.progress)
        for p in state.places:
            print(f"place {p['name']}: {state.board} at {p['url']}", file=sys.stderr)
        print(f"farm up in {state.directory} (stop it with `tinygen farm down --dir "
              f"{args.dir}`)", file=sys.stderr)
        con.out(f"export LG_COORDINATOR={state.coordinator}")
        return 0
    if args.farm_command == "down":
        state = farm_down(farm_dir)
        con.out(f"farm in {farm_dir.resolve()} stopped ({len(state.get('places', []))} boards)")
        return 0
    live = running_farm(farm_dir.resolve())
    if live is None:
        raise TinygenError(f"no farm is running in {farm_dir.resolve()}")
    con.out(f"coordinator {live['coordinator']}, {live['board']}, daemon pid {live['pid']}")
    for p in live["places"]:
        con.out(f"  {p['name']}: {p['url']} (QEMU pid {p['qemu_pid']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    con = Console(quiet=args.quiet)
    from .data import sample_policy
    try:
        with sample_policy(drop_nonfinite=getattr(args, "drop_nonfinite", False), note=con.warn):
            return args.func(args, con)
    except TinygenError as exc:
        con.done()
        print(f"tinygen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        con.done()
        print("tinygen: interrupted", file=sys.stderr)
        return 130
    finally:
        con.done()


if __name__ == "__main__":
    sys.exit(main())
