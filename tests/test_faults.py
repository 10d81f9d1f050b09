"""Fault injection (tinygen/device/faults.py, docs/fault-tolerance.md): does the
host ever give a wrong result or hang when the link or the device misbehaves?

For each fault class many inferences run through DeviceClient over a
FaultyPort; every call runs under a watchdog with a hard deadline.  Each
outcome is one of

* ok:          a correct result, no fault touched the call
* recovered:   a correct result although faults hit the call
* clean error: a ProtocolError (a TinygenError) within the deadline
* wrong:       a result that differs from the expected one   (must be 0)
* hang:        no return within the deadline                 (must be 0)

Targets: the host build of the device with the fake model (default run;
expected outputs from the fake model's documented semantics in
tests/device_host/fake_model.c), and the firmware of examples/quickstart on
the emulated boards in QEMU (slow; expected outputs from the tflite_micro
reference).  Then the failures a user meets first, through the CLI: no
device, a silent or garbage-talking peer (wrong baud), a busy port, a
device running another model: one line on stderr, non-zero exit.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import serial
from conftest import ROOT, run_cli

from tinygen.device.faults import FaultPlan, Faults, FaultyPort, qemu_reset
from tinygen.device.protocol import DeviceClient, DeviceReset, ProtocolError
from tinygen.errors import TinygenError

HERE = Path(__file__).resolve().parent
COMMON = ROOT / "firmware_templates" / "common"
HOST = HERE / "device_host"

# -- the fake model, as documented in tests/device_host/fake_model.c ---------------

FAKE_H, FAKE_W, FAKE_C = 16, 16, 3
IN0 = FAKE_H * FAKE_W * FAKE_C


def fake_inputs(rng: np.random.Generator):
    x0 = rng.integers(-128, 128, (1, FAKE_H, FAKE_W, FAKE_C)).astype(np.int8)
    x1 = rng.uniform(-100, 100, (1, 10)).astype(np.float32)
    return [x0, x1]


def fake_problems(result, inputs, state) -> list[str]:
    """What is wrong with a result of the fake model (empty: nothing)."""
    x0, x1 = inputs
    flat = x0.reshape(-1)
    problems = []
    out0, out1, out2 = result.outputs
    if not np.array_equal(out0.reshape(-1), flat[::-1]):
        problems.append("output 0 is not input 0 reversed")
    if not np.array_equal(out2, x1 * np.float32(2) + np.float32(1)):
        problems.append("output 2 is not input 1 * 2 + 1")
    total, since_reset, since_boot, magic = (int(v) for v in out1.reshape(-1))
    if total != int(flat.astype(np.int64).sum()) or magic != 0x12345678:
        problems.append(f"output 1 sum/magic {total}/{magic:#x}")
    # each inference ran the model at most once, and this result is of a new run
    if since_reset != since_boot or since_boot <= state.get("last_run", 0):
        problems.append(f"run counters {since_reset}/{since_boot} after {state.get('last_run', 0)}")
    state["last_run"] = since_boot
    if result.counter != 1000 + IN0:
        problems.append(f"counter {result.counter}")
    return problems


# -- the host build of the device ------------------------------------------------

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
DEVICE_ENV = {"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


@pytest.fixture(scope="module")
def device_exe(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("faults_device") / "tg_device_host"
    sources = [COMMON / "tg_protocol.c", COMMON / "tg_main.c", HOST / "tg_hal_host.c", HOST / "fake_model.c"]
    base = [cc, "-std=c99", "-O1", "-g", f"-I{COMMON}", f"-I{HOST}", f"-DFAKE_H={FAKE_H}", f"-DFAKE_W={FAKE_W}"]
    for extra in (SANITIZE, []):
        r = subprocess.run(base + extra + [str(s) for s in sources] + ["-o", str(out)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return out
    pytest.fail(f"host device build failed:\n{r.stderr}")


class HostDevice:
    """The device program serving one TCP connection (like QEMU's UART);
    restart() is a reset: kill, start again, connect."""

    def __init__(self, exe: Path, log_dir: Path):
        self.exe, self.log_dir, self.starts = exe, log_dir, 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.log = self.log_dir / f"device-{self.starts}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(self.exe)], stdout=subprocess.PIPE, stderr=log,
                                         env={**os.environ, **DEVICE_ENV})
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.match(r"TG_HOST_PORT (\d+)", line)
        assert match, f"host device did not start: {line!r}"
        self.url = f"socket://127.0.0.1:{match.group(1)}"

    def connect(self, timeout: float = 0.02):
        return serial.serial_for_url(self.url, timeout=timeout)

    def restart(self):
        self.kill()
        self.start()
        return self.connect()

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc.stdout.close()
            text = self.log.read_text(errors="replace")
            assert "Sanitizer" not in text and "runtime error" not in text, text

    def stop(self) -> None:
        self.kill()
        self.proc = None


# -- outcomes and the watchdog ------------------------------------------------------


class Hang(Exception):
    pass


def with_deadline(fn, deadline: float, on_hang=None):
    """fn() in a thread; Hang if it has not returned after deadline seconds."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident)
        where = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else "?"
        if on_hang is not None:
            on_hang()  # unblock it (kill the device), then report
            thread.join(10)
        raise Hang(f"no return within {deadline} s; it was at:\n{where}")
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclasses.dataclass
class Outcome:
    name: str
    ok: int = 0
    recovered: int = 0
    clean_error: int = 0
    wrong: int = 0
    hang: int = 0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    faults: dict = dataclasses.field(default_factory=dict)
    resets: int = 0
    max_call_s: float = 0.0
    problems: list = dataclasses.field(default_factory=list)
    messages: list = dataclasses.field(default_factory=list)  # of the clean errors
    session_errors: list = dataclasses.field(default_factory=list)  # failed handshakes

    def line(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return (f"{self.name:22} ok {self.ok:3}  recovered {self.recovered:3}  clean error "
                f"{self.clean_error:3}  wrong {self.wrong}  hang {self.hang}  max call "
                f"{self.max_call_s:5.2f} s  errors [{errs}]  injected [{faults}]")


OUTCOMES: list[Outcome] = []


def campaign(name: str, client: DeviceClient, port: FaultyPort, make_inputs, problems_of,
             n: int, deadline: float, on_hang=None) -> Outcome:
    """n inferences through a faulty port; every call under the watchdog."""
    out = Outcome(name)
    state: dict = {}
    # resets counted when the last successful call started: a reset after
    # that (even after its reply arrived) may have restarted the run counters
    epoch = port.log.resets

    def new_session() -> None:
        for _attempt in range(5):  # bounded, each attempt under the watchdog
            try:
                with_deadline(lambda: client.info(refresh=True), deadline, on_hang)
                return
            except Hang as exc:
                out.hang += 1
                out.problems.append(str(exc))
                return
            except TinygenError as exc:
                out.session_errors.append(str(exc))

    new_session()
    for _ in range(n):
        if out.hang:
            break
        inputs = make_inputs()
        faults_before = port.log.total() + port.log.resets
        resets_at_start = port.log.resets
        start = time.monotonic()
        try:
            result = with_deadline(lambda inputs=inputs: client.infer(inputs), deadline, on_hang)
        except Hang as exc:
            out.hang += 1
            out.problems.append(str(exc))
            break
        except TinygenError as exc:
            out.clean_error += 1
            out.errors[type(exc).__name__] += 1
            out.messages.append(str(exc))
            if isinstance(exc, DeviceReset) or client._session is None:
                new_session()
        except Exception as exc:  # noqa: BLE001 - any other exception type is a bug
            out.problems.append(f"{type(exc).__name__}: {exc}")
            out.wrong += 1
        else:
            if port.log.resets != epoch:  # the device restarted: its run counters too
                state["last_run"] = 0
            epoch = resets_at_start
            bad = problems_of(result, inputs, state)
            if bad:
                out.wrong += 1
                out.problems.append(bad)
            elif port.log.total() + port.log.resets > faults_before:
                out.recovered += 1
            else:
                out.ok += 1
        out.max_call_s = max(out.max_call_s, time.monotonic() - start)
    out.faults = dict(port.log.counts)
    out.resets = port.log.resets
    OUTCOMES.append(out)
    print("\n" + out.line())
    for message in out.messages + out.session_errors:
        print("    " + message)
    return out


def check(out: Outcome, *, must_recover: bool = True, must_error: bool = False) -> None:
    assert out.wrong == 0, out.problems[:5]
    assert out.hang == 0, out.line() + "\n" + "\n".join(map(str, out.problems))
    assert out.faults, f"{out.name}: no fault was injected"
    if must_recover:
        assert out.recovered > 0, out.line()
    if must_error:
        assert out.clean_error > 0, out.line()


# -- the fault classes ----------------------------------------------------------------

def both(**kw) -> dict:
    return {"to_device": Faults(**kw), "from_device": Faults(**kw)}


# name: (plan keywords, must_error); probabilities sized for a few faults per
# inference on the host device (about 900 bytes out, 200 bytes back, 5 frames).
HOST_CLASSES = {
    "drop": (both(drop=4e-4), False),
    "flip": (both(flip=4e-4), False),
    "duplicate": (both(duplicate=4e-4), False),
    "garbage": (both(garbage=4e-4, garbage_bytes=(1, 40)), False),
    "delay": (both(delay=0.06, delay_s=(0.0, 0.5)), False),
    "stall": ({"to_device": Faults(stall=0.01, stall_s=2.0), "from_device": Faults(stall=0.02, stall_s=0.4)},
              False),
    "reset": ({"reset": 0.03, "reset_delay_s": (0.0, 0.003)}, True),
    "mixed": ({**both(drop=1e-4, flip=1e-4, duplicate=1e-4, garbage=1e-4, delay=0.02, delay_s=(0.0, 0.4),
                      stall=0.003, stall_s=1.5), "reset": 0.004}, False),
}
HOST_INFERENCES = int(os.environ.get("TG_FAULT_INFERENCES", "20"))  # more for a measurement run
CLIENT = {"timeout": 0.25, "invoke_timeout": 1.0, "retries": 3, "chunk_size": 256, "poll_interval": 0.01,
          "baudrate": 0}


def deadline_for(client: dict, frames: int, max_delay: float, stall: float) -> float:
    """The longest an infer() may take by the client's own bounds: up to two
    uploads of `frames` chunks (plus `retries` resumes each) and two INVOKEs,
    every request through all its attempts, each attempt late by max_delay;
    plus one stall."""
    attempts = client["retries"] + 1
    uploads = 2 * (frames + client["retries"]) * attempts * (client["timeout"] + max_delay)
    invokes = 2 * attempts * (client["invoke_timeout"] + max_delay)
    return uploads + invokes + stall


# 768 + 40 input bytes in 256-byte chunks: 5 frames per upload
HOST_DEADLINE = deadline_for(CLIENT, 5, 0.6, 2.0)


@pytest.mark.parametrize("fault", sorted(HOST_CLASSES))
def test_faults_on_the_host_device(fault, device_exe, tmp_path):
    kw, must_error = HOST_CLASSES[fault]
    device = HostDevice(device_exe, tmp_path)
    seed = sorted(HOST_CLASSES).index(fault) + 1
    port = FaultyPort(device.connect(), FaultPlan(seed=seed, **kw), on_reset=device.restart)
    client = DeviceClient(port, **CLIENT)
    rng = np.random.default_rng(seed)
    try:
        out = campaign(f"host/{fault}", client, port, lambda: fake_inputs(rng), fake_problems,
                       HOST_INFERENCES, HOST_DEADLINE, on_hang=device.kill)
    finally:
        port.close()
        device.stop()
    check(out, must_recover=fault != "reset", must_error=must_error)
    if fault == "reset":
        assert out.resets > 0 and out.errors["DeviceReset"] > 0, out.line()


def test_faulty_port_is_reproducible_and_transparent_when_clean(device_exe, tmp_path):
    """A plan without faults changes nothing; the same seed damages the same
    bytes the same way."""
    device = HostDevice(device_exe, tmp_path)
    try:
        port = FaultyPort(device.connect(), FaultPlan())
        client = DeviceClient(port, **{**CLIENT, "timeout": 2.0})
        rng = np.random.default_rng(0)
        state: dict = {}
        for _ in range(3):
            inputs = fake_inputs(rng)
            assert fake_problems(client.infer(inputs), inputs, state) == []
        assert port.log.total() == 0 and client.stats.bad_frames == 0
        port.close()
    finally:
        device.stop()

    class Sink:
        timeout = 0
        data = b""

        def write(self, d):
            self.data += d

        def read(self, n=1):
            return b""

        def close(self):
            pass

    outs = []
    for _ in range(2):
        sink = Sink()
        p = FaultyPort(sink, FaultPlan(seed=5, to_device=Faults(drop=0.01, flip=0.01, duplicate=0.01,
                                                                 garbage=0.01)))
        for k in range(50):
            p.write(bytes(range(1, 200)) * (k % 3 + 1))
        outs.append((sink.data, dict(p.log.counts)))
    assert outs[0] == outs[1] and outs[0][0] != bytes(range(1, 200)) * 0


def test_stall_longer_than_the_retries_is_a_timeout_then_the_link_recovers(device_exe, tmp_path):
    device = HostDevice(device_exe, tmp_path)
    port = FaultyPort(device.connect(), FaultPlan(seed=3, from_device=Faults(stall=1.0, stall_s=2.0,
                                                                             max_faults=1)))
    client = DeviceClient(port, timeout=0.2, retries=2, poll_interval=0.01, baudrate=0)
    try:
        start = time.monotonic()
        with pytest.raises(ProtocolError, match="no reply to INFO after 3 attempts"):
            with_deadline(client.info, 5.0, device.kill)
        assert time.monotonic() - start < 2.0
        time.sleep(1.2)  # the stall ends; the held replies arrive late and are stale
        client.info()
        rng = np.random.default_rng(3)
        inputs = fake_inputs(rng)
        assert fake_problems(client.infer(inputs), inputs, {}) == []
        assert client.stats.stale_frames >= 1
    finally:
        port.close()
        device.stop()


def test_reset_in_the_middle_of_an_upload_is_detected(device_exe, tmp_path):
    """A reset between two chunks of one input: the new device has no session,
    so the next chunk gets SESSION (DeviceReset), never a result made of half
    an old upload."""
    device = HostDevice(device_exe, tmp_path)
    port = FaultyPort(device.connect(), FaultPlan(), on_reset=device.restart)
    client = DeviceClient(port, **CLIENT)
    rng = np.random.default_rng(4)
    try:
        client.info()
        writes = {"n": 0}
        real_write = port.write

        def write(data):
            writes["n"] += 1
            n = real_write(data)
            if writes["n"] == 2:  # after the second chunk
                port.reset_device()
            return n

        port.write = write
        with pytest.raises(DeviceReset):
            client.infer(fake_inputs(rng))
        port.write = real_write
        client.info()
        inputs = fake_inputs(rng)
        assert fake_problems(client.infer(inputs), inputs, {}) == []
    finally:
        port.close()
        device.stop()


def test_one_noise_burst_costs_one_retransmission(device_exe, tmp_path):
    """A burst of noise with zero bytes in it arrives as several bad runs at
    once; they are one damaged reply, not one per run: with retries=1 the
    exchange still succeeds (before the fix each run used up a retry)."""
    device = HostDevice(device_exe, tmp_path)

    class NoisyOnce:
        """Puts a burst of five zero-separated junk runs in front of the
        first reply, in the same read."""

        def __init__(self, inner):
            self.inner, self.pending = inner, b""
            self.armed = True

        timeout = property(lambda self: self.inner.timeout,
                           lambda self, v: setattr(self.inner, "timeout", v))

        def write(self, data):
            return self.inner.write(data)

        def read(self, size=1):
            data = self.inner.read(size)
            if data and self.armed:
                self.armed = False
                more = self.inner.read(65536) if size == 1 else b""
                self.pending = b"\x00\x05junk\x00\x09more junk\x00\x03xy\x00\x02\x00\x07garbage" + data + more
            if self.pending:
                data, self.pending = self.pending[:size], self.pending[size:]
            return data

        def close(self):
            self.inner.close()

    port = NoisyOnce(device.connect())
    client = DeviceClient(port, timeout=1.0, retries=1, poll_interval=0.01, baudrate=0)
    try:
        client.info()
        rng = np.random.default_rng(5)
        inputs = fake_inputs(rng)
        assert fake_problems(client.infer(inputs), inputs, {}) == []
        # At most one: when the intact reply is decoded in the same read as the
        # junk, no retransmission is needed at all (seen in CI, 1 run in 5 here).
        assert client.stats.bad_frames >= 4 and client.stats.retransmissions <= 1
    finally:
        port.close()
        device.stop()


# -- on the emulated boards (slow) ----------------------------------------------------


QUICKSTART = ROOT / "examples" / "quickstart"


@pytest.fixture(scope="module")
def quickstart_firmware(tmp_path_factory):
    """examples/quickstart built for the default emulated board, once."""
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    out = tmp_path_factory.mktemp("faults_fw") / "quickstart"
    r = run_cli("build", "-q", QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy", "-o", out,
                "--firmware", "protocol")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "tinygen.json").read_text())
    return {"dir": out, "elf": next(out.glob(".pio/build/*/firmware.elf")), "board": manifest["board"],
            "signature": manifest["model_signature"]}


