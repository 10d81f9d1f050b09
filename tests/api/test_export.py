"""`tinygen export --format c|arduino|esp-idf`: the model library alone.

The plain C export is built with its own Makefile (and its CMakeLists.txt),
run on the host and, cross-compiled, linked with a small main of this file and
run on the emulated Cortex-M4: outputs 0 LSB against the tflite_micro
interpreter.  The Arduino library and the ESP-IDF component are checked for
their layout and their sources compiled with the cross compilers here
(arm-none-eabi-gcc, and riscv64-unknown-elf-gcc for the ESP32-C3 core); the
Arduino core, ESP-IDF and the ESP32's Xtensa compiler are not available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tests.aot.harness import ARM_CFLAGS, M4_LINKER, M4_STARTUP_C, qemu_available, run_tflm
from tests.aot.tflite_builder import conv2d_model, fully_connected_model
from tinygen.ir import parse_tflite

ARM_MAKE_CFLAGS = " ".join(f for f in ARM_CFLAGS if f != "-std=c99")


def _models(tmp_path: Path):
    rng = np.random.default_rng(21)
    kws = conv2d_model(rng, h=5, w=5, cin=2, cout=3)
    vib = fully_connected_model(rng, depth=20, units=5)
    (tmp_path / "kws.tflite").write_bytes(kws)
    (tmp_path / "vib.tflite").write_bytes(vib)
    return kws, vib


def _export(tmp_path: Path, fmt: str, *extra, out=None) -> Path:
    out = out or tmp_path / fmt
    r = run_cli("export", "--format", fmt, tmp_path / "kws.tflite", "--name", "kws",
                "--add", f"vib={tmp_path / 'vib.tflite'}", "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    assert "exported kws, vib" in r.stdout
    return out


def _example_outputs(text: str, name: str) -> np.ndarray:
    m = re.search(rf"^{name}: output 0 int8:((?: -?\d+)+)(?: \.\.\.)?$", text, re.M)
    assert m, text
    return np.array([int(v) for v in m.group(1).split()], np.int8)


def _zeros(model: bytes) -> np.ndarray:
    m = parse_tflite(model)
    t = m.tensors[m.inputs[0]]
    return np.full(t.shape, t.zero_point, np.int8)


def _make(folder: Path, *args):
    r = subprocess.run(["make", "-C", str(folder), *args], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_export_c_builds_with_its_makefile_and_cmake_and_runs(tmp_path):
    kws, vib = _models(tmp_path)
    out = _export(tmp_path, "c")
    for f in ("Makefile", "CMakeLists.txt", "README.md", "src/kws.h", "src/vib.h",
              "src/tg_model_api.h", "example/main.c", "kws.tflite", "tinygen.json"):
        assert (out / f).is_file(), f
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    # the protocol binding is left out: only the models' own symbols are global
    assert "tg_model_init" not in (out / "src" / "kws.c").read_text()
    _make(out, "example", "CFLAGS=-O2 -Werror -pedantic")
    run = subprocess.run([str(out / "build" / "kws_example")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    # no --calib: each model's example input is its zero point
    want_k = run_tflm(kws, [[_zeros(kws)]])[0][0].reshape(-1).astype(np.int8)
    want_v = run_tflm(vib, [[_zeros(vib)]])[0][0].reshape(-1).astype(np.int8)
    assert np.array_equal(_example_outputs(run.stdout, "kws"), want_k[:64])
    assert np.array_equal(_example_outputs(run.stdout, "vib"), want_v)
    if shutil.which("cmake"):
        b = tmp_path / "cmake-build"
        for cmd in (["cmake", "-S", str(out), "-B", str(b), "-DKWS_EXAMPLE=ON",
                     "-DCMAKE_C_FLAGS=-Werror"], ["cmake", "--build", str(b)]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
        again = subprocess.run([str(b / "kws_example")], capture_output=True, text=True)
        assert again.stdout == run.stdout


TEST_MAIN = r"""/* The user's firmware, in the test: vectors in, both models, outputs out. */
#include <stdio.h>
#include "kws.h"
#include "vib.h"

