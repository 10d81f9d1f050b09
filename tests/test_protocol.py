"""Serial protocol (docs/protocol.md): frame codec, host client, and the device
code (firmware_templates/common/tg_protocol.c) built for the host with a fake
model (tests/device_host/), talked to over a TCP socket or a pipe.

Expected model outputs are computed here from the fake model's documented
semantics (tests/device_host/fake_model.c header), not from its code.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygen.device import protocol as proto
from tinygen.device.protocol import (
    CMD_INFO,
    CMD_INPUT_CHUNK,
    CMD_INVOKE,
    CMD_READ_OUTPUT,
    CMD_RESET_STATE,
    MSG_BOOT,
    MSG_ERROR,
    DeviceClient,
    DeviceError,
    DeviceReset,
    DeviceTimeout,
    Frame,
    FrameError,
    FrameReader,
    InputMismatch,
    ProtocolError,
    VersionMismatch,
    cobs_decode,
    cobs_encode,
    decode_frame,
    encode_frame,
    frame_bytes,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMON = ROOT / "firmware_templates" / "common"
HOST = HERE / "device_host"

# -- the fake model, as documented -------------------------------------------

H, W, C = 96, 96, 3
IN0_BYTES = H * W * C
SIGNATURE = bytes(range(0xA0, 0xC0)).hex()
COUNTER_PER_RUN = 1000 + IN0_BYTES
TOKEN = 0x5EC0_0001
INLINE_ALL = struct.pack("<I", 0xFFFFFFFF)  # INVOKE payload: all outputs in the reply


def fake_expected(x0, x1, since_reset, since_boot):
    flat = np.asarray(x0, np.int8).reshape(-1)
    out0 = flat[::-1].reshape((1,) + x0.shape[-3:])
    out1 = np.array([[int(flat.astype(np.int64).sum()), since_reset, since_boot, 0x12345678]], np.int32)
    out2 = (np.asarray(x1, np.float32) * np.float32(2) + np.float32(1)).reshape(1, 10)
    return [out0, out1, out2]


def make_inputs(seed, pattern="random", shape=(1, H, W, C)):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if pattern == "zeros":
        x0 = np.zeros(n, np.int8)
    elif pattern == "nonzero":  # no zero byte at all: full 254-byte COBS blocks
        x0 = rng.integers(1, 128, n).astype(np.int8)
    elif pattern == "ramp":
        x0 = (np.arange(n) % 256 - 128).astype(np.int8)
    else:
        x0 = rng.integers(-128, 128, n).astype(np.int8)
    x1 = rng.uniform(-100, 100, (1, 10)).astype(np.float32)
    return x0.reshape(shape), x1


def assert_outputs(result, x0, x1, since_reset, since_boot):
    want = fake_expected(x0, x1, since_reset, since_boot)
    assert len(result.outputs) == 3
    for got, exp in zip(result.outputs, want):
        assert got.dtype == exp.dtype and got.shape == exp.shape
        np.testing.assert_array_equal(got, exp)
    assert result.counter == 1000 + x0.size
    assert result.counter_unit == "instructions"


# -- building and running the host device -------------------------------------

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
DEVICE_ENV = {"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def _compile(out: Path, sources, defines=()):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    base = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", f"-I{COMMON}", f"-I{HOST}", *defines]
    errors = ""
    for extra in (SANITIZE, []):  # sanitizers when the toolchain has them
        r = subprocess.run(base + extra + [str(s) for s in sources] + ["-o", str(out)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return out
        errors = r.stderr
    pytest.fail(f"host device build failed:\n{errors}")


DEVICE_SOURCES = [COMMON / "tg_protocol.c", COMMON / "tg_main.c", HOST / "tg_hal_host.c", HOST / "fake_model.c"]


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("device_host")


@pytest.fixture(scope="session")
def device_exe(build_dir):
    return _compile(build_dir / "tg_device_host", DEVICE_SOURCES)


@pytest.fixture(scope="session")
def big_device_exe(build_dir):
    # 192x192x3 int8 = 110592 bytes: a ~100 KB input
    return _compile(build_dir / "tg_device_host_big", DEVICE_SOURCES, ["-DFAKE_H=192", "-DFAKE_W=192"])


@pytest.fixture(scope="session")
def driver_exe(build_dir):
    sources = [COMMON / "tg_protocol.c", HOST / "tg_hal_host.c", HOST / "fake_model.c", HOST / "tg_proto_stdio.c"]
    return _compile(build_dir / "tg_proto_stdio", sources)


def _check_log(path: Path):
    text = path.read_text(errors="replace") if path.exists() else ""
    assert "Sanitizer" not in text and "runtime error" not in text, text


class HostDevice:
    """The device program on a TCP socket (like QEMU's -serial tcp:...,server)."""

    count = 0

    def __init__(self, exe: Path, log_dir: Path, **env):
        HostDevice.count += 1
        self.log = log_dir / f"device-{os.getpid()}-{HostDevice.count}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=log,
                                         env={**os.environ, **DEVICE_ENV, **env})
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.match(r"TG_HOST_PORT (\d+)", line)
        assert match, f"host device did not start: {line!r} {self.log.read_text(errors='replace')}"
        self.port = int(match.group(1))
        self.url = f"socket://127.0.0.1:{self.port}"

    def client(self, **kwargs) -> DeviceClient:
        kwargs.setdefault("timeout", 1.0)
        return DeviceClient.open(self.url, **kwargs)

    def raw(self) -> "RawLink":
        return RawLink(socket.create_connection(("127.0.0.1", self.port), timeout=5))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        _check_log(self.log)


@pytest.fixture
def make_device(device_exe, tmp_path):
    devices = []

    def make(exe=None, **env):
        dev = HostDevice(exe or device_exe, tmp_path, **env)
        devices.append(dev)
        return dev

    yield make
    for dev in devices:
        dev.stop()


@pytest.fixture(scope="module")
def shared(device_exe, tmp_path_factory):
    dev = HostDevice(device_exe, tmp_path_factory.mktemp("shared_device"))
    client = dev.client()
    yield client
    client.close()
    dev.stop()