@pytest.fixture(scope="module")
def quickstart_reference(quickstart_firmware):
    from tinygen.ir import parse_tflite
    from tinygen.reference import TflmReference
    ir = parse_tflite((quickstart_firmware["dir"] / "model.tflite").read_bytes())
    assert ir.signature == quickstart_firmware["signature"]
    return ir, TflmReference(ir.tflite)


QEMU_CLASSES = {  # the quickstart model moves ~300 bytes per inference: higher byte rates
    "drop": (both(drop=3e-3), False),
    "flip": (both(flip=3e-3), False),
    "duplicate": (both(duplicate=3e-3), False),
    "garbage": (both(garbage=3e-3, garbage_bytes=(1, 40)), False),
    "delay": (both(delay=0.1, delay_s=(0.0, 1.0)), False),
    "stall": ({"to_device": Faults(stall=0.02, stall_s=3.0), "from_device": Faults(stall=0.02, stall_s=0.5)},
              False),
    "reset": ({"reset": 0.15, "reset_delay_s": (0.0, 0.1)}, True),
}
QEMU_INFERENCES = int(os.environ.get("TG_FAULT_QEMU_INFERENCES", "12"))
QEMU_CLIENT = {"timeout": 0.6, "invoke_timeout": 3.0, "retries": 3, "chunk_size": 64, "poll_interval": 0.01,
               "baudrate": 0}
