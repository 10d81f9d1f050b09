"""The prefixed C API (docs/api.md): names, and two models in one image.

Two aot models with different names are generated into one folder without
the protocol binding, linked with one main that interleaves them (the first
model's floats through kws_quantize_input, the second's int8 bytes straight
into vib_input(0)->data, then both invokes, then kws_dequantize_output), and
every byte is compared with the tflite_micro interpreter: 0 LSB.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.aot.harness import (
    ARM_CFLAGS,
    HOST_CFLAGS,
    M4_LINKER,
    M4_STARTUP_C,
    REPO,
    qemu_available,
    run_tflm,
)
from tests.aot.tflite_builder import conv2d_model, fully_connected_model
from tinygen.codegen.aot import generate_aot
from tinygen.codegen.api import check_name, check_names
from tinygen.errors import TinygenError
from tinygen.ir import parse_tflite

API_HEADER = REPO / "firmware_templates" / "common" / "tg_model_api.h"

TWO_MODELS_MAIN = r"""/* Two tinygen models in one image, used one after the other. */
#include <stdio.h>
#include <string.h>
#include "kws.h"
#include "vib.h"

static float fin[KWS_INPUT0_COUNT];
static float fout[KWS_OUTPUT0_COUNT];

int main(void) {
  FILE *in = fopen("tg_in.bin", "rb");
  FILE *out = fopen("tg_out.bin", "wb");
  if (in == NULL || out == NULL) return 10;
  if (kws_invoke() != TG_ERR_NOT_INITIALIZED) return 11;
  if (kws_input(0)->data != NULL) return 12;
  if (kws_init() != TG_OK || vib_init() != TG_OK) return 2;
  if (kws_input(1) != NULL || kws_output(-1) != NULL || vib_input(1) != NULL) return 13;
  if (strcmp(kws_version(), KWS_TINYGEN_VERSION) != 0) return 14;
  if (kws_arena_bytes() != KWS_ARENA_BYTES || vib_arena_used() > VIB_ARENA_BYTES) return 15;
  if (kws_input(0)->bytes != KWS_INPUT0_BYTES || kws_info.num_inputs != KWS_NUM_INPUTS) return 16;
  if ((const void *)kws_input(0)->data == (const void *)vib_input(0)->data) return 17;
  for (;;) {
    if (fread(fin, sizeof fin, 1, in) != 1) break;
    if (kws_quantize_input(fin) != TG_OK) return 3;
    if (fread(vib_input(0)->data, VIB_INPUT0_BYTES, 1, in) != 1) return 4;
    if (kws_invoke() != TG_OK) return 5;
    if (vib_invoke() != TG_OK) return 6;
    if (kws_dequantize_output(fout) != TG_OK) return 7;
    if (fwrite(kws_output(0)->data, KWS_OUTPUT0_BYTES, 1, out) != 1) return 8;
    if (fwrite(fout, sizeof fout, 1, out) != 1) return 8;
    if (fwrite(vib_output(0)->data, VIB_OUTPUT0_BYTES, 1, out) != 1) return 8;
  }
  fclose(in);
  fclose(out);
  return 0;
}
"""


# ---- names -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kws", "KWS2", "_x", "model", "my_model_v3"])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, says", [
    ("", "not a C identifier"), ("1kws", "not a C identifier"), ("kws-cnn", "not a C identifier"),
    ("kws model", "not a C identifier"), ("kwś", "not a C identifier"),
    ("int", "keyword"), ("while", "keyword"), ("class", "keyword"), ("main", "keyword"),
    ("__kws", "reserved"), ("_Kws", "reserved"), ("tg", "tinygen's own"),
    ("tg_kws", "tinygen's own"), ("TFLITE_x", "tinygen's own"), ("k" * 41, "longer than 40"),
])
def test_bad_names(name, says):
    with pytest.raises(TinygenError, match=says) as e:
        check_name(name)
    assert "\n" not in str(e.value)


def test_two_models_one_name():
    with pytest.raises(TinygenError, match="two models are named 'kws'"):
        check_names(["kws", "vib", "kws"])
    with pytest.raises(TinygenError, match="differ only in case"):
        check_names(["kws", "KWS"])
    assert check_names(["kws", "vib"]) == ["kws", "vib"]


def test_generate_refuses_a_bad_name(tmp_path):
    model = parse_tflite(fully_connected_model(np.random.default_rng(1)))
    with pytest.raises(TinygenError, match="keyword"):
        generate_aot(model, tmp_path / "out", name="float")
    assert not (tmp_path / "out").exists()


# ---- two models in one image ---------------------------------------------------

def _two_models(tmp_path: Path):
    rng = np.random.default_rng(7)
    kws = conv2d_model(rng, h=6, w=6, cin=2, cout=5)
    vib = fully_connected_model(rng, depth=24, units=6)
    src = tmp_path / "src"
    for name, tfl in (("kws", kws), ("vib", vib)):
        generate_aot(parse_tflite(tfl), src, board="mps2-an386",
                     name=name, protocol_binding=False)
        assert (src / f"{name}.c").is_file() and (src / f"{name}.h").is_file()
    shutil.copyfile(API_HEADER, src / "tg_model_api.h")
    (tmp_path / "main.c").write_text(TWO_MODELS_MAIN)
    text = (src / "kws.c").read_text()
    assert "tg_model_init(" not in text and "tg_model_info =" not in text
    return kws, vib, src


def _reference_quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """TFLite's QUANTIZE: float32 division, round half away from zero, + zp, saturate."""
    r = (x.astype(np.float32) / np.float32(scale)).astype(np.float64)
    q = np.sign(r) * np.floor(np.abs(r) + 0.5) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def _vectors(kws: bytes, vib: bytes, n: int):
    rng = np.random.default_rng(3)
    mk, mv = parse_tflite(kws), parse_tflite(vib)
    tk, tv = mk.tensors[mk.inputs[0]], mv.tensors[mv.inputs[0]]
    floats, ints = [], []
    for k in range(n):
        x = rng.normal(0, 1, tk.shape).astype(np.float32) * np.float32(tk.scale) * 60
        if k == 0:      # saturation both ways, and values on half steps
            x.reshape(-1)[:4] = [1e9, -1e9, (3.5 - tk.zero_point) * tk.scale, -2.5 * tk.scale]
        floats.append(x)
        ints.append(rng.integers(-128, 128, tv.shape, dtype=np.int8))
    payload = b"".join(f.tobytes() + i.tobytes() for f, i in zip(floats, ints))
    return mk, mv, floats, ints, payload