class RawLink:
    """A bare socket to the device: frames in and out, nothing else."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def request(self, ftype, seq, session=TOKEN, payload=b"", version=1) -> Frame:
        self.send(encode_frame(ftype, seq, session, payload, version))
        return self.next_frame()

    def next_wire(self, timeout=5.0) -> bytes:
        """The next non-empty run between delimiters, as it came on the wire."""
        deadline = time.monotonic() + timeout
        while True:
            start = 0
            while start < len(self.buf) and self.buf[start] == 0:
                start += 1
            end = self.buf.find(b"\0", start)
            if end > start:
                segment = bytes(self.buf[start:end])
                del self.buf[:end]
                return segment
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the device")
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("device closed the link")
            self.buf += data

    def next_frame(self, timeout=5.0) -> Frame:
        return decode_frame(self.next_wire(timeout))

    def silent(self, seconds=0.3) -> bool:
        try:
            self.next_wire(seconds)
        except TimeoutError:
            return True
        return False

    def close(self):
        self.sock.close()


def error_of(frame: Frame):
    assert frame.type == MSG_ERROR, f"expected an error reply, got type {frame.type:#x}"
    return proto.ERROR.unpack(frame.payload)  # (code, request, detail)


def chunk_args(index, offset):
    return struct.pack("<B3xI", index, offset)


# ============================================================================
# frame codec


# Worked examples of COBS (Cheshire & Baker; as listed on Wikipedia).
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize("raw,encoded", COBS_VECTORS)
def test_cobs_known_vectors(raw, encoded):
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@given(st.binary(max_size=2000))
def test_cobs_roundtrip(data):
    enc = cobs_encode(data)
    assert b"\0" not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


@given(st.binary(min_size=1, max_size=600).filter(lambda d: b"\0" not in d))
def test_cobs_decode_never_crashes(data):
    try:
        cobs_decode(data)
    except FrameError:
        pass


frames_st = st.builds(
    lambda t, s, sess, p: (t, s, sess, p),
    st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=1500),
)


@given(frames_st)
def test_frame_roundtrip(f):
    ftype, seq, session, payload = f
    wire = encode_frame(ftype, seq, session, payload)
    assert wire[0] == 0 and wire[-1] == 0 and b"\0" not in wire[1:-1]
    assert decode_frame(wire[1:-1]) == Frame(ftype, seq, session, payload)
    # layout: header, payload, CRC-32 (zlib) of both
    raw = cobs_decode(wire[1:-1])
    assert raw[:12] == struct.pack("<BBHII", 1, ftype, seq, session, len(payload))
    assert raw[12:-4] == payload
    assert raw[-4:] == struct.pack("<I", zlib.crc32(raw[:-4]))


@given(st.lists(frames_st, min_size=1, max_size=5), st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_reader_reassembles_any_split(frames, cuts):
    stream = b"".join(encode_frame(*f) for f in frames)
    reader, got, pos, k = FrameReader(), [], 0, 0
    while pos < len(stream):
        step = cuts[k % len(cuts)]
        got += reader.feed(stream[pos : pos + step])
        pos, k = pos + step, k + 1
    assert got == [Frame(*f) for f in frames]


@given(st.binary(max_size=400), st.lists(frames_st, min_size=1, max_size=3))
def test_reader_resynchronises_after_garbage(garbage, frames):
    reader = FrameReader()
    items = reader.feed(garbage) + reader.feed(b"".join(encode_frame(*f) for f in frames))
    good = [i for i in items if isinstance(i, Frame)]
    assert good == [Frame(*f) for f in frames]


@given(frames_st, st.data())
def test_any_single_bit_flip_is_rejected(f, data):
    wire = bytearray(encode_frame(*f))
    pos = data.draw(st.integers(1, len(wire) - 2))
    wire[pos] ^= 1 << data.draw(st.integers(0, 7))
    items = FrameReader().feed(bytes(wire))
    assert not [i for i in items if isinstance(i, Frame)]
    assert any(isinstance(i, FrameError) for i in items)


@given(frames_st, st.data())
def test_truncated_frames_are_rejected_and_next_frame_survives(f, data):
    wire = encode_frame(*f)
    cut = data.draw(st.integers(1, len(wire) - 2))  # keep the leading delimiter, lose the end
    follower = encode_frame(CMD_INFO, 7, 9)
    items = FrameReader().feed(wire[:cut] + follower)
    assert [i for i in items if isinstance(i, Frame)] == [Frame(CMD_INFO, 7, 9, b"")]


def test_crc_mismatch_named():
    raw = bytearray(frame_bytes(CMD_INFO, 1, 2, b"abc"))
    raw[-1] ^= 0x80
    with pytest.raises(FrameError, match="CRC"):
        decode_frame(cobs_encode(bytes(raw)))


def test_length_field_checked():
    raw = struct.pack("<BBHII", 1, CMD_INFO, 1, 2, 5) + b"ab"
    raw += struct.pack("<I", zlib.crc32(raw))
    with pytest.raises(FrameError, match="length"):
        decode_frame(cobs_encode(raw))


def test_reader_drops_oversized_run_then_resyncs():
    reader = FrameReader(max_frame=100)
    items = reader.feed(b"\x01" * 500)
    items += reader.feed(b"\x01" * 500 + encode_frame(CMD_INFO, 3, 4))
    assert isinstance(items[0], FrameError)
    assert items[-1] == Frame(CMD_INFO, 3, 4, b"")


# ============================================================================
# client logic against a Python stand-in for the device


def _info_payload(status=0, max_chunk=4, version=(1, 0)):
    """INFO reply of a device with one uint8 [1, 8] input and one uint8 [1, 8]
    output, laid out byte by byte as docs/protocol.md says."""
    board, runtime = b"py", b"sim"
    out = struct.pack("<BBBBiII32sBBBB", version[0], version[1], 1 if status == 0 else 0, 1, status,
                      777, max_chunk, bytes(range(32)), 1, 1, len(board), len(runtime))
    out += board + runtime
    for _ in range(2):
        out += struct.pack("<BBxxIfi", 3, 2, 8, 0.5, 3) + struct.pack("<2i", 1, 8)
    return out


class PyDevice:
    """Answers like the firmware for a model whose output is its input reversed.
    `override(frame)` may return bytes to send instead (or None)."""

    def __init__(self):
        self.session = 0
        self.buf = bytearray(8)
        self.filled = 0
        self.override = None
        self.requests: list[Frame] = []

    def reply(self, req, rtype, payload=b"", session=None, seq=None, version=1):
        return encode_frame(rtype, req.seq if seq is None else seq,
                            self.session if session is None else session, payload, version)

    def error(self, req, code, detail=0):
        return self.reply(req, MSG_ERROR, struct.pack("<BBxxI", code, req.type, detail & 0xFFFFFFFF))

    def __call__(self, req: Frame) -> bytes:
        self.requests.append(req)
        if self.override is not None:
            out = self.override(req)
            if out is not None:
                return out
        if req.type == CMD_INFO:
            self.session = req.session
            return self.reply(req, 0x81, _info_payload())
        if req.session != self.session:
            return self.error(req, proto.ERR_SESSION, self.session)
        if req.type == CMD_INPUT_CHUNK:
            index, offset = struct.unpack_from("<B3xI", req.payload)
            data = req.payload[8:]
            if offset > self.filled:
                return self.error(req, proto.ERR_INPUT_OFFSET, self.filled)
            self.buf[offset : offset + len(data)] = data
            self.filled = len(data) if offset == 0 else max(self.filled, offset + len(data))
            return self.reply(req, 0x82, struct.pack("<B3xI", index, self.filled))
        if req.type == CMD_INVOKE:
            if self.filled != 8:
                return self.error(req, proto.ERR_INPUT_INCOMPLETE, 0)
            self.filled = 0
            self.out = bytes(self.buf[::-1])
            (limit,) = struct.unpack("<I", req.payload)
            inline = 8 <= limit
            return self.reply(req, 0x83, struct.pack("<QBBBx", 42, 1, 1, int(inline)) + struct.pack("<I", 8)
                              + (self.out if inline else b""))
        if req.type == CMD_READ_OUTPUT:
            index, offset, n = struct.unpack("<B3xII", req.payload)
            return self.reply(req, 0x85, struct.pack("<B3xI", index, offset) + self.out[offset : offset + n])
        if req.type == CMD_RESET_STATE:
            return self.reply(req, 0x84)
        return self.error(req, proto.ERR_UNKNOWN_COMMAND, req.type)


class ScriptedPort:
    """A pyserial-like port wired to a PyDevice."""

    def __init__(self, device):
        self.device = device
        self.timeout = 0
        self.rx = bytearray()
        self.writes: list[bytes] = []
        self.reader = FrameReader()

    def write(self, data):
        self.writes.append(bytes(data))
        for item in self.reader.feed(data):
            if isinstance(item, Frame):
                self.rx += self.device(item)
        return len(data)

    def read(self, size=1):
        if not self.rx:
            if self.timeout:
                time.sleep(min(self.timeout, 0.005))
            return b""
        out = bytes(self.rx[:size])
        del self.rx[:size]
        return out

    def close(self):
        pass


def scripted(**kwargs):
    dev = PyDevice()
    port = ScriptedPort(dev)
    kwargs.setdefault("timeout", 0.2)
    return dev, port, DeviceClient(port, **kwargs)


X8 = np.arange(1, 9, dtype=np.uint8).reshape(1, 8)


def test_client_parses_info_and_infers_in_chunks():
    dev, port, client = scripted()
    info = client.info()
    assert (info.board, info.runtime, info.arena_bytes, info.max_chunk) == ("py", "sim", 777, 4)
    assert info.signature == bytes(range(32)).hex()
    assert info.inputs[0].shape == (1, 8) and info.inputs[0].dtype == np.uint8
    assert (info.inputs[0].scale, info.inputs[0].zero_point, info.inputs[0].bytes) == (0.5, 3, 8)
    assert info.counter_unit == "instructions" and info.model_ready
    result = client.infer([X8])
    np.testing.assert_array_equal(result.outputs[0], X8[:, ::-1])
    assert (result.counter, result.counter_unit) == (42, "instructions")
    # chunks capped at the device's max_chunk (4): two chunks, then INVOKE
    assert [r.type for r in dev.requests] == [CMD_INFO, CMD_INPUT_CHUNK, CMD_INPUT_CHUNK, CMD_INVOKE]
    assert len({r.seq for r in dev.requests}) == 4
    assert {r.session for r in dev.requests} == {dev.session} and dev.session != 0


def test_client_reads_large_outputs_in_chunks():
    dev, port, client = scripted(chunk_size=3)
    np.testing.assert_array_equal(client.infer([X8]).outputs[0], X8[:, ::-1])
    assert [r.type for r in dev.requests] == [CMD_INFO] + [CMD_INPUT_CHUNK] * 3 + [CMD_INVOKE] + [CMD_READ_OUTPUT] * 3
    reads = [struct.unpack("<B3xII", r.payload) for r in dev.requests if r.type == CMD_READ_OUTPUT]
    assert reads == [(0, 0, 3), (0, 3, 3), (0, 6, 2)]


def test_stale_and_garbage_replies_are_not_taken():
    dev, port, client = scripted()

    def override(req):
        if req.type == CMD_INFO:
            dev.session = req.session
            stale = dev.reply(req, 0x81, _info_payload(max_chunk=99), seq=(req.seq - 1) & 0xFFFF)
            return stale + b"\x00\x13\x37 noise \x00" + dev.reply(req, 0x81, _info_payload())
        return None

    dev.override = override
    assert client.info().max_chunk == 4
    assert client.stats.stale_frames == 1
    # the noise run is not mistaken for anything and costs one retransmission
    assert client.stats.bad_frames == 1


def test_corrupted_replies_retry_then_fail_with_bounded_attempts():
    dev, port, client = scripted(retries=2)

    def override(req):
        good = bytearray(dev.reply(req, 0x81, _info_payload()))
        good[len(good) // 2] ^= 0x40
        return bytes(good)

    dev.override = override
    with pytest.raises(ProtocolError, match="INFO failed 3 times") as exc:
        client.info()
    assert not isinstance(exc.value, DeviceTimeout)
    assert len(port.writes) == 3
    assert len({w for w in port.writes}) == 1  # retransmissions are the same frame, same seq


def test_device_crc_complaint_leads_to_retransmission():
    dev, port, client = scripted()
    complaints = []

    def override(req):
        if req.type == CMD_INFO and not complaints:
            complaints.append(req.seq)
            return dev.error(req, proto.ERR_BAD_CRC)
        return None

    dev.override = override
    assert client.info().board == "py"
    assert client.stats.retransmissions == 1 and len(port.writes) == 2


def test_silence_gives_device_timeout_after_bounded_wait():
    dev, port, client = scripted(timeout=0.1, retries=2)
    dev.override = lambda req: b""
    start = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no reply to INFO after 3 attempts"):
        client.info()
    assert 0.29 < time.monotonic() - start < 1.5
    assert len(port.writes) == 3


def test_text_the_device_prints_is_shown_on_timeout():
    dev, port, client = scripted(timeout=0.05, retries=1)
    dev.override = lambda req: b"" if len(dev.requests) > 1 else b"\r\n*** tinygen fault: HardFault pc=0x00001234\r\n"
    with pytest.raises(DeviceTimeout, match=r"printed '\*\*\* tinygen fault: HardFault pc=0x00001234'$"):
        client.info()


def test_wrong_session_in_reply_means_reset():
    dev, port, client = scripted()
    client.info()
    dev.override = lambda req: dev.reply(req, 0x84, session=0) if req.type == CMD_RESET_STATE else None
    with pytest.raises(DeviceReset):
        client.reset_state()
    with pytest.raises(DeviceReset, match="info"):  # sticky until a new handshake
        client.infer([X8])
    dev.override = None
    client.info()
    client.reset_state()


def test_other_major_version_is_refused():
    dev, port, client = scripted()
    dev.override = lambda req: dev.reply(req, 0x81, _info_payload(version=(2, 0)), version=2)
    with pytest.raises(VersionMismatch, match="protocol version 2"):
        client.info()


def test_unexpected_reply_type_is_a_protocol_error():
    dev, port, client = scripted()
    dev.override = lambda req: dev.reply(req, 0x84)
    with pytest.raises(ProtocolError, match="frame type 0x84"):
        client.info()


def test_resume_where_the_device_says_after_input_offset_error():
    dev, port, client = scripted()
    client.info()
    lost = []

    def override(req):
        # the second chunk: pretend a corrupted frame made the device drop everything
        if req.type == CMD_INPUT_CHUNK and struct.unpack_from("<B3xI", req.payload)[1] == 4 and not lost:
            lost.append(req.seq)
            dev.filled = 0
            return dev.error(req, proto.ERR_INPUT_OFFSET, 0)
        return None

    dev.override = override
    np.testing.assert_array_equal(client.infer([X8]).outputs[0], X8[:, ::-1])
    offsets = [struct.unpack_from("<B3xI", r.payload)[1] for r in dev.requests if r.type == CMD_INPUT_CHUNK]
    assert offsets == [0, 4, 0, 4]


def test_device_error_carries_code_and_one_line_message():
    dev, port, client = scripted()
    client.info()
    dev.override = lambda req: dev.error(req, proto.ERR_MODEL, -7) if req.type == CMD_INVOKE else None
    with pytest.raises(DeviceError) as exc:
        client.infer([X8])
    assert (exc.value.code, exc.value.name, exc.value.command) == (proto.ERR_MODEL, "MODEL", CMD_INVOKE)
    assert "status -7" in str(exc.value) and "\n" not in str(exc.value)


def test_input_mismatch_is_caught_before_sending():
    dev, port, client = scripted()
    client.info()
    sent = len(port.writes)
    with pytest.raises(InputMismatch, match="takes 1 inputs, got 2"):
        client.infer([X8, X8])
    with pytest.raises(InputMismatch, match="must be uint8, got float32; quantize with scale 0.5 and zero point 3"):
        client.infer([X8.astype(np.float32)])
    with pytest.raises(InputMismatch, match=r"shape \(1, 8\), got \(2, 4\)"):
        client.infer([X8.reshape(2, 4)])
    assert len(port.writes) == sent
    client.infer([X8.reshape(8)])  # the batch dimension of 1 may be left out


# ============================================================================
# the device code, built for the host


def test_boot_frame_and_info(make_device):
    # (pyserial's socket:// open() discards what arrived before it returned,
    # so the BOOT frame is checked on a raw socket and on a pipe elsewhere)
    dev = make_device()
    client = dev.client()
    info = client.info()
    assert (info.protocol_version, info.protocol_minor) == (1, 1)
    assert (info.board, info.runtime, info.signature) == ("host", "fake", SIGNATURE)
    # minor 1: what the model says it uses (the fake: its whole arena) and no error text
    assert (info.arena_used, info.model_error) == (12345, "")
    assert (info.arena_bytes, info.counter_unit, info.max_chunk, info.model_status) == (12345, "instructions", 16384, 0)
    assert not info.big_endian
    i0, i1 = info.inputs
    assert (i0.shape, i0.dtype, i0.scale, i0.zero_point, i0.bytes) == ((1, H, W, C), np.int8, 0.0078125, -1, IN0_BYTES)
    assert (i1.shape, i1.dtype, i1.scale, i1.zero_point, i1.bytes) == ((1, 10), np.float32, 0.0, 0, 40)
    assert [(o.shape, o.dtype.name, o.bytes) for o in info.outputs] == [
        ((1, H, W, C), "int8", IN0_BYTES), ((1, 4), "int32", 16), ((1, 10), "float32", 40)]
    assert info.outputs[0].scale == 0.0078125 and info.outputs[0].zero_point == -1
    client.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), pattern=st.sampled_from(["random", "zeros", "nonzero", "ramp"]))
def test_infer_matches_fake_semantics(shared, seed, pattern):
    x0, x1 = make_inputs(seed, pattern)
    shared.reset_state()
    before = shared.infer([x0, x1]).outputs[1][0, 2]
    result = shared.infer([x0, x1])
    assert_outputs(result, x0, x1, since_reset=2, since_boot=before + 1)


def test_reset_state_restarts_the_model_state(make_device):
    client = make_device().client()
    x0, x1 = make_inputs(1)
    for n in (1, 2, 3):
        assert_outputs(client.infer([x0, x1]), x0, x1, n, n)
    client.reset_state()
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 4)
    assert client.stats.retransmissions <= client.stats.boots  # a clean link: only a BOOT seen during INFO resends


@pytest.mark.parametrize("chunk", [1000, 4096, 65536])
def test_chunked_upload(make_device, chunk):
    client = make_device().client(chunk_size=chunk)
    info = client.info()
    requests = client.stats.requests
    x0, x1 = make_inputs(chunk)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    per = min(chunk, info.max_chunk)
    reads = 0 if IN0_BYTES + 16 + 40 <= chunk else -(-IN0_BYTES // per) + 1 + 1
    # in0 chunks, in1, INVOKE, then output reads unless they fit in the reply
    assert client.stats.requests - requests == -(-IN0_BYTES // per) + 1 + 1 + reads


def test_large_input_of_100k(make_device, big_device_exe):
    client = make_device(big_device_exe).client(chunk_size=16384)
    info = client.info()
    assert info.inputs[0].bytes == 192 * 192 * 3 == 110592
    x0, x1 = make_inputs(5, shape=(1, 192, 192, 3))
    start = time.monotonic()
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    assert time.monotonic() - start < 10


def test_model_error_reply(make_device):
    client = make_device().client()
    x0, x1 = make_inputs(2)
    x1[0, 0] = -1234.5
    with pytest.raises(DeviceError) as exc:
        client.infer([x0, x1])
    assert (exc.value.code, proto.signed32(exc.value.detail)) == (proto.ERR_MODEL, -7)
    x1[0, 0] = 1.0
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)


def test_model_init_failure_is_reported(device_exe, tmp_path):
    port = PipeDevice(device_exe, tmp_path, TG_FAKE_INIT_STATUS="-3")
    try:
        client = DeviceClient(port, timeout=1.0)
        boot = client.wait_boot(10)
        assert (boot.protocol_version, boot.model_status, boot.model_ready) == (1, -3, False)
        info = client.info()
        assert info.model_status == -3 and not info.model_ready
        with pytest.raises(DeviceError, match="status -3") as exc:
            client.infer(list(make_inputs(3)))
        assert exc.value.code == proto.ERR_MODEL
    finally:
        port.close()


def test_error_replies_byte_by_byte(make_device):
    link = make_device().raw()
    boot = link.next_frame()
    assert (boot.type, boot.seq, boot.session, boot.payload) == (MSG_BOOT, 0, 0, struct.pack("<BBBxi", 1, 1, 1, 0))

    # nothing but INFO before a handshake
    assert error_of(link.request(CMD_INVOKE, 5, session=0, payload=INLINE_ALL)) == (proto.ERR_SESSION, CMD_INVOKE, 0)
    info = link.request(CMD_INFO, 6)
    assert (info.type, info.seq, info.session) == (0x81, 6, TOKEN)

    assert error_of(link.request(0x42, 7)) == (proto.ERR_UNKNOWN_COMMAND, 0x42, 0x42)
    assert error_of(link.request(CMD_RESET_STATE, 8, payload=b"xyz")) == (proto.ERR_BAD_LENGTH, CMD_RESET_STATE, 0)
    assert error_of(link.request(CMD_INFO, 9, version=2)) == (proto.ERR_VERSION, CMD_INFO, 1)
    assert error_of(link.request(CMD_RESET_STATE, 10, session=TOKEN + 1)) == (proto.ERR_SESSION, CMD_RESET_STATE, TOKEN)

    # corrupted frames: bad CRC, length field disagreeing with the frame
    raw = bytearray(frame_bytes(CMD_RESET_STATE, 11, TOKEN))
    raw[-2] ^= 0x10
    link.send(b"\0" + cobs_encode(bytes(raw)) + b"\0")
    reply = link.next_frame()
    assert reply.seq == 11 and error_of(reply) == (proto.ERR_BAD_CRC, CMD_RESET_STATE, 0)
    raw = struct.pack("<BBHII", 1, CMD_RESET_STATE, 12, TOKEN, 5)
    link.send(b"\0" + cobs_encode(raw + struct.pack("<I", zlib.crc32(raw))) + b"\0")
    assert error_of(link.next_frame()) == (proto.ERR_FRAME, CMD_RESET_STATE, 16)
    # a frame cut short by the next one's delimiter
    wire = encode_frame(CMD_INPUT_CHUNK, 13, TOKEN, chunk_args(1, 0) + bytes(range(1, 41)))
    link.send(wire[:-6])
    link.send(encode_frame(CMD_RESET_STATE, 14, TOKEN))
    assert error_of(link.next_frame())[:2] == (proto.ERR_FRAME, CMD_INPUT_CHUNK)
    assert link.next_frame().type == 0x84
    # noise too short to carry a header gets no reply at all
    link.send(b"\0\x03\x01\x02\0\0\x05abcd\0")
    assert link.silent()

    # INPUT_CHUNK checks
    def chunk(seq, index, offset, data):
        return link.request(CMD_INPUT_CHUNK, seq, payload=chunk_args(index, offset) + data)

    assert error_of(chunk(20, 2, 0, b"ab")) == (proto.ERR_INPUT_INDEX, CMD_INPUT_CHUNK, 2)
    assert error_of(chunk(21, 0, IN0_BYTES - 4, bytes(10))) == (proto.ERR_INPUT_SIZE, CMD_INPUT_CHUNK, IN0_BYTES)
    assert error_of(chunk(22, 1, 0, bytes(41))) == (proto.ERR_INPUT_SIZE, CMD_INPUT_CHUNK, 40)
    assert error_of(chunk(23, 0, 100, b"ab")) == (proto.ERR_INPUT_OFFSET, CMD_INPUT_CHUNK, 0)
    assert error_of(chunk(24, 0, 0, bytes(16385))) == (proto.ERR_BAD_LENGTH, CMD_INPUT_CHUNK, 16384)
    assert error_of(link.request(CMD_INPUT_CHUNK, 25, payload=b"\0\0\0")) == (proto.ERR_BAD_LENGTH, CMD_INPUT_CHUNK, 16384)
    ack = chunk(26, 0, 0, bytes(100))
    assert (ack.type, ack.payload) == (0x82, struct.pack("<B3xI", 0, 100))
    assert chunk(27, 0, 50, bytes(100)).payload == struct.pack("<B3xI", 0, 150)
    assert error_of(chunk(28, 0, 151, b"x")) == (proto.ERR_INPUT_OFFSET, CMD_INPUT_CHUNK, 150)
    assert error_of(link.request(CMD_INVOKE, 29, payload=INLINE_ALL)) == (proto.ERR_INPUT_INCOMPLETE, CMD_INVOKE, 0)
    assert error_of(link.request(CMD_INVOKE, 30, payload=b"x")) == (proto.ERR_BAD_LENGTH, CMD_INVOKE, 4)
    read = struct.pack("<B3xII", 0, 0, 16)
    assert error_of(link.request(CMD_READ_OUTPUT, 31, payload=read)) == (proto.ERR_NO_OUTPUT, CMD_READ_OUTPUT, 0)
    assert error_of(link.request(CMD_READ_OUTPUT, 32, payload=read[:8])) == (proto.ERR_BAD_LENGTH, CMD_READ_OUTPUT, 12)
    link.close()


def _upload_raw(link, x0, x1, seq, session=TOKEN):
    blob0 = x0.tobytes()
    for off in range(0, len(blob0), 16384):
        assert link.request(CMD_INPUT_CHUNK, seq, session, chunk_args(0, off) + blob0[off : off + 16384]).type == 0x82
        seq += 1
    assert link.request(CMD_INPUT_CHUNK, seq, session, chunk_args(1, 0) + x1.astype("<f4").tobytes()).type == 0x82
    return seq + 1


def test_invoke_retransmission_runs_the_model_once(make_device):
    link = make_device().raw()
    link.next_frame()  # BOOT
    link.request(CMD_INFO, 1)
    x0, x1 = make_inputs(9)
    seq = _upload_raw(link, x0, x1, 2)
    link.send(encode_frame(CMD_INVOKE, seq, TOKEN, INLINE_ALL) * 2)
    first_wire, second_wire = link.next_wire(), link.next_wire()
    assert first_wire == second_wire
    first = decode_frame(first_wire)
    assert first.type == 0x83 and first.seq == seq
    # the device encoder produces exactly what the host encoder does
    assert b"\0" + first_wire + b"\0" == encode_frame(first.type, first.seq, first.session, first.payload)
    counter, unit, n_out, flags = struct.unpack_from("<QBBBx", first.payload)
    assert (counter, unit, n_out, flags) == (COUNTER_PER_RUN, 1, 3, 1)
    pos = 12 + 4 + IN0_BYTES + 4
    totals = (int(x0.astype(np.int64).sum()), 1, 1, 0x12345678)
    assert struct.unpack_from("<4i", first.payload, pos) == totals

    # outputs can be read back, in range only
    def read(seq, index, offset, n):
        return link.request(CMD_READ_OUTPUT, seq, payload=struct.pack("<B3xII", index, offset, n))

    got = read(100, 1, 4, 12)
    assert (got.type, got.payload) == (0x85, struct.pack("<B3xI", 1, 4) + struct.pack("<3i", *totals[1:]))
    assert read(101, 0, IN0_BYTES - 3, 3).payload[8:] == x0.reshape(-1)[2::-1].tobytes()
    assert error_of(read(102, 3, 0, 1)) == (proto.ERR_OUTPUT_INDEX, CMD_READ_OUTPUT, 3)
    assert error_of(read(103, 1, 8, 9)) == (proto.ERR_OUTPUT_RANGE, CMD_READ_OUTPUT, 16)
    assert error_of(read(104, 0, 0, 16385)) == (proto.ERR_BAD_LENGTH, CMD_READ_OUTPUT, 16384)
    # with a smaller inline limit the reply carries sizes only; the input was
    # consumed, so a new INVOKE needs a new upload
    assert error_of(link.request(CMD_INVOKE, 105, payload=INLINE_ALL)) == (proto.ERR_INPUT_INCOMPLETE, CMD_INVOKE, 0)
    seq = _upload_raw(link, x0, x1, 106)
    small = link.request(CMD_INVOKE, seq, payload=struct.pack("<I", 1000))
    assert small.payload == struct.pack("<QBBBx", COUNTER_PER_RUN, 1, 3, 0) + struct.pack("<3I", IN0_BYTES, 16, 40)
    assert read(seq + 1, 1, 0, 16).payload[8:] == struct.pack("<4i", totals[0], 2, 2, 0x12345678)
    link.close()


def test_garbage_on_the_line_is_survived(make_device):
    dev = make_device()
    client = dev.client()
    x0, x1 = make_inputs(4)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    rng = np.random.default_rng(0)
    for n in range(2, 6):
        client.port.write(rng.integers(0, 256, int(rng.integers(1, 3000))).astype(np.uint8).tobytes())
        assert_outputs(client.infer([x0, x1]), x0, x1, n, n)


class NoisyPort:
    """Flips bits in and drops bytes from both directions of a port."""

    def __init__(self, port, seed, p_flip, p_drop):
        self.port = port
        self.rng = np.random.default_rng(seed)
        self.p_flip, self.p_drop = p_flip, p_drop
        self.damaged = 0

    @property
    def timeout(self):
        return self.port.timeout

    @timeout.setter
    def timeout(self, value):
        self.port.timeout = value

    def _noise(self, data: bytes) -> bytes:
        if not data:
            return data
        arr = np.frombuffer(data, np.uint8).copy()
        flip = self.rng.random(arr.size) < self.p_flip
        arr[flip] ^= (1 << self.rng.integers(0, 8, int(flip.sum()))).astype(np.uint8)
        keep = self.rng.random(arr.size) >= self.p_drop
        self.damaged += int(flip.sum()) + int((~keep).sum())
        return arr[keep].tobytes()

    def write(self, data):
        return self.port.write(self._noise(bytes(data)))

    def read(self, size=1):
        return self._noise(self.port.read(size))

    def close(self):
        self.port.close()


def test_noisy_link_never_yields_a_wrong_result(make_device):
    dev = make_device()
    client = dev.client()
    client.info()  # clean handshake, then noise
    client.port = NoisyPort(client.port, seed=1, p_flip=1e-5, p_drop=5e-6)
    client.timeout, client.retries, client.chunk_size = 0.3, 8, 2048
    x0, x1 = make_inputs(6)
    want = fake_expected(x0, x1, 0, 0)
    ok, failed, last_run = 0, 0, 0
    for _ in range(40):
        try:
            result = client.infer([x0, x1])
        except DeviceReset:
            raise
        except ProtocolError:
            failed += 1
            continue
        ok += 1
        for k in (0, 2):
            np.testing.assert_array_equal(result.outputs[k], want[k])
        total, since_reset, since_boot, magic = result.outputs[1][0]
        assert (total, magic) == (want[1][0, 0], 0x12345678)
        assert since_reset == since_boot > last_run  # each inference ran at most once
        last_run = since_boot
    assert client.port.damaged > 0 and client.stats.retransmissions > 0
    assert ok >= 30, (ok, failed, client.stats)


def test_timeout_when_nothing_answers():
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def swallow():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                received.extend(data)

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    client = DeviceClient.open(f"socket://127.0.0.1:{server.getsockname()[1]}", timeout=0.2, retries=2)
    start = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no reply to INFO after 3 attempts"):
        client.info()
    assert 0.55 < time.monotonic() - start < 2.0
    client.close()
    thread.join(5)
    server.close()
    frames = [i for i in FrameReader().feed(bytes(received))]
    assert len(frames) == 3 and len({f.seq for f in frames}) == 1 and frames[0].type == CMD_INFO


def test_stalled_device_times_out_then_recovers(make_device):
    dev = make_device()
    client = dev.client(timeout=0.3, retries=1)
    x0, x1 = make_inputs(7)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    os.kill(dev.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(DeviceTimeout):
            client.infer([x0, x1])
    finally:
        os.kill(dev.proc.pid, signal.SIGCONT)
    # the queued retransmissions are answered late; those replies are stale
    assert_outputs(client.infer([x0, x1]), x0, x1, 2, 2)
    assert client.stats.stale_frames >= 1


def test_unopenable_url_is_a_protocol_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ProtocolError, match="cannot open"):
        DeviceClient.open(f"socket://127.0.0.1:{port}")


def test_link_lost_is_a_protocol_error(make_device):
    dev = make_device()
    client = dev.client()
    client.info()
    dev.proc.kill()
    dev.proc.wait()
    with pytest.raises(ProtocolError, match="link lost"):
        client.infer(list(make_inputs(8)))


# -- device reset detection ----------------------------------------------------


class PipeDevice:
    """A pyserial-like port over the device program's stdin/stdout; restart()
    is a power cycle of the board behind a serial line that stays open."""

    def __init__(self, exe: Path, log_dir: Path, **env):
        self.exe, self.log_dir, self.env, self.timeout, self.starts = exe, log_dir, env, 0, 0
        self._start()

    def _start(self):
        self.starts += 1
        self.log = self.log_dir / f"pipe-device-{self.starts}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(self.exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, env={**os.environ, **DEVICE_ENV, **self.env,
                                                              "TG_HOST_TRANSPORT": "stdio"})

    def restart(self):
        self.close()
        self._start()

    def read(self, size=1):
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], self.timeout or 0)[0]:
            return b""
        data = os.read(fd, size)
        if not data:
            raise OSError("device program closed its output")
        return data

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        return len(data)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()
        _check_log(self.log)


@pytest.fixture
def pipe_device(device_exe, tmp_path):
    port = PipeDevice(device_exe, tmp_path)
    yield port
    port.close()


def test_reset_between_commands_is_detected_by_the_boot_frame(pipe_device):
    client = DeviceClient(pipe_device, timeout=1.0)
    x0, x1 = make_inputs(10)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    pipe_device.restart()
    time.sleep(0.5)  # the new BOOT frame is waiting on the line
    with pytest.raises(DeviceReset, match="new boot"):
        client.infer([x0, x1])
    with pytest.raises(DeviceReset, match="info"):
        client.reset_state()
    client.info()
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)


def test_reset_is_detected_even_when_the_boot_frame_is_lost(pipe_device):
    client = DeviceClient(pipe_device, timeout=1.0)
    x0, x1 = make_inputs(11)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    boots = client.stats.boots
    pipe_device.restart()
    swallowed = b""
    pipe_device.timeout = 5
    while swallowed.count(b"\0") < 2:  # take the BOOT frame off the line
        swallowed += pipe_device.read(1)
    assert decode_frame(swallowed[1:-1]).type == MSG_BOOT
    with pytest.raises(DeviceReset, match="refused"):
        client.infer([x0, x1])
    assert client.stats.boots == boots
    client.info()
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)


def test_reset_during_inference_is_detected(make_device):
    client = make_device().client()
    x0, x1 = make_inputs(12)
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)
    boom = x1.copy()
    boom[0, 0] = 4242.0  # the fake model reboots the device mid-inference
    with pytest.raises(DeviceReset, match="during INVOKE"):
        client.infer([x0, boom])
    client.info()
    assert_outputs(client.infer([x0, x1]), x0, x1, 1, 1)


# -- the step API, driven from a byte stream -------------------------------------


def _drive(driver_exe, stream: bytes, piece=1) -> list:
    r = subprocess.run([str(driver_exe), str(piece)], input=stream, capture_output=True,
                       env={**os.environ, **DEVICE_ENV}, timeout=60)
    assert r.returncode == 0 and b"Sanitizer" not in r.stderr and b"runtime error" not in r.stderr, r.stderr
    return r.stdout


def _session_stream(x0, x1, chunk=7000):
    out = encode_frame(CMD_INFO, 1, TOKEN)
    blob0, seq = x0.tobytes(), 2
    for off in range(0, len(blob0), chunk):
        out += encode_frame(CMD_INPUT_CHUNK, seq, TOKEN, chunk_args(0, off) + blob0[off : off + chunk])
        seq += 1
    out += encode_frame(CMD_INPUT_CHUNK, seq, TOKEN, chunk_args(1, 0) + x1.tobytes())
    return out + encode_frame(CMD_INVOKE, seq + 1, TOKEN, INLINE_ALL)


def test_step_api_output_does_not_depend_on_how_bytes_arrive(driver_exe):
    x0, x1 = make_inputs(13)
    stream = _session_stream(x0, x1)
    outputs = {piece: _drive(driver_exe, stream, piece) for piece in (1, 5, 4096, 1 << 16)}
    assert len(set(outputs.values())) == 1
    frames = FrameReader().feed(outputs[1])
    assert [f.type for f in frames] == [MSG_BOOT, 0x81] + [0x82] * 5 + [0x83]


@settings(max_examples=40, deadline=None)
@given(garbage=st.binary(max_size=3000))
def test_step_api_survives_garbage(driver_exe, garbage):
    out = _drive(driver_exe, garbage + encode_frame(CMD_INFO, 77, TOKEN), piece=13)
    frames = [f for f in FrameReader().feed(out) if isinstance(f, Frame)]
    assert frames[0].type == MSG_BOOT
    assert (frames[-1].type, frames[-1].seq, frames[-1].session) == (0x81, 77, TOKEN)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                                st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_uploads_never_reach_the_model(driver_exe, seed, flips):
    """Whatever bytes of a session are damaged, an INVOKE that succeeds ran on
    exactly the input the host meant: never on partly written input."""
    x0, x1 = make_inputs(seed, shape=(1, H, W, C))
    stream = bytearray(_session_stream(x0, x1))
    for where, value in flips:
        stream[int(where * len(stream))] = value
    items = FrameReader().feed(_drive(driver_exe, bytes(stream), piece=64))
    results = [f for f in items if isinstance(f, Frame) and f.type == 0x83]
    for frame in results:
        out0 = np.frombuffer(frame.payload, np.int8, IN0_BYTES, 16)
        np.testing.assert_array_equal(out0, x0.reshape(-1)[::-1])


# -- on emulated Cortex-M boards --------------------------------------------------

BSP = ROOT / "firmware_templates" / "pio_platform"
QEMU_BOARDS = {  # QEMU machine: board support file, linker script
    "mps2-an386": ("board_mps2.c", "qemu-mps2.ld"),
    "netduinoplus2": ("board_stm32f405.c", "qemu-stm32f405.ld"),
}


@pytest.mark.slow
@pytest.mark.parametrize("machine", sorted(QEMU_BOARDS))
def test_protocol_on_an_emulated_board(machine, tmp_path):
    """The same device code, built for Cortex-M4 with the QEMU board support,
    run in qemu-system-arm: handshake, exact outputs, exact instruction
    counts, RESET_STATE, and a reset in the middle of an inference."""
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    from tinygen.device.qemu import QemuProcess

    board_c, ldscript = QEMU_BOARDS[machine]
    elf = tmp_path / "fw.elf"
    # the Cortex-M BSP_SOURCES of firmware_templates/pio_platform/builder/main.py
    bsp_files = ("startup.c", "hal.c", "tg_memory.c", "tg_fault_text.c", board_c)
    sources = [BSP / "bsp" / "src" / name for name in bsp_files]
    sources += [COMMON / "tg_protocol.c", COMMON / "tg_main.c", HOST / "fake_model.c", HOST / "tg_host_arm.c"]
    cmd = ["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2",
           "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
           "-DTG_QEMU_BOARD=1", "-DFAKE_H=32", "-DFAKE_W=32",
           f"-I{BSP / 'bsp' / 'include'}", f"-I{BSP / 'bsp' / 'src'}", f"-I{COMMON}", f"-I{HOST}",
           *map(str, sources), "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
           f"-L{BSP / 'ldscripts'}", f"-T{BSP / 'ldscripts' / ldscript}", "-lm", "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x0, x1 = make_inputs(21, shape=(1, 32, 32, 3))
    with QemuProcess(machine, elf) as qemu:
        client = DeviceClient.open(qemu.url, timeout=5.0)
        info = client.info()
        assert (info.board, info.counter_unit, info.inputs[0].shape) == ("host", "instructions", (1, 32, 32, 3))
        counters = []
        for n in (1, 2):
            result = client.infer([x0, x1])
            for got, want in zip(result.outputs, fake_expected(x0, x1, n, n)):
                np.testing.assert_array_equal(got, want)
            counters.append(result.counter)
        assert counters[0] == counters[1] > 1000  # -icount: the same work, the same count
        client.reset_state()
        assert client.infer([x0, x1]).outputs[1][0, 1:3].tolist() == [1, 3]
        boom = x1.copy()
        boom[0, 0] = 4242.0
        with pytest.raises(DeviceReset):
            client.infer([x0, boom])
        client.info()
        assert client.infer([x0, x1]).outputs[1][0, 1:3].tolist() == [1, 1]
        client.close()


# -- portability and size -----------------------------------------------------

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wshadow", "-Wconversion"]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_device_code_compiles_cleanly(compiler, tmp_path):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    for src in ("tg_protocol.c", "tg_main.c"):
        r = subprocess.run([compiler, *STRICT, "-c", str(COMMON / src), "-o", str(tmp_path / (src + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_device_code_fits_a_cortex_m4(tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    obj = tmp_path / "tg_protocol.o"
    r = subprocess.run(["arm-none-eabi-gcc", *STRICT, "-Os", "-mcpu=cortex-m4", "-mthumb", "-c",
                        str(COMMON / "tg_protocol.c"), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in size.stdout.splitlines()[1].split()[:3])
    assert text < 4096 and data == 0 and bss < 512, size.stdout
