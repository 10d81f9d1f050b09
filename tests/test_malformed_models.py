"""Malformed models: a real int8 .tflite (the converter's, conftest's cnn_tflite)
damaged at random and on purpose, given to `tinygen inspect` and `tinygen
build --no-compile` through the CLI entry point (tinygen.cli.main).

Every outcome must be a success or a one-line TinygenError: no other
exception type, no traceback, no crash of the process (the tflite_micro
interpreter that measures the arena is C++ and trusts its input), and a
failed build writes nothing to its output directory.

Each example runs in a forked child so that a crash in native code is
reported as a failure of that example (and hypothesis can shrink it) instead
of killing the test run.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import struct
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygen.ir import parse_tflite
from tinygen.ir.flatbuf import Buffer, Table

CHILD_TIMEOUT = 120.0  # a hang is a failure too


# -- running the CLI in a child ---------------------------------------------------


def _cli(argv: list[str]) -> dict:
    """In the child: tinygen.cli.main(argv), what it returned, printed, raised."""
    from tinygen.cli import main
    out, err = io.StringIO(), io.StringIO()
    result = {"argv": argv, "exception": None}
    try:
        with redirect_stdout(out), redirect_stderr(err):
            result["rc"] = main(argv)
    except SystemExit as exc:  # argparse
        result["rc"] = exc.code
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback
        result["rc"] = None
        result["exception"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    result["stdout"], result["stderr"] = out.getvalue(), err.getvalue()
    return result


def run_in_child(model: bytes, workdir: Path) -> list[dict]:
    """inspect and build for the damaged model, in a forked child."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "damaged.tflite"
    path.write_bytes(model)
    out_dir = workdir / "project"
    commands = [
        ["inspect", "-q", str(path), "--board", "esp32dev"],
        ["build", "-q", "--board", "esp32dev", "--runtime", "tflm", "--no-compile", str(path),
         "-o", str(out_dir)],
    ]
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            results = [_cli(argv) for argv in commands]
            for r in results:
                if r["argv"][0] == "build":
                    r["out_dir_exists"] = out_dir.exists()
                    r["out_dir_files"] = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
                    r["leftovers"] = sorted(p.name for p in workdir.iterdir() if p.name.startswith("."))
            with os.fdopen(write_end, "w") as f:
                json.dump(results, f)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + CHILD_TIMEOUT
    with os.fdopen(read_end, "r") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([f], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"tinygen did not finish within {CHILD_TIMEOUT} s on a damaged model")
            data = f.read()
            chunks.append(data)
            if data == "":
                break
            break
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        pytest.fail(f"tinygen crashed with signal {os.WTERMSIG(status)} "
                    f"({signal.Signals(os.WTERMSIG(status)).name}) on a damaged model")
    return json.loads("".join(chunks))


