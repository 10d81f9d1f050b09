#!/usr/bin/env bash
# Install everything tinygen needs on Debian bookworm (as root) with only the
# Debian and PyPI package registries reachable.  Safe to run again: steps that
# are already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib clang-format
              qemu-system-arm clang libclang-rt-14-dev espeak-ng ser2net
              qemu-system-misc gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf
              picolibc-riscv64-unknown-elf gcc-xtensa-lx106 binutils-xtensa-lx106
              picolibc-xtensa-lx106-elf chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import tinygen, tensorflow, tflite_micro, tf_keras, platformio, SCons, pytest, hypothesis, matplotlib, scipy, serial, jinja2, cobs, rich, atheris, ruff, mypy, cryptography, detools, labgrid" >/dev/null 2>&1; then
  echo "setup: installing tinygen and its Python dependencies (TensorFlow is ~2 GB: a few minutes)"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
fi
# pyserial (for platformio) and pyserial-labgrid (for labgrid) both install
# serial/: whichever pip wrote last wins.  Pin the fork, which labgrid needs
# and tinygen is tested with (tests/test_multiport.py, tests/test_protocol.py).
if ! "$PY" -c "import serial, sys; sys.exit(serial.VERSION != '3.5.0.2')" >/dev/null 2>&1; then
  echo "setup: reinstalling pyserial-labgrid's serial module over pyserial's"
  "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "pyserial-labgrid==3.5.0.2"
fi
# PlatformIO offline: the tool-scons and toolchain packages tinygen provisions itself.
"$PY" -c "from tinygen.project import pio_offline; pio_offline.prepare_core_dir()" 2>/dev/null || true
# C sources of Monocypher and HDiffPatch's patcher for --updatable builds (PyPI sdists).
"$PY" -m tinygen.project.c_sources >/dev/null
echo "setup: done"
