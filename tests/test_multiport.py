"""`tinygen verify` on several boards at once (--port given more than once).

Fast: the progress bar, the combined JSON and JUnit.  Slow: two QEMU
instances of the same firmware verified in one run (socket:// URLs), a dead
port among live ones, and boards behind RFC 2217 servers on loopback: ser2net
serving a QEMU pty (as in a board farm) and pyserial's own PortManager.
"""

from __future__ import annotations

import io
import json
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, run_cli

QUICKSTART = ROOT / "examples" / "quickstart"
BOARD = "qemu-cortex-m4"
MACHINE = "mps2-an386"


# ---------------------------------------------------------------------------
# fast


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def _plain(text: str) -> str:
    """Terminal output without its ANSI control sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_bar_on_a_terminal_is_rich_and_redrawn_in_place():
    from tinygen.report.text import StepDisplay, VectorProgress
    out = FakeTty()
    steps = StepDisplay(stream=out)
    steps.step("building")
    bar = VectorProgress(4, ["socket://127.0.0.1:1", "rfc2217://farm:7002"], stream=out,
                         steps=steps)
    assert steps.bar is bar
    steps.step("socket://127.0.0.1:1: qemu-cortex-m4, runtime aot")     # above the bar
    for k in (0, 1, 0, 1, 0, 0, 1, 1):
        bar.advance(k)
    bar.close()
    assert steps.bar is None
    raw = out.getvalue()
    text = _plain(raw)
    assert "\x1b[" in raw                                  # drawn with control sequences
    assert re.search(r"  \.\. building \(\d+\.\d s\)", text)   # the finished step, timed
    assert "  .. socket://127.0.0.1:1: qemu-cortex-m4, runtime aot" in text
    final = text.rsplit("127.0.0.1:1", 1)[-1]
    assert "4/4 vectors" in final and "farm:7002" in text and "4/4" in text.rsplit("farm:7002", 1)[-1]


def test_steps_live_on_a_terminal_plain_elsewhere_none_when_quiet():
    from tinygen.report.text import StepDisplay
    out = FakeTty()
    steps = StepDisplay(stream=out)
    steps.step("converting")
    steps.step("compiling")
    steps.finish()
    steps.finish()                                         # twice is harmless
    done = re.findall(r"  \.\. (\w+) \(\d+\.\d s\)\n", _plain(out.getvalue()))
    assert done == ["converting", "compiling"]            # each finished step once, timed
    assert "⠋ converting" in _plain(out.getvalue())        # the spinner while it ran
    out = io.StringIO()
    steps = StepDisplay(stream=out)
    steps.step("converting")
    steps.finish()
    assert out.getvalue() == "  .. converting\n"
    out = FakeTty()
    steps = StepDisplay(quiet=True, stream=out)
    steps.step("converting")
    steps.finish()
    assert out.getvalue() == ""


def test_progress_lines_without_a_terminal_and_nothing_when_quiet():
    from tinygen.report.text import VectorProgress
    out = io.StringIO()
    bar = VectorProgress(20, ["a"], stream=out)
    for _ in range(20):
        bar.advance(0)
    bar.close()
    assert out.getvalue().splitlines() == [f"  .. device: {n}/20 vectors" for n in range(2, 21, 2)]
    out = FakeTty()
    bar = VectorProgress(3, ["a"], quiet=True, stream=out)
    bar.note("x")
    bar.advance(0)
    bar.close()
    assert out.getvalue() == ""


def _report(port, passed=True):
    from tinygen.verify import OutputMetrics, VerifyReport
    o = OutputMetrics(0, "out", [1, 4], 100.0 if passed else 75.0, 0 if passed else 2, 0.0, 1.0,
                      0.0, 0.0, 1.0, passed)
    return VerifyReport(passed, passed, BOARD, "aot", port, "ab" * 32, 3, 0, [o],
                        {"instructions": 5, "unit": "instructions"}, {})


def test_combined_json_and_junit(tmp_path):
    from tinygen.report.junit import write_junit
    from tinygen.verify import BoardRun, combined_payload
    a, b = _report("socket://a"), _report("socket://b", passed=False)
    runs = [BoardRun("socket://a", report=a), BoardRun("socket://b", report=b),
            BoardRun("rfc2217://c", error="no reply to INFO")]
    p = combined_payload(runs)
    assert (p["passed"], p["bit_exact"]) == (False, False)
    assert [x["port"] for x in p["boards"]] == ["socket://a", "socket://b", "rfc2217://c"]
    assert p["boards"][2] == {"port": "rfc2217://c", "error": "no reply to INFO", "passed": False}
    assert p["errors"] == ["rfc2217://c: no reply to INFO"]
    both = combined_payload(runs[:1] + [BoardRun("socket://d", report=_report("socket://d"))])
    assert both["passed"] and both["bit_exact"] and "errors" not in both
    assert combined_payload(runs[:1]) == a.as_dict()          # one board: as before
    write_junit([a, b], tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.tag == "testsuites" and len(root) == 2
    assert [s.get("failures") for s in root] == ["0", "1"]


class ProfilingDevice:
    """A pyserial-like port answering INFO (flags: model ready, profile) and
    READ_PROFILE for 10 operators, at most 3 values per reply."""

    def __init__(self):
        from tinygen.device.protocol import FrameReader
        self.reader, self.rx, self.timeout, self.session = FrameReader(), bytearray(), 0, 0
        self.values = [100 * (i + 1) for i in range(10)]
        self.reads = []

    def write(self, data):
        import struct

        from tinygen.device.protocol import Frame, encode_frame
        for req in self.reader.feed(data):
            assert isinstance(req, Frame)
            if req.type == 0x01:
                self.session = req.session
                payload = struct.pack("<BBBBiII32sBBBB", 1, 0, 0x05, 1, 0, 64, 16384,
                                      bytes(32), 1, 1, 1, 3) + b"bsim"
                payload += 2 * (struct.pack("<BBxxIfi", 9, 2, 4, 0.5, 0) + struct.pack("<2i", 1, 4))
                self.rx += encode_frame(0x81, req.seq, self.session, payload)
            elif req.type == 0x06:
                first, count = struct.unpack("<II", req.payload)
                self.reads.append((first, count))
                n = min(count, 3, 10 - first)
                self.rx += encode_frame(0x86, req.seq, self.session, struct.pack(
                    "<II", 10, first) + struct.pack(f"<{n}I", *self.values[first:first + n]))
        return len(data)

    def read(self, size=1):
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    def close(self):
        pass


def test_read_profile_collects_every_operator_in_chunks():
    """The optional READ_PROFILE command (docs/protocol.md 4.4a), host side."""
    from tinygen.device.protocol import DeviceClient
    dev = ProfilingDevice()
    client = DeviceClient(dev, timeout=0.5, baudrate=0)
    assert client.info().profile
    assert client.read_profile() == dev.values
    assert [first for first, _ in dev.reads] == [0, 3, 6, 9]


# ---------------------------------------------------------------------------
# slow: QEMU


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiport") / "qs"
    r = run_cli("build", "--board", BOARD, QUICKSTART / "model.h5", "--calib",
                QUICKSTART / "calib.npy", "-o", out, "--profile", "--firmware", "protocol",
                timeout=900)
    assert r.returncode == 0, r.stderr
    return out, next(out.glob(".pio/build/*/firmware.elf"))


@pytest.mark.slow
def test_two_qemu_boards_in_one_run(firmware, tmp_path):
    from tinygen.device.qemu import QemuProcess, free_loopback_port
    out, elf = firmware
    html, junit = tmp_path / "r.html", tmp_path / "j.xml"
    with QemuProcess(MACHINE, elf) as a, QemuProcess(MACHINE, elf) as b:
        r = run_cli("verify", "--board", BOARD, "--port", a.url, "--port", b.url,
                    QUICKSTART / "model.h5", "--calib", QUICKSTART / "calib.npy",
                    "--samples", 6, "-o", out, "--json", "-", "--html", html,
                    "--junit", junit, timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        data = json.loads(r.stdout)                    # stdout is the JSON only
        assert data["passed"] and data["bit_exact"]
        assert [x["port"] for x in data["boards"]] == [a.url, b.url]
        for x in data["boards"]:
            assert x["vectors"] == 6 and x["outputs"][0]["max_abs_diff_lsb"] == 0
            assert [o["op"] for o in x["latency"]["per_op"]][:2] == ["CONV_2D",
                                                                    "DEPTHWISE_CONV_2D"]
            assert x["memory"]["code_flash"] > 0
        # deterministic instruction counts: both emulated boards agree exactly
        assert data["boards"][0]["latency"]["per_vector"] == \
            data["boards"][1]["latency"]["per_vector"]
        assert data["float_model"]["Identity"]["float_vs_reference_top1"] >= 0.5
        assert "PASS: 2 of 2 boards verified, all bit-exact" in r.stderr
        page = html.read_text()
        assert a.url in page and b.url in page and page.count("data:image/png;base64,") >= 5
        assert len(ET.parse(junit).getroot()) == 2

        # one board gone: the others are still verified, the run has no verdict
        dead = f"socket://127.0.0.1:{free_loopback_port()}"
        report = tmp_path / "dead.json"
        r = run_cli("verify", "--board", BOARD, "--port", a.url, "--port", dead,
                    out / "model.tflite", "--samples", 3, "--json", report, timeout=600)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "1 of 2 boards could not be verified" in r.stderr and "Traceback" not in r.stderr
        data = json.loads(report.read_text())
        assert not data["passed"] and data["boards"][0]["passed"]
        assert data["boards"][1]["port"] == dead and "cannot open" in data["boards"][1]["error"]


class Rfc2217Bridge:
    """pyserial's RFC 2217 server logic (its examples/rfc2217_server.py) on
    loopback, in front of another pyserial URL (here QEMU's socket://)."""

    def __init__(self, url: str):
        import serial
        self.serial = serial.serial_for_url(url, timeout=0.05)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.url = f"rfc2217://127.0.0.1:{self.server.getsockname()[1]}"
        self.alive = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import serial.rfc2217
        self.server.settimeout(0.2)
        while self.alive:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)

            class Out:
                def write(self, data, conn=conn):
                    conn.sendall(data)

            manager = serial.rfc2217.PortManager(self.serial, Out())
            done = threading.Event()

            def to_network(conn=conn, manager=manager, done=done):
                while self.alive and not done.is_set():
                    data = self.serial.read(self.serial.in_waiting or 1)
                    if data:
                        try:
                            conn.sendall(b"".join(manager.escape(data)))
                        except OSError:
                            break

            pump = threading.Thread(target=to_network, daemon=True)
            pump.start()
            while self.alive:
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.serial.write(b"".join(manager.filter(data)))
            done.set()
            pump.join(2)
            conn.close()

    def close(self):
        self.alive = False
        self.thread.join(2)
        self.server.close()
        self.serial.close()