int main(void) {
  FILE *in = fopen("in.bin", "rb");
  FILE *out = fopen("out.bin", "wb");
  if (in == NULL || out == NULL) return 10;
  if (kws_init() != TG_OK || vib_init() != TG_OK) return 2;
  while (fread(kws_input(0)->data, KWS_INPUT0_BYTES, 1, in) == 1) {
    if (fread(vib_input(0)->data, VIB_INPUT0_BYTES, 1, in) != 1) return 3;
    if (kws_invoke() != TG_OK || vib_invoke() != TG_OK) return 4;
    fwrite(kws_output(0)->data, KWS_OUTPUT0_BYTES, 1, out);
    fwrite(vib_output(0)->data, VIB_OUTPUT0_BYTES, 1, out);
  }
  fclose(out);
  return 0;
}
"""


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_export_c_cross_compiled_runs_bit_exact_in_qemu(tmp_path):
    """The export's Makefile with CROSS_COMPILE=arm-none-eabi- (dsp kernels for
    the Cortex-M4), libkws.a linked with the test's main, run on mps2-an386."""
    kws, vib = _models(tmp_path)
    out = _export(tmp_path, "c", "--board", "qemu-cortex-m4")
    assert "tg_dsp.h" in [p.name for p in (out / "src").iterdir()]
    _make(out, "CROSS_COMPILE=arm-none-eabi-", f"CFLAGS={ARM_MAKE_CFLAGS}")
    lib = out / "build" / "libkws.a"
    assert lib.is_file()
    (tmp_path / "main.c").write_text(TEST_MAIN)
    (tmp_path / "startup.c").write_text(M4_STARTUP_C)
    (tmp_path / "m4.ld").write_text(M4_LINKER)
    elf = tmp_path / "fw.elf"
    subprocess.run(["arm-none-eabi-gcc", *ARM_CFLAGS, "-I", str(out / "src"),
                    str(tmp_path / "startup.c"), str(tmp_path / "main.c"), str(lib),
                    "-nostartfiles", "--specs=rdimon.specs", "-T", str(tmp_path / "m4.ld"),
                    "-Wl,--gc-sections", "-o", str(elf)], check=True, capture_output=True)
    mk, mv = parse_tflite(kws), parse_tflite(vib)
    tk, tv = mk.tensors[mk.inputs[0]], mv.tensors[mv.inputs[0]]
    rng = np.random.default_rng(4)
    xs = [(rng.integers(-128, 128, tk.shape, dtype=np.int8),
           rng.integers(-128, 128, tv.shape, dtype=np.int8)) for _ in range(8)]
    (tmp_path / "in.bin").write_bytes(b"".join(a.tobytes() + b.tobytes() for a, b in xs))
    res = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
                          "-monitor", "none", "-serial", "none", "-kernel", str(elf)],
                         cwd=tmp_path, capture_output=True, timeout=120)
    assert res.returncode == 0, res
    got = (tmp_path / "out.bin").read_bytes()
    ref_k = run_tflm(kws, [[a] for a, _ in xs])
    ref_v = run_tflm(vib, [[b] for _, b in xs])
    want = b"".join(k[0].astype(np.int8).tobytes() + v[0].astype(np.int8).tobytes()
                    for k, v in zip(ref_k, ref_v))
    assert len(got) == len(want) and got == want          # 0 LSB, 8 vectors, both models


ARDUINO_STUB = r"""/* Stand-in for the Arduino core's Arduino.h: only what the sketch uses. */
#pragma once
#include <stdint.h>
struct SerialStub {
  void begin(unsigned long) {}
  operator bool() const { return true; }
  void print(const char *) {}
  void print(char) {}
  void print(int) {}
  void print(unsigned long) {}
  void print(float, int) {}
  void println(const char *) {}
  void println(unsigned long) {}
};
extern SerialStub Serial;
unsigned long micros(void);
void delay(unsigned long);
"""