def _check_outputs(data: bytes, kws: bytes, vib: bytes, mk, mv, floats, ints):
    ok = mk.tensors[mk.outputs[0]]
    ov = mv.tensors[mv.outputs[0]]
    tk = mk.tensors[mk.inputs[0]]
    qin = [_reference_quantize(x, tk.scale, tk.zero_point) for x in floats]
    ref_k = run_tflm(kws, [[q] for q in qin])
    ref_v = run_tflm(vib, [[i] for i in ints])
    per = ok.nbytes + 4 * int(np.prod(ok.shape)) + ov.nbytes
    assert len(data) == per * len(floats)
    for n in range(len(floats)):
        row = data[n * per:(n + 1) * per]
        got_k = np.frombuffer(row[:ok.nbytes], np.int8)
        got_f = np.frombuffer(row[ok.nbytes:ok.nbytes + 4 * got_k.size], np.float32)
        got_v = np.frombuffer(row[ok.nbytes + 4 * got_k.size:], np.int8)
        want_k = ref_k[n][0].reshape(-1).astype(np.int8)
        assert np.array_equal(got_k, want_k), f"kws vector {n}: 0 LSB expected"
        want_f = np.float32(ok.scale) * (want_k.astype(np.float32) - np.float32(ok.zero_point))
        assert np.array_equal(got_f.view(np.uint32), want_f.astype(np.float32).view(np.uint32))
        assert np.array_equal(got_v, ref_v[n][0].reshape(-1).astype(np.int8)), f"vib vector {n}"