def _qemu_on_pty(elf):
    """QEMU with its UART on a pty (as a USB serial board looks to ser2net)."""
    proc = subprocess.Popen(["qemu-system-arm", "-M", MACHINE, "-nographic", "-monitor", "none",
                             "-icount", "shift=0", "-kernel", str(elf), "-serial", "pty"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline, seen = time.monotonic() + 20, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            seen += chunk
            m = re.search(rb"(/dev/pts/\d+)", seen)
            if m:
                return proc, m.group(1).decode()
    proc.kill()
    proc.wait()
    raise AssertionError(f"QEMU did not report its pty: {seen!r}")


def _wait_listening(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ser2net exited: {proc.stdout.read()!r}")
        # /proc/net/tcp: listening sockets (state 0A) without connecting to them
        text = open("/proc/net/tcp").read()
        if re.search(rf"0100007F:{port:04X} 00000000:0000 0A", text):
            return
        time.sleep(0.1)
    raise AssertionError(f"ser2net does not listen on {port}")


@pytest.mark.slow
def test_boards_behind_rfc2217_servers(firmware, tmp_path):
    """rfc2217:// URLs: ser2net serving a QEMU pty (when ser2net is installed)
    and pyserial's PortManager in front of QEMU's TCP port, in one run."""
    from tinygen.device.qemu import QemuProcess, free_loopback_port
    out, elf = firmware
    ports, cleanup = [], []
    try:
        qemu = QemuProcess(MACHINE, elf)
        qemu.start()
        cleanup.append(qemu.stop)
        bridge = Rfc2217Bridge(qemu.url)
        cleanup.append(bridge.close)
        ports.append(bridge.url)
        if shutil.which("ser2net"):
            proc, pty = _qemu_on_pty(elf)
            cleanup.append(lambda: (proc.kill(), proc.wait()))
            port = free_loopback_port()
            cfg = tmp_path / "ser2net.yaml"
            cfg.write_text(f"connection: &board1\n"
                           f"    accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
                           f"    connector: serialdev,{pty},115200n81,local\n")
            s2n = subprocess.Popen(["ser2net", "-n", "-c", str(cfg), "-P", str(tmp_path / "pid")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
            cleanup.append(lambda: (s2n.terminate(), s2n.wait(10)))
            _wait_listening(port, s2n)
            # a pty has no modem lines: ser2net cannot answer DTR/RTS changes
            ports.append(f"rfc2217://127.0.0.1:{port}?ign_set_control")
        args = []
        for p in ports:
            args += ["--port", p]
        report = tmp_path / "r.json"
        r = run_cli("verify", "--board", BOARD, *args, out / "model.tflite", "--samples", 4,
                    "--json", report, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        data = json.loads(report.read_text())
        if len(ports) == 1:
            data = {"passed": data["passed"], "bit_exact": data["bit_exact"], "boards": [data]}
        assert data["passed"] and data["bit_exact"]
        assert [x["port"] for x in data["boards"]] == ports
    finally:
        for stop in reversed(cleanup):
            try:
                stop()
            except Exception:
                pass