# 256 input bytes in 64-byte chunks: 4 frames per upload
QEMU_DEADLINE = deadline_for(QEMU_CLIENT, 4, 1.0, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(QEMU_CLASSES))
def test_faults_on_an_emulated_board(fault, quickstart_firmware, quickstart_reference):
    from tinygen.device.qemu import QemuProcess
    ir, ref = quickstart_reference
    kw, must_error = QEMU_CLASSES[fault]
    seed = 100 + sorted(QEMU_CLASSES).index(fault)
    rng = np.random.default_rng(seed)
    shapes = [t.shape for t in ir.input_tensors()]

    def make_inputs():
        return [rng.integers(-128, 128, s).astype(np.int8) for s in shapes]

    def problems_of(result, inputs, state):
        want = ref.run(inputs)
        return [f"output {k} differs from TFLM" for k, (g, w) in enumerate(zip(result.outputs, want))
                if not np.array_equal(np.asarray(g).reshape(-1), np.asarray(w).reshape(-1))]

    qemu = QemuProcess(quickstart_firmware["board"], quickstart_firmware["elf"])
    qemu.start()  # (qemu_reset restarts it from the watchdog's thread: see its doc)
    try:
        port = FaultyPort(serial.serial_for_url(qemu.url, timeout=0.02), FaultPlan(seed=seed, **kw),
                          on_reset=qemu_reset(qemu))
        client = DeviceClient(port, **QEMU_CLIENT)
        out = campaign(f"qemu/{fault}", client, port, make_inputs, problems_of, QEMU_INFERENCES,
                       QEMU_DEADLINE, on_hang=qemu.stop)
        port.close()
    finally:
        qemu.stop()
    check(out, must_recover=fault != "reset", must_error=must_error)


