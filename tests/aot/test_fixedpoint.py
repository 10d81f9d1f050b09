"""tg_kernels.h fixed-point helpers against gemmlowp/TFLite's definitions.

The C helpers are compiled (host gcc, and arm-none-eabi-gcc run under QEMU
when available) and fed millions of (x, multiplier, shift) values, including
the edges; the reference is written here straight from gemmlowp's formulas
(SaturatingRoundingDoublingHighMul with its nudge and truncating division,
RoundingDivideByPOT with its remainder threshold) and TFLite's
MultiplyByQuantizedMultiplier (double rounding).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from harness import REPO, _run

KERNELS = REPO / "firmware_templates" / "aot" / "kernels"

DRIVER = r"""
#include <stdio.h>
#include "tg_kernels.h"
int main(void) {
  int32_t v[3];
  while (fread(v, sizeof v, 1, stdin) == 1) {
    int32_t r[3];
    r[0] = tg_sat_rounding_doubling_high_mul(v[0], v[1]);
    r[1] = tg_rounding_divide_by_pot(v[0], (int)(((uint32_t)v[2]) % 32u));
    r[2] = tg_requantize(v[0], v[1] < 0 ? (int32_t)(-(v[1] + 1)) : v[1],
                         (int32_t)(((uint32_t)v[2]) % 32u) - 31 +
                         (v[2] < 0 ? 0 : (int32_t)(((uint32_t)v[2] >> 8) % 2u)));
    if (fwrite(r, sizeof r, 1, stdout) != 1) return 1;
  }
  return 0;
}
"""


def srdhm(a: int, b: int) -> int:
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31                      # division truncating toward zero
    return q if v >= 0 else -q


def rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def wrap32(v: int) -> int:
    return ((v + 2**31) % 2**32) - 2**31


def mbqm(x: int, m: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbpot(srdhm(wrap32(x * (1 << left)), m), right)


def _cases(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    edge = np.array([-2**31, -2**31 + 1, -2**30 - 1, -2**30, -2**30 + 1, -3, -2, -1, 0, 1, 2,
                     3, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1], np.int64)
    v = rng.integers(-2**31, 2**31, size=(n, 3), dtype=np.int64)
    pick = rng.random((n, 3)) < 0.15
    v[pick] = rng.choice(edge, size=int(pick.sum()))
    # accumulator-sized and multiplier-sized values are the interesting ones
    small = rng.random(n) < 0.5
    v[small, 0] >>= rng.integers(0, 31, size=int(small.sum()))
    return v.astype(np.int32)


def _expected(v: np.ndarray) -> np.ndarray:
    out = np.empty_like(v)
    for i, (a, b, c) in enumerate(v.tolist()):
        e = (c & 0xFFFFFFFF) % 32
        m = -(b + 1) if b < 0 else b
        shift = e - 31 + (0 if c < 0 else ((c & 0xFFFFFFFF) >> 8) % 2)
        out[i] = (srdhm(a, b), rdbpot(a, e), mbqm(a, m, shift))
    return out


def _check(run_cmd, v: np.ndarray) -> None:
    res = subprocess.run(run_cmd, input=v.tobytes(), capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = np.frombuffer(res.stdout, np.int32).reshape(-1, 3)
    exp = _expected(v)
    for col, name in enumerate(("SaturatingRoundingDoublingHighMul", "RoundingDivideByPOT",
                                "MultiplyByQuantizedMultiplier")):
        bad = np.nonzero(got[:, col] != exp[:, col])[0]
        assert bad.size == 0, (f"{name} differs for inputs {v[bad[:5]].tolist()}: "
                               f"{got[bad[:5], col].tolist()} vs {exp[bad[:5], col].tolist()}")


def test_fixedpoint_helpers_host(tmp_path):
    (tmp_path / "drv.c").write_text(DRIVER)
    exe = tmp_path / "drv"
    _run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
          "-fno-sanitize-recover=all", "-I", str(KERNELS), str(tmp_path / "drv.c"),
          "-o", str(exe)])
    _check([str(exe)], _cases(200_000, 0))


def test_fixedpoint_helpers_cortex_m4(tmp_path):
    from harness import M4_LINKER, M4_STARTUP_C, qemu_available
    if not qemu_available():
        pytest.skip("qemu-system-arm not installed")
    # semihosting has no stdin pipe: read/write files instead
    drv = DRIVER.replace("fread(v, sizeof v, 1, stdin)", "fread(v, sizeof v, 1, in)") \
        .replace("fwrite(r, sizeof r, 1, stdout)", "fwrite(r, sizeof r, 1, out)") \
        .replace("int main(void) {\n  int32_t v[3];",
                 "int main(void) {\n  int32_t v[3];\n"
                 "  FILE *in = fopen(\"v.bin\", \"rb\"), *out = fopen(\"r.bin\", \"wb\");\n"
                 "  if (!in || !out) return 9;") \
        .replace("  return 0;\n}", "  fclose(out);\n  return 0;\n}")
    (tmp_path / "drv.c").write_text(drv)
    (tmp_path / "startup.c").write_text(M4_STARTUP_C)
    (tmp_path / "m4.ld").write_text(M4_LINKER)
    elf = tmp_path / "drv.elf"
    _run(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
          "-mfpu=fpv4-sp-d16", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(KERNELS),
          str(tmp_path / "startup.c"), str(tmp_path / "drv.c"), "-nostartfiles",
          "--specs=rdimon.specs", "-T", str(tmp_path / "m4.ld"), "-o", str(elf)])
    v = _cases(20_000, 1)
    (tmp_path / "v.bin").write_bytes(v.tobytes())
    res = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
                          "-monitor", "none", "-serial", "none", "-kernel", str(elf)],
                         cwd=tmp_path, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    got = np.frombuffer((tmp_path / "r.bin").read_bytes(), np.int32).reshape(-1, 3)
    exp = _expected(v)
    assert np.array_equal(got, exp)