def test_export_arduino_library(tmp_path):
    _models(tmp_path)
    np.save(tmp_path / "calib.npy", np.zeros((2, 5, 5, 2), np.float32))
    out = _export(tmp_path, "arduino", "--calib", tmp_path / "calib.npy")
    props = dict(line.split("=", 1) for line in
                 (out / "library.properties").read_text().splitlines() if "=" in line)
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category",
                "url", "architectures", "includes"):
        assert key in props, key
    assert props["name"] == "kws" and props["includes"] == "kws.h,vib.h"
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    sketch = out / "examples" / "kws_example"
    assert (sketch / "kws_example.ino").is_file() and (sketch / "vib_example_input.c").is_file()
    assert "kws_init\tKEYWORD2" in (out / "keywords.txt").read_text()
    assert sorted(p.name for p in (out / "extras").iterdir()) == ["kws.tflite", "vib.tflite"]
    assert not any(p.suffix in (".ino", ".tflite") for p in (out / "src").iterdir())
    # src/ as the Arduino IDE compiles it (C as C, every .c on its own), for a Cortex-M4
    objs = tmp_path / "objs"
    objs.mkdir()
    for c in sorted((out / "src").glob("*.c")):
        subprocess.run(["arm-none-eabi-gcc", "-std=gnu11", *ARM_CFLAGS[1:], "-c", str(c),
                        "-o", str(objs / (c.stem + ".o"))], check=True, capture_output=True)
    # the sketch: C++ with the IDE's implicit #include <Arduino.h> (a stand-in here)
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "Arduino.h").write_text(ARDUINO_STUB)
    r = subprocess.run(["arm-none-eabi-g++", "-std=gnu++17", "-Wall", "-Wextra", "-Werror",
                        "-fsyntax-only", "-I", str(stub), "-I", str(out / "src"),
                        "-include", "Arduino.h", "-x", "c++", str(sketch / "kws_example.ino")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_export_esp_idf_component(tmp_path):
    _models(tmp_path)
    out = _export(tmp_path, "esp-idf")
    cmake = (out / "CMakeLists.txt").read_text()
    srcs = re.search(r"SRCS((?: \"[^\"]+\")+)", cmake).group(1).split()
    assert sorted(s.strip('"') for s in srcs) == sorted(
        f"src/{p.name}" for p in (out / "src").iterdir() if p.suffix in (".c", ".cc"))
    assert 'INCLUDE_DIRS "src"' in cmake and "idf_component_register(" in cmake
    comp = (out / "idf_component.yml").read_text()
    assert re.search(r'^version: "\d+\.\d+\.\d+"$', comp, re.M) and 'idf: ">=5.1"' in comp
    assert "esp-tflite-micro" not in comp                    # aot: no TFLM
    main = out / "examples" / "kws_example" / "main"
    assert "path: ../../.." in (main / "idf_component.yml").read_text()
    assert "void app_main(void)" in (main / "main.c").read_text()
    # The ESP32-C3's core (RV32IMC) compiles the component and the example's main
    if not shutil.which("riscv64-unknown-elf-gcc"):
        pytest.skip("riscv64-unknown-elf-gcc not installed")
    flags = ["--specs=picolibc.specs", "-march=rv32imc", "-mabi=ilp32", "-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror",
             "-ffunction-sections", "-fdata-sections"]
    for c in sorted((out / "src").glob("*.c")) + sorted(main.glob("*.c")):
        r = subprocess.run(["riscv64-unknown-elf-gcc", *flags, "-I", str(out / "src"), "-I",
                            str(main), "-c", str(c), "-o", str(tmp_path / (c.stem + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_export_tflm_compiles_against_a_tflm_tree(tmp_path):
    """tflm: the glue compiled by the export's Makefile against TFLM's headers
    (the reference tree, arm-none-eabi-g++); linking needs a TFLM library,
    which the user brings (not done here)."""
    from test_tflm_runtime import tree_path
    _models(tmp_path)
    out = _export(tmp_path, "c", "--runtime", "tflm")
    names = sorted(p.name for p in (out / "src").iterdir())
    assert {"kws_tflm.cc", "vib_tflm.cc", "kws_data.c", "tg_tflm_nolog.cc"} <= set(names)
    assert "tg_tflm_target.cc" not in names
    _make(out, "CROSS_COMPILE=arm-none-eabi-", f"TFLM_DIR={tree_path('reference')}",
          "CFLAGS=-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -Werror")
    assert (out / "build" / "libkws.a").is_file()
    esp = _export(tmp_path, "esp-idf", "--runtime", "tflm")
    assert 'espressif/esp-tflite-micro: "^1.3.2"' in (esp / "idf_component.yml").read_text()


def test_export_bad_input_is_one_line(tmp_path):
    _models(tmp_path)
    out = tmp_path / "x"
    r = run_cli("export", "--format", "c", tmp_path / "kws.tflite", "--name", "vib",
                "--add", f"vib={tmp_path / 'vib.tflite'}", "-o", out)
    assert r.returncode == 2 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "two models are named 'vib'" in lines[0], lines
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    r = run_cli("export", "--format", "arduino", tmp_path / "kws.tflite", "-o", tmp_path / "mine")
    assert r.returncode == 2 and "not made by tinygen" in r.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    r = run_cli("export", "--format", "c", tmp_path / "kws.tflite", "--board", "esp32dev",
                "--runtime", "nope", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