# -- what a user meets first, through the CLI ---------------------------------------
#
# Each scenario runs `tinygen verify -q --port URL model.tflite` in its own
# process, all at the same time (the silent peer costs the client's full
# retry budget, 4 x 2 s); the model is a one-op int8 .tflite made without the
# converter.


def assert_one_line_error(r: subprocess.CompletedProcess, pattern: str) -> str:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr  # -q: nothing but the error
    assert lines[0].startswith("tinygen: error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def verify_port(model: Path, url: str, *extra, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("verify", "-q", "--port", url, model, "--samples", "2", *extra, timeout=timeout)


@pytest.fixture(scope="module")
def model_tflite(tmp_path_factory):
    sys.path.insert(0, str(HERE / "aot"))
    import tflite_builder
    path = tmp_path_factory.mktemp("faults_model") / "fc.tflite"
    path.write_bytes(tflite_builder.fully_connected_model(np.random.default_rng(0), depth=16, units=4))
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Peer:
    """A TCP peer that accepts one connection and answers with reply(data)."""

    def __init__(self, reply):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                answer = self.reply(data)
                if answer:
                    conn.sendall(answer)

    def close(self):
        self.server.close()


def _wrong_baud_peer() -> Peer:
    """At the wrong baud rate every byte arrives as some other byte: the
    device's answers are garbage, zero bytes included."""
    rng = np.random.default_rng(9)
    return Peer(lambda data: rng.integers(0, 256, max(1, len(data) // 2)).astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def cli_runs(model_tflite, device_exe, tmp_path_factory):
    """scenario -> CompletedProcess of `tinygen verify --port` against it."""
    cleanup = []
    urls = {"no device": f"socket://127.0.0.1:{closed_port()}", "no such tty": "/dev/ttyUSB97"}
    silent = Peer(lambda data: b"")
    garbage = _wrong_baud_peer()
    cleanup += [silent.close, garbage.close]
    urls["silent peer"], urls["wrong baud"] = silent.url, garbage.url
    device = HostDevice(device_exe, tmp_path_factory.mktemp("cli_device"))
    cleanup.append(device.stop)
    urls["another model"] = device.url
    # a pty that another program holds (pyserial, exclusive, as tinygen opens ports)
    master, slave = os.openpty()
    name = os.ttyname(slave)
    holder = serial.Serial(name, exclusive=True)
    cleanup += [holder.close, lambda: os.close(master), lambda: os.close(slave)]
    urls["busy tty"] = name
    try:
        with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
            futures = {k: pool.submit(verify_port, model_tflite, url) for k, url in urls.items()}
            yield {k: f.result() for k, f in futures.items()} | {"_urls": urls}
    finally:
        for fn in reversed(cleanup):
            fn()


CLI_EXPECTED = {
    "no device": r"cannot open socket://127\.0\.0\.1:\d+: .*refused",
    "no such tty": r"serial port /dev/ttyUSB97 does not exist; ",
    "silent peer": r"no reply to INFO after 4 attempts",
    "wrong baud": r"INFO failed 4 times \(corrupted reply|no reply to INFO after 4 attempts",
    "another model": r"the device runs a different model \(signature a0a1a2a3a4a5a6a7\.\.\.",
    "busy tty": r"cannot open /dev/\S+: .*lock",
}


@pytest.mark.parametrize("scenario", sorted(CLI_EXPECTED))
def test_cli_link_failures_are_one_line_errors(scenario, cli_runs):
    line = assert_one_line_error(cli_runs[scenario], CLI_EXPECTED[scenario])
    print(f"\n{scenario}: exit {cli_runs[scenario].returncode}: {line}")


def test_tinygen_holds_its_port_exclusively():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    client = DeviceClient.open(name)
    try:
        with pytest.raises(serial.SerialException, match="lock"):
            serial.Serial(name, exclusive=True)
    finally:
        client.close()
        os.close(master)
        os.close(slave)


@pytest.mark.slow
def test_cli_qemu_port_busy(model_tflite, quickstart_firmware):
    """QEMU serves one client; a second one connects (the kernel queues it)
    but nothing answers it: one-line timeout error, and the first client's
    session is untouched."""
    from tinygen.device.qemu import QemuProcess
    with QemuProcess(quickstart_firmware["board"], quickstart_firmware["elf"]) as qemu:
        first = DeviceClient.open(qemu.url, timeout=5.0)
        info = first.info()
        r = verify_port(quickstart_firmware["dir"] / "model.tflite", qemu.url, timeout=300)
        assert_one_line_error(r, r"no reply to INFO after 4 attempts")
        assert first.info(refresh=True).signature == info.signature
        first.close()


def teardown_module(module):
    if OUTCOMES:
        print("\nfault campaigns:\n" + "\n".join(o.line() for o in OUTCOMES))
