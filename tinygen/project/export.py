"""`tinygen export`: the model library alone, for the user's own firmware.

Three layouts of the same sources (the prefixed API of docs/api.md, the
protocol binding left out, so nothing but the models' own symbols is global):

* ``c``: ``src/`` with a ``Makefile`` (a static library, ``CROSS_COMPILE=``
  for a cross compiler) and a ``CMakeLists.txt`` (``add_subdirectory``), and
  ``example/main.c``, a hosted program running each model once;
* ``arduino``: an Arduino library (``library.properties``, ``src/``,
  ``keywords.txt``, ``examples/<lib>_example/<lib>_example.ino``);
* ``esp-idf``: an ESP-IDF component (``CMakeLists.txt`` with
  ``idf_component_register``, ``idf_component.yml``; tflm depends on
  ``espressif/esp-tflite-micro``) with an example project in ``examples/``.

The tflm runtime's glue expects the TFLM library of the platform (Arduino TFLM
library, esp-tflite-micro, or a TFLM built by its own Makefile) to bring
DebugLog and the timer, so it gets ``tg_tflm_nolog.cc`` instead of
tinygen's target file.  Written in a staging folder and moved into place when
complete, as `build` does.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import __version__
from ..analyze import fit as fitmod
from ..analyze.analysis import analyze, require_fit
from ..boards import get_board
from ..codegen.api import DEFAULT_NAME, check_names
from ..codegen.render import render_to
from ..convert import convert
from ..errors import TinygenError
from ..load import load_model
from ..paths import TEMPLATES_DIR
from ..prune.channels import remove_channels
from .build import MANIFEST, _check_destination, _publish, check_lost_zeros, example_input

FORMATS = ("c", "arduino", "esp-idf")
_TITLES = {"c": "plain C library", "arduino": "Arduino library", "esp-idf": "ESP-IDF component"}


@dataclass
class ExportResult:
    out_dir: Path
    fmt: str
    runtime: str
    names: list[str]
    files: list[str] = field(default_factory=list)      # relative to out_dir
    arena_bytes: dict[str, int] = field(default_factory=dict)


def default_export_dir(name: str, fmt: str) -> Path:
    return Path("tinygen-out") / f"{name}-{fmt}"


def export(model_path: str | Path, fmt: str, out_dir: str | Path | None = None, *,
           runtime: str | None = None, name: str = DEFAULT_NAME,
           calib: str | Path | None = None, board_id: str | None = None,
           more_models: Sequence[tuple[str, str | Path, str | Path | None]] = (),
           detection: str | Path | None = None, force: bool = False,
           progress: Callable[[str], None] | None = None,
           warn: Callable[[str], None] | None = None,
           accept_dense: bool = False) -> ExportResult:
    """Write the model library for `fmt`; `board_id` picks the kernels (the
    aot dsp kernels for a Cortex-M4/M7 board) and checks the fit, else the
    portable kernels are used and no board is assumed."""
    note = progress or (lambda _m: None)
    if fmt not in FORMATS:
        raise TinygenError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    names = check_names([name] + [m[0] for m in more_models])
    board = get_board(board_id) if board_id else None
    runtime = runtime or (board.default_runtime if board else "aot")
    if runtime not in ("aot", "tflm"):
        raise TinygenError(f"--runtime {runtime!r}: choose aot or tflm")
    if board is not None and runtime not in board.runtimes:
        raise TinygenError(f"board {board.id} does not offer the {runtime} runtime "
                           f"(it has: {', '.join(board.runtimes)})")
    model_path = Path(model_path)
    out = Path(out_dir) if out_dir else default_export_dir(name, fmt)
    _check_destination(out, None, model_path, force)

    models = []
    for i, (n, path, cal) in enumerate([(name, model_path, calib)] + list(more_models)):
        note(f"loading {path}")
        conv = convert(load_model(path), Path(cal) if cal else None, progress=note,
                       detection=Path(detection) if detection and i == 0 else None)
        for w in (conv.report.warnings if conv.report is not None else []):
            (warn or note)(w)
        check_lost_zeros(conv.ir, accept_dense)
        smaller, channels = remove_channels(conv.ir)
        if channels.removed:
            note(f"pruned channels: {channels.summary()}")
            conv = dataclasses.replace(conv, ir=smaller, tflite=smaller.tflite)
        analysis = analyze(conv.ir, board)
        in_psram = False
        if board is not None:
            in_psram = bool(require_fit(analysis, board, runtime).get("arena_in_psram"))
        models.append((n, Path(path), cal, conv, analysis, in_psram))

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tinygen-tmp",
                                    dir=out.parent))
    try:
        result = _write(staging, fmt, runtime, board, models, names, note)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out_dir = out
    return result


def _write(root: Path, fmt: str, runtime: str, board, models, names, note) -> ExportResult:
    from ..codegen.app import MAX_PRINTED_VALUES, AppModel, app_row, write_example_input
    src = root / "src"
    src.mkdir()
    result = ExportResult(out_dir=root, fmt=fmt, runtime=runtime, names=list(names))
    rows = []
    note(f"generating the {runtime} runtime sources")
    for n, path, cal, conv, analysis, in_psram in models:
        ir = conv.ir
        if runtime == "aot":
            from ..codegen.aot import generate_aot
            aot = generate_aot(ir, src, board=board.id if board else "host", name=n,
                               protocol_binding=False)
            arena = aot.arena_bytes
        else:
            from ..codegen.tflm import generate_tflm
            measured = analysis.tflm_arena["total"]
            arena = fitmod.tflm_arena_with_margin(measured)
            generate_tflm(ir, path.name, board.id if board else "any board", measured, arena,
                          in_psram, src, name=n, protocol_binding=False)
        result.arena_bytes[n] = arena
        (root / f"{n}.tflite").write_bytes(ir.tflite)
        sample, how = example_input(ir, Path(cal) if cal else None)
        app = AppModel(n, ir, sample, how)
        rows.append(dict(app_row(app), source=path.name, signature=ir.signature,
                         arena_bytes=arena, app=app))
    shutil.copy2(TEMPLATES_DIR / "common" / "tg_model_api.h", src / "tg_model_api.h")
    if runtime == "tflm":
        for f in ("tg_tflm_target.h", "tg_tflm_nolog.cc"):
            shutil.copy2(TEMPLATES_DIR / "tflm" / f, src / f)
    c_sources = sorted(p.name for p in src.iterdir() if p.suffix == ".c")
    cxx_sources = sorted(p.name for p in src.iterdir() if p.suffix == ".cc")
    lib = names[0]
    ctx = dict(version=__version__, lib=lib, lib_version=__version__, runtime=runtime,
               models=rows, model_list=", ".join(names), c_sources=c_sources,
               cxx_sources=cxx_sources, max_values=MAX_PRINTED_VALUES,
               board=board.id if board else "", format_title=_TITLES[fmt])
    layout, build_text = _LAYOUTS[fmt](root, ctx, rows, write_example_input)
    render_to("export/README.md.j2", root / "README.md",
              dict(ctx, layout=layout, build_text=build_text))
    manifest = {"tinygen_version": __version__, "export": fmt, "runtime": runtime,
                "board": board.id if board else None, "model_path": str(models[0][1].resolve()),
                "models": [{"name": r["name"], "model": r["source"], "signature": r["signature"],
                            "arena_bytes": r["arena_bytes"]} for r in rows]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    result.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return result


def _layout_c(root: Path, ctx: dict, rows, write_example_input):
    example = root / "example"
    example.mkdir()
    for r in rows:
        write_example_input(r["app"], example)
    render_to("export/example_main.c.j2", example / "main.c", dict(ctx, entry="main"))
    render_to("export/Makefile.j2", root / "Makefile", dict(ctx, models=[r["name"] for r in rows]))
    render_to("export/CMakeLists.txt.j2", root / "CMakeLists.txt",
              dict(ctx, models=[r["name"] for r in rows]))
    lib = ctx["lib"]
    layout = [("Makefile", f"`make` builds `build/lib{lib}.a` (`CROSS_COMPILE=arm-none-eabi-` "
               "and `CFLAGS=` for your target); `make example` a host program"),
              ("CMakeLists.txt", f"`add_subdirectory()` it and link `{lib}`"),
              ("example/main.c", "runs each model once on its example input and prints the "
               "outputs (`example/*_example_input.c`)"),
              ("*.tflite, tinygen.json", "the int8 model(s) the code was generated from; "
               "what tinygen decided")]
    tflm = ctx["runtime"] == "tflm"
    text = (f"```\nmake{' TFLM_DIR=path/to/tflm-tree' if tflm else ''}"
            f"                     # build/lib{lib}.a with cc\n"
            f"make CROSS_COMPILE=arm-none-eabi- CFLAGS=\"-mcpu=cortex-m4 -mthumb -O2\"\n"
            f"cmake -S . -B build-cmake && cmake --build build-cmake\n```\n\n"
            f"Then include `{rows[0]['name']}.h` and link `lib{lib}.a`"
            + (" and your TensorFlow Lite Micro library (for instance "
               "`libtensorflow-microlite.a` from TFLM's Makefile)." if tflm else "."))
    return layout, text


def _layout_arduino(root: Path, ctx: dict, rows, write_example_input):
    lib = ctx["lib"]
    render_to("export/library.properties.j2", root / "library.properties", ctx)
    render_to("export/keywords.txt.j2", root / "keywords.txt", ctx)
    sketch = root / "examples" / f"{lib}_example"
    sketch.mkdir(parents=True)
    for r in rows:
        write_example_input(r["app"], sketch)
    render_to("export/example.ino.j2", sketch / f"{lib}_example.ino", ctx)
    extras = root / "extras"
    extras.mkdir()
    for f in list(root.glob("*.tflite")):
        f.rename(extras / f.name)
    layout = [("library.properties", "the library's name, version and headers"),
              ("keywords.txt", "syntax colouring of the API in the Arduino IDE"),
              (f"examples/{lib}_example/", "a sketch running the model(s) every second on an "
               "example input, printing outputs and time on Serial (115200 baud)"),
              ("extras/", "the int8 model(s) the code was generated from")]
    text = ("Copy this folder into your Arduino `libraries/` folder (or "
            "`lib/` of a PlatformIO project), then open File > Examples > "
            f"{lib} > {lib}_example, or `#include <{rows[0]['name']}.h>` in your sketch.")
    if ctx["runtime"] == "tflm":
        text += ("\n\nThe tflm runtime needs a TensorFlow Lite Micro Arduino library for your "
                 "board that provides the `tensorflow/lite/micro/...` headers, `DebugLog` and "
                 "the timer; install it beside this one.")
    return layout, text


def _layout_esp_idf(root: Path, ctx: dict, rows, write_example_input):
    lib = ctx["lib"]
    render_to("export/esp_component_cmakelists.txt.j2", root / "CMakeLists.txt", ctx)
    render_to("export/idf_component.yml.j2", root / "idf_component.yml", ctx)
    proj = root / "examples" / f"{lib}_example"
    main = proj / "main"
    main.mkdir(parents=True)
    for r in rows:
        write_example_input(r["app"], main)
    render_to("export/esp_example/project_cmakelists.txt.j2", proj / "CMakeLists.txt", ctx)
    render_to("export/esp_example/main_cmakelists.txt.j2", main / "CMakeLists.txt", ctx)
    render_to("export/esp_example/main_idf_component.yml.j2", main / "idf_component.yml", ctx)
    render_to("export/example_main.c.j2", main / "main.c", dict(ctx, entry="esp_idf"))
    layout = [("CMakeLists.txt", "`idf_component_register` of the sources in `src/`"),
              ("idf_component.yml", "version and dependencies"
               + (" (`espressif/esp-tflite-micro`)" if ctx["runtime"] == "tflm" else "")),
              (f"examples/{lib}_example/", "an ESP-IDF project depending on this component by "
               "path: runs each model once and prints the outputs"),
              ("*.tflite, tinygen.json", "the int8 model(s) the code was generated from")]
    text = (f"Put this folder in your project's `components/{lib}/`, or depend on it from "
            f"`main/idf_component.yml` (`{lib}: {{path: ...}}`), and `#include "
            f"\"{rows[0]['name']}.h\"`. The example: `cd examples/{lib}_example && idf.py "
            "set-target esp32 && idf.py build flash monitor`.")
    return layout, text


_LAYOUTS = {"c": _layout_c, "arduino": _layout_arduino, "esp-idf": _layout_esp_idf}
