"""The application a `tinygen build` project gets by default.

`app_main.c` (`.cpp` on Arduino cores, whose `setup`/`loop` have C++
linkage) calls each model through its prefixed API the way a user's firmware
would: init once, then per round read the input, invoke, print the output and
the time.  The input comes from `<name>_example_input.c`, one real sample
(the first of --calib when given) so that the first run prints something
meaningful; `read_input()` is where the user's sensor code replaces it.
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


@dataclass
class AppModel:
    name: str
    model: Model
    sample: list[np.ndarray]      # one array per input, the input tensor's dtype and shape
    sample_note: str              # where the sample came from, said in the generated C


def _is_classifier(model: Model) -> bool:
    """Output 0 is a score vector: [N] or [1, N] with N >= 2, quantized int8."""
    t = model.output_tensors()[0]
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
    return {"name": m.name, "NAME": m.name.upper(), "sample": m.sample_note,
            "inputs": list(range(len(m.model.input_tensors()))),
            "outputs": list(range(len(m.model.output_tensors()))),
            "classifier": _is_classifier(m.model)}


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
               use_float=use_float)
    files.append(render_to("app/app_main.c.j2", out_dir / app_file_name(entry), ctx))
    return files
