"""The reference: TensorFlow Lite Micro's interpreter (the tflite_micro package).

It is the bit-exact target of the aot runtime and the source of the measured
TFLM arena.  Arena figures come from TFLM's RecordingMicroAllocator, which
prints them from C; they are read by redirecting the stdio file descriptors.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import TinygenError

# A generous arena for the host interpreter; the real requirement is measured.
_HOST_ARENA_FLOOR = 1 << 20


@dataclass
class ArenaUsage:
    total: int
    head: int
    tail: int


def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def _arena_guess(tflite: bytes) -> int:
    return max(_HOST_ARENA_FLOOR, 16 * len(tflite))


class TflmReference:
    """Runs a .tflite on the TFLM interpreter, one inference at a time."""

    def __init__(self, tflite: bytes, arena_size: int | None = None):
        self.tflite = tflite
        from .ir import parse_tflite
        self.num_outputs = len(parse_tflite(tflite).outputs)
        try:
            with _capture_fds():
                self._interp = _runtime().Interpreter.from_bytes(
                    tflite, arena_size=arena_size or _arena_guess(tflite))
        except (RuntimeError, ValueError, struct.error, IndexError, TypeError, OverflowError,
                RecursionError, MemoryError) as exc:
            # tflite_micro first unpacks the whole flatbuffer with the schema's
            # generated Python code, which trusts its input: a damaged model
            # raises whatever the bad offsets lead to.
            raise TinygenError(f"TFLM cannot load the model: {_first_line(exc)}") from None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            try:
                self._interp.set_input(np.ascontiguousarray(x), i)
            except (ValueError, RuntimeError, IndexError) as exc:
                # the model's own description of input i disagrees with TFLM's
                raise TinygenError(f"TFLM refuses input {i}: {_first_line(exc)}") from None
        try:
            with _capture_fds():
                self._interp.invoke()
        except RuntimeError as exc:
            raise TinygenError(f"TFLM failed to run the model: {_first_line(exc)}") from None
        return [np.array(self._interp.get_output(i)) for i in range(self.num_outputs)]

    def reset(self) -> None:
        self._interp.reset()

    def arena_usage(self) -> ArenaUsage:
        """Call after one inference: what the recording allocator used."""
        with _capture_fds() as captured:
            self._interp.print_allocations()
        text = captured.text()
        values = {}
        for key in ("total", "head", "tail"):
            m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
            if m is None:
                raise TinygenError("could not read TFLM's arena figures from its allocator report")
            values[key] = int(m.group(1))
        return ArenaUsage(**values)


def measure_arena(tflite: bytes, inputs: list[np.ndarray]) -> ArenaUsage:
    """The arena TFLM needs for this model, measured after one inference."""
    ref = TflmReference(tflite)
    ref.run(inputs)
    return ref.arena_usage()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Captured:
    text_value = ""

    def text(self) -> str:
        return self.text_value


@contextlib.contextmanager
def _capture_fds():
    """Capture what C code writes to fds 1 and 2 (TFLM logs through printf)."""
    sys.stdout.flush()
    sys.stderr.flush()
    captured = _Captured()
    with tempfile.TemporaryFile("w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            captured.text_value = tmp.read().decode(errors="replace")