def test_two_models_host(tmp_path):
    kws, vib, src = _two_models(tmp_path)
    exe = tmp_path / "two"
    cmd = ["gcc", *HOST_CFLAGS, "-O1", "-I", str(src), str(tmp_path / "main.c"),
           *map(str, sorted(src.glob("*.c"))), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    # the header also compiles as C++ (the tflm glue and Arduino sketches are C++)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                    "-I", str(src), "-x", "c++", str(src / "kws.h")],
                   check=True, capture_output=True, text=True)
    mk, mv, floats, ints, payload = _vectors(kws, vib, 6)
    (tmp_path / "tg_in.bin").write_bytes(payload)
    res = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, timeout=60)
    assert res.returncode == 0, res
    _check_outputs((tmp_path / "tg_out.bin").read_bytes(), kws, vib, mk, mv, floats, ints)


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_two_models_cortex_m4_qemu(tmp_path):
    kws, vib, src = _two_models(tmp_path)
    (tmp_path / "startup.c").write_text(M4_STARTUP_C)
    (tmp_path / "m4.ld").write_text(M4_LINKER)
    elf = tmp_path / "two.elf"
    subprocess.run(["arm-none-eabi-gcc", *ARM_CFLAGS, "-I", str(src), str(tmp_path / "startup.c"),
                    str(tmp_path / "main.c"), *map(str, sorted(src.glob("*.c"))),
                    "-nostartfiles", "--specs=rdimon.specs", "-T", str(tmp_path / "m4.ld"),
                    "-Wl,--gc-sections", "-o", str(elf)], check=True, capture_output=True)
    mk, mv, floats, ints, payload = _vectors(kws, vib, 6)
    (tmp_path / "tg_in.bin").write_bytes(payload)
    res = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
                          "-monitor", "none", "-serial", "none", "-kernel", str(elf)],
                         cwd=tmp_path, capture_output=True, timeout=120)
    assert res.returncode == 0, res
    _check_outputs((tmp_path / "tg_out.bin").read_bytes(), kws, vib, mk, mv, floats, ints)


# ---- the name through the CLI and the build stage -------------------------------

def test_cli_refuses_a_bad_name_in_one_line(tmp_path):
    from conftest import run_cli
    model = tmp_path / "m.tflite"
    model.write_bytes(fully_connected_model(np.random.default_rng(1)))
    out = tmp_path / "proj"
    for bad in ("int", "kws-1", "tg_x"):
        res = run_cli("build", str(model), "--name", bad, "-o", str(out), "--no-compile")
        assert res.returncode == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tinygen: error: --name"), res.stderr
        assert not out.exists()


@pytest.mark.parametrize("runtime, board, files", [
    ("aot", "qemu-cortex-m4", ["kws.c", "kws.h"]),
    ("tflm", "esp32cam", ["kws_tflm.cc", "kws_data.c", "kws_data.h", "kws.h"]),
])
def test_named_project(tmp_path, runtime, board, files):
    from tinygen.project.build import build
    model = tmp_path / "m.tflite"
    model.write_bytes(conv2d_model(np.random.default_rng(2)))
    out = tmp_path / "proj"
    r = build(model, board, runtime=runtime, out_dir=out, compile_firmware=False, name="kws")
    src = out / "src"
    for f in files:
        assert (src / f).is_file(), f
    assert not (src / "model.c").exists() and not (src / "tg_model_tflm.cc").exists()
    header = (src / "kws.h").read_text()
    for decl in ("tg_status kws_init(void);", "tg_status kws_invoke(void);",
                 "const tg_tensor *kws_input(int index);",
                 "tg_status kws_quantize_input(const float *values);",
                 "#define KWS_INPUT0_BYTES 192u"):
        assert decl in header, decl
    assert r.c_name == "kws" and '"c_name": "kws"' in (out / "tinygen.json").read_text()
    readme = (out / "README.md").read_text()
    assert "src/kws.h" in readme and "kws_invoke()" in readme and "TG_NO_MAIN" in readme
    if runtime == "tflm":
        assert r.weight_symbols == ["kws_tflite"]
        assert "kws_tflite[" in (src / "kws_data.c").read_text()

# Two tflm models in one image (with different ops, from one TFLM library) run
# on an emulated board as `tinygen build --add` makes them: tests/api/test_app.py.
