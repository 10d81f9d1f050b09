"""The application a `tinygen build` project gets by default.

`app_main.c` (`.cpp` on Arduino cores, whose `setup`/`loop` have C++
linkage) calls each model through its prefixed API the way a user's firmware
would: init once, then per round read the input, invoke, print the output and
the time.  The input comes from `<name>_example_input.c`, one real sample
(the first of --calib when given) so that the first run prints something
meaningful; `read_input()` is where the user's sensor code replaces it.
A camera pipeline (`--frontend` with an image front end) on a board with a
camera ([camera] in its board file) reads its frames from the camera through
esp32-camera instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..ir import Model
from .api import check_names
from .render import render_to

# Values of each output printed per round (all of them for small outputs).
MAX_PRINTED_VALUES = 64

# Entry points: what the framework calls first.
ENTRY_MAIN, ENTRY_ARDUINO, ENTRY_ESP_IDF = "main", "arduino", "esp_idf"


# esp32-camera's framesize_t for the frame sizes a front end may take
# (esp32-camera/driver/include/sensor.h)
FRAME_SIZES = {(96, 96): "FRAMESIZE_96X96", (160, 120): "FRAMESIZE_QQVGA",
               (176, 144): "FRAMESIZE_QCIF", (240, 176): "FRAMESIZE_HQVGA",
               (240, 240): "FRAMESIZE_240X240", (320, 240): "FRAMESIZE_QVGA",
               (400, 296): "FRAMESIZE_CIF", (480, 320): "FRAMESIZE_HVGA",
               (640, 480): "FRAMESIZE_VGA", (800, 600): "FRAMESIZE_SVGA"}
PIXEL_FORMATS = {"grayscale": "PIXFORMAT_GRAYSCALE", "rgb565": "PIXFORMAT_RGB565",
                 "rgb888": "PIXFORMAT_RGB888"}


@dataclass
class Camera:
    """The board's camera feeding a camera pipeline's frames (esp32-camera)."""
    width: int
    height: int
    pixel_format: str             # grayscale | rgb565 | rgb888
    pins: dict
    xclk_hz: int


@dataclass
class AppModel:
    name: str
    model: Model
    sample: list[np.ndarray]      # one array per input, the input tensor's dtype and shape
    sample_note: str              # where the sample came from, said in the generated C
    camera: Camera | None = None  # frames from the board's camera instead of the sample
    answer_from: int = 0          # first output that is the answer (a pipeline's 0 is its image)


def camera_for(width: int, height: int, pixel_format: str, board_id: str,
               board_camera: dict) -> Camera:
    """The camera settings giving a front end's frames; TinygenError in one line
    when the board's camera cannot give them."""
    from ..errors import TinygenError
    sizes = ", ".join(f"{w}x{h}" for w, h in FRAME_SIZES)
    if (width, height) not in FRAME_SIZES:
        raise TinygenError(f"the front end takes {width}x{height} frames; {board_id}'s camera "
                           f"(esp32-camera) gives {sizes}: make the front end with --frame one "
                           "of these (its --crop and --size pick the model's part)")
    formats = tuple(board_camera["pixel_formats"])
    if pixel_format not in formats:
        raise TinygenError(f"the front end takes {pixel_format} frames; {board_id}'s "
                           f"{board_camera['sensor']} gives {' or '.join(formats)}: make the "
                           "front end with --format " + formats[-1])
    return Camera(width, height, pixel_format, dict(board_camera["pins"]),
                  int(board_camera["xclk_hz"]))


def _is_classifier(model: Model, index: int = 0) -> bool:
    """Output `index` is a score vector: [N] or [1, N] with N >= 2, quantized int8."""
    if index >= len(model.outputs):
        return False
    t = model.output_tensors()[index]
    dims = [int(d) for d in t.shape]
    vector = (len(dims) == 1 and dims[0] >= 2) or (len(dims) == 2 and dims[0] == 1
                                                    and dims[1] >= 2)
    # the scores buffer lives in RAM: bounded so the app fits where the model does
    return vector and t.dtype == "int8" and bool(t.quant) and dims[-1] <= 1024


def _bytes_literal(data: bytes, per_line: int = 16) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + per_line])
            for i in range(0, len(data), per_line)]
    return ",\n  ".join(rows) or "0"


def write_example_input(m: AppModel, out_dir: Path) -> list[Path]:
    """`<name>_example_input.c/.h`: the sample's bytes, one array per input."""
    inputs = []
    for t, x in zip(m.model.input_tensors(), m.sample):
        raw = np.ascontiguousarray(x).tobytes()
        if len(raw) != t.nbytes:
            raise ValueError(f"example input for {t.name}: {len(raw)} bytes, tensor has {t.nbytes}")
        inputs.append({"bytes": t.nbytes, "literal": _bytes_literal(raw)})
    ctx = dict(version=__version__, name=m.name, NAME=m.name.upper(), sample=m.sample_note,
               inputs=inputs)
    return [render_to("app/example_input.h.j2", out_dir / f"{m.name}_example_input.h", ctx),
            render_to("app/example_input.c.j2", out_dir / f"{m.name}_example_input.c", ctx)]


def app_row(m: AppModel) -> dict:
    """What the app and example templates print for one model."""
    cam = None
    if m.camera is not None:
        c = m.camera
        cam = {"width": c.width, "height": c.height, "pins": c.pins, "xclk_hz": c.xclk_hz,
               "framesize": FRAME_SIZES[(c.width, c.height)],
               "pixformat": PIXEL_FORMATS[c.pixel_format], "format": c.pixel_format}
    return {"name": m.name, "NAME": m.name.upper(), "sample": m.sample_note,
            "inputs": list(range(len(m.model.input_tensors()))),
            "outputs": list(range(m.answer_from, len(m.model.output_tensors()))),
            "classifier": _is_classifier(m.model, m.answer_from), "score": m.answer_from,
            "camera": cam}


def app_file_name(entry: str) -> str:
    return "app_main.cpp" if entry == ENTRY_ARDUINO else "app_main.c"


def generate_app(models: list[AppModel], out_dir: Path, *, entry: str, board_id: str,
                 board_name: str, baud: int, runtime: str, use_float: bool = True) -> list[Path]:
    """app_main.c(pp) and one example input per model, into out_dir.  Without
    `use_float` the app prints the int8 score and never touches floating point
    (for toolchains without soft-float routines)."""
    check_names([m.name for m in models])
    files = []
    rows = []
    for m in models:
        files += write_example_input(m, out_dir)
        rows.append(app_row(m))
    ctx = dict(version=__version__, models=rows, entry=entry, board_id=board_id,
               board_name=board_name, baud=baud, runtime=runtime,
               model_list=", ".join(m.name for m in models), max_values=MAX_PRINTED_VALUES,
               use_float=use_float, camera=any(r["camera"] for r in rows))
    files.append(render_to("app/app_main.c.j2", out_dir / app_file_name(entry), ctx))
    return files