def check_outcome(results: list[dict]) -> str:
    """Success or one TinygenError line; returns 'ok' or the error line."""
    verdicts = []
    for r in results:
        cmd = r["argv"][0]
        assert r["exception"] is None, f"tinygen {cmd} raised {r['exception']}"
        assert "Traceback" not in r["stderr"] + r["stdout"], r["stderr"]
        if r["rc"] == 0:
            if cmd == "build":
                assert r["out_dir_exists"] and "tinygen.json" in r["out_dir_files"], r
            verdicts.append("ok")
            continue
        assert r["rc"] == 2, f"tinygen {cmd} exited {r['rc']}: {r['stderr']}"
        lines = [line for line in r["stderr"].splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("tinygen: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], f"tinygen {cmd}: {r['stderr']!r}"
        if cmd == "build":
            assert not r["out_dir_exists"], f"a failed build left {r['out_dir_files']}"
            assert not r["leftovers"], f"a failed build left {r['leftovers']}"
        verdicts.append(errors[0])
    return " | ".join(verdicts)


# -- where the fields are: the flatbuffer located with tinygen's own reader ---------------


class Layout:
    """Byte positions of the fields worth corrupting in one .tflite."""

    def __init__(self, data: bytes):
        buf = Buffer(data)
        root = buf.root()
        self.scalars: dict[str, list[tuple[int, str]]] = {k: [] for k in (
            "tensor_buffer", "tensor_type", "opcode_version", "opcode_builtin", "op_opcode_index",
            "op_index", "io_index", "shape_dim", "vector_length", "quant_scale", "quant_zero_point")}

        def add(kind, pos, fmt):
            if pos is not None:
                self.scalars[kind].append((pos, fmt))

        def vector(table: Table, index: int, kind: str, fmt: str, size: int):
            p = table._indirect(index)
            if p is None:
                return
            add("vector_length", p, "I")
            n = buf.scalar("I", p)
            for k in range(n):
                add(kind, p + 4 + size * k, fmt)

        for oc in root.tables(1, "operator code"):
            add("opcode_builtin", oc._field_pos(0), "b")
            add("opcode_builtin", oc._field_pos(3), "i")
            add("opcode_version", oc._field_pos(2), "i")
        sg = root.tables(2, "subgraph")[0]
        for t in sg.tables(0, "tensor"):
            vector(t, 0, "shape_dim", "i", 4)
            add("tensor_type", t._field_pos(1), "b")
            add("tensor_buffer", t._field_pos(2), "I")
            q = t.table(4, "quantization")
            if q is not None:
                vector(q, 2, "quant_scale", "f", 4)
                vector(q, 3, "quant_zero_point", "q", 8)
        vector(sg, 1, "io_index", "i", 4)
        vector(sg, 2, "io_index", "i", 4)
        for o in sg.tables(3, "operator"):
            add("op_opcode_index", o._field_pos(0), "I")
            vector(o, 1, "op_index", "i", 4)
            vector(o, 2, "op_index", "i", 4)
        self.scalars = {k: v for k, v in self.scalars.items() if v}


# values that break assumptions, per field format
NASTY = {
    "b": [0, 1, 2, 3, 7, 10, 17, 18, 19, 20, 33, 32, 126, 127, -1, -128],
    "i": [-1, -2, 0, 1, 2, 7, 8, 255, 65536, 1 << 20, 1 << 30, 2**31 - 1, -(2**31)],
    "I": [0, 1, 2, 3, 255, 1 << 16, 1 << 24, 2**31, 2**32 - 1],
    "q": [0, 127, 128, -129, 1 << 40, -(1 << 63), 2**63 - 1],
    "f": [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e38, 3.0e9],
}
TARGETED_VALUES = {  # extra values per kind
    "opcode_version": [0, -1, 99, 1000],
    "tensor_type": [0, 1, 2, 3, 7, 10, 16, 17, 19, 99],
    "shape_dim": [0, -1, 1, 65535, 1 << 30],
}


class Damaged:
    """A damaged model; its repr (what hypothesis prints) says what was done."""

    def __init__(self, data: bytes, steps: list[str]):
        self.data, self.steps = data, steps

    def __repr__(self) -> str:
        return "<" + "; ".join(self.steps) + ">"


@st.composite
def damaged(draw, base: bytes, layout: Layout):
    data = bytearray(base)
    steps: list[str] = []
    how = draw(st.sampled_from(["bits", "truncate", "overwrite", "targeted", "targeted", "targeted"]))
    if how == "bits":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            bit = draw(st.integers(0, 7))
            data[at] ^= 1 << bit
            steps.append(f"flip bit {bit} of byte {at}")
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
        steps.append(f"truncate to {len(data)} bytes")
    elif how == "overwrite":
        at = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=16))
        data[at : at + len(junk)] = junk
        data = data[: max(len(base), at + len(junk))]
        steps.append(f"overwrite byte {at} with {junk.hex()}")
    else:
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(sorted(layout.scalars)))
            pos, fmt = draw(st.sampled_from(layout.scalars[kind]))
            value = draw(st.sampled_from(NASTY[fmt] + TARGETED_VALUES.get(kind, [])))
            if fmt in "bB":
                value = max(-128, min(127, int(value))) if fmt == "b" else int(value) & 0xFF
            elif fmt == "I":
                value = int(value) & 0xFFFFFFFF
            elif fmt == "i":
                value = int(value) & 0xFFFFFFFF
                fmt = "I"
            elif fmt == "q":
                value = int(value) & 0xFFFFFFFFFFFFFFFF
                fmt = "Q"
            struct.pack_into("<" + fmt, data, pos, value)
            steps.append(f"{kind} at byte {pos} := {value}")
    return Damaged(bytes(data), steps)


class Base:
    """The undamaged model (short repr: hypothesis prints its arguments)."""

    def __init__(self, data: bytes):
        parse_tflite(data)  # the undamaged model is fine
        self.data, self.layout = data, Layout(data)

    def __iter__(self):
        return iter((self.data, self.layout))

    def __repr__(self) -> str:
        return f"<cnn.int8.tflite, {len(self.data)} bytes>"


@pytest.fixture(scope="module")
def base_model(cnn_tflite):
    return Base(cnn_tflite.read_bytes())


def test_the_undamaged_model_builds(base_model, tmp_path):
    data, _ = base_model
    assert check_outcome(run_in_child(data, tmp_path)) == "ok | ok"


def test_layout_finds_every_kind_of_field(base_model):
    _, layout = base_model
    assert {"tensor_buffer", "tensor_type", "opcode_version", "op_index", "shape_dim",
            "quant_scale"} <= set(layout.scalars)


_counter = {"n": 0}
OUTCOMES: dict[str, int] = {}


# TG_MALFORMED_EXAMPLES=N: a longer, randomised run (the default is 200 fixed examples)
_EXAMPLES = int(os.environ.get("TG_MALFORMED_EXAMPLES", "0"))


@settings(max_examples=_EXAMPLES or 200, deadline=None, derandomize=not _EXAMPLES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_damaged_models_fail_cleanly(base_model, tmp_path, data):
    base, layout = base_model
    model = data.draw(damaged(base, layout)).data
    _counter["n"] += 1
    workdir = tmp_path / f"ex{_counter['n']}"
    verdict = check_outcome(run_in_child(model, workdir))
    for part in verdict.split(" | "):
        key = part.removeprefix("tinygen: error: ").replace(str(workdir / "damaged.tflite") + ": ", "")
        key = re.sub(r"\d+", "N", key)[:70]
        OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def teardown_module(module):
    if OUTCOMES:
        print("\nmalformed model outcomes (inspect and build, each):")
        for key, n in sorted(OUTCOMES.items(), key=lambda kv: -kv[1]):
            print(f"  {n:4}  {key}")
