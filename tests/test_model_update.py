"""Model updates without reflashing (docs/model-update.md).

Fast: the image format, signatures and the host's refusals; the aot
fingerprint (weights may change, nothing else); generated update sources
compile with -Werror.  Slow: an updatable firmware in QEMU with its slots in
a flash file -- install, persistence across a QEMU restart, activate, every
refusal with the running model still bit-exact, resume, and the power-loss
campaign.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from update_models import retrained

from tinygen.update import keys
from tinygen.update.image import (
    HEADER_SIZE,
    ImageError,
    Meta,
    Version,
    build_image,
    check_image,
    parse_image,
    selftest_tlv,
)

BOARD = "qemu-cortex-m4"


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "update-key.pem"
    pub = keys.generate(path)
    return path, pub, keys.load_private(path)


def _meta() -> Meta:
    return Meta("aot", 1000, bytes(range(32)), bytes(32))


def _image(key, payload=b"\x01\x02\x03" * 100):
    return build_image(payload, _meta(), Version(1, 2, 3), selftest_tlv([b"in"], [b"out"]),
                       keys.signer(key) if key is not None else None, security_counter=4)


# ---- image format ----------------------------------------------------------

def test_image_round_trip_follows_mcuboot_layout(signing_key):
    _path, pub, key = signing_key
    data = _image(key)
    magic, _load, hdr, prot, body = struct.unpack_from("<IIHHI", data)
    assert magic == 0x96F3B83D and hdr == HEADER_SIZE and body == 300
    assert struct.unpack_from("<H", data, hdr + body)[0] == 0x6908        # protected TLVs
    assert struct.unpack_from("<H", data, hdr + body + prot)[0] == 0x6907  # TLVs
    img = parse_image(data)
    assert img.version == Version(1, 2, 3) and img.security_counter == 4
    assert img.payload == b"\x01\x02\x03" * 100 and img.meta == _meta()
    assert img.digest == hashlib.sha512(data[:img.signed_len]).digest()
    check_image(img, pub)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-10], "truncated"),
    (lambda d: d[:HEADER_SIZE + 5], "truncated"),
    (lambda d: b"\0" + d[1:], "not a model image"),
    (lambda d: d[:HEADER_SIZE + 7] + bytes([d[HEADER_SIZE + 7] ^ 1]) + d[HEADER_SIZE + 8:],
     "corrupted"),
])
def test_damaged_images_are_refused_with_the_reason(signing_key, damage, message):
    _path, pub, key = signing_key
    with pytest.raises(ImageError, match=message):
        check_image(parse_image(damage(_image(key))), pub)


def test_unsigned_and_foreign_signatures_are_refused(signing_key, tmp_path):
    _path, pub, key = signing_key
    with pytest.raises(ImageError, match="not signed"):
        check_image(parse_image(_image(None)), pub)
    other = keys.load_private(_keygen(tmp_path / "other.pem"))
    with pytest.raises(ImageError, match="another key"):
        check_image(parse_image(_image(other)), pub)


def _keygen(path: Path) -> Path:
    keys.generate(path)
    return path


def test_versions_parse_like_imgtool():
    assert Version.parse("1.2.3+4").key() == (1, 2, 3, 4)
    assert Version.parse("2") == Version(2, 0, 0, 0)
    for bad in ("v1", "1.2.3.4", "256.0.0", ""):
        with pytest.raises(ImageError, match="version"):
            Version.parse(bad)


def test_keygen_never_overwrites(tmp_path):
    key = tmp_path / "k.pem"
    assert run_cli("keygen", key).returncode == 0
    before = key.read_bytes()
    r = run_cli("keygen", key)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "never overwrites" in r.stderr
    assert key.read_bytes() == before


# ---- the aot payload and fingerprint ----------------------------------------

def test_fingerprint_admits_new_weights_not_a_new_architecture(cnn_tflite, tmp_path):
    from tinygen.codegen.aot import generate_aot
    from tinygen.convert import parse_checked
    from tinygen.update.make import aot_payload, check_fits
    base = cnn_tflite.read_bytes()
    ir = parse_checked(base, "base")
    a = aot_payload(ir, BOARD, "model")
    b = aot_payload(parse_checked(retrained(base, 0.3, 5), "retrained"), BOARD, "model")
    assert a.fingerprint == b.fingerprint and a.data != b.data and len(a.data) == len(b.data)
    check_fits(b, a.fingerprint.hex(), a.arena_bytes, "retrained")
    # the payload is the constants, at the offsets the generated code reads
    res = generate_aot(ir, tmp_path / "baked", board=BOARD)
    src = (tmp_path / "baked" / "model.c").read_text()
    assert re.search(rf"static const \w+ {res.weight_symbols[0]}\[", src)
    upd = generate_aot(ir, tmp_path / "slot", board=BOARD, updatable=True)
    text = (tmp_path / "slot" / "model.c").read_text()
    assert "TG_CONST(" in text and res.weight_symbols[0] + "[" not in text
    assert upd.payload == a.data
    assert upd.fingerprint == a.fingerprint.hex()


def test_other_architecture_is_refused_by_the_host(cnn_tflite, keras, tmp_path):
    from tinygen.convert import convert, parse_checked
    from tinygen.errors import TinygenError
    from tinygen.load import load_model
    from tinygen.update.make import aot_payload, check_fits
    keras.utils.set_random_seed(2)
    other = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    other.save(tmp_path / "other.h5")
    ir = convert(load_model(tmp_path / "other.h5"), None).ir
    a = aot_payload(parse_checked(cnn_tflite.read_bytes(), "base"), BOARD, "model")
    with pytest.raises(TinygenError, match="architecture fingerprint differs"):
        check_fits(aot_payload(ir, BOARD, "model"), a.fingerprint.hex(), a.arena_bytes, "other")


def test_updatable_needs_a_key_and_a_supported_board(cnn_tflite, tmp_path, signing_key):
    r = run_cli("build", cnn_tflite, "--board", BOARD, "--updatable", "-o", tmp_path / "p")
    assert r.returncode == 2 and "needs --signing-key" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "p").exists()
    r = run_cli("build", cnn_tflite, "--board", "qemu-stm32f405", "--updatable",
                "--signing-key", signing_key[0], "-o", tmp_path / "q")
    assert r.returncode == 2 and "not implemented for qemu-stm32f405" in r.stderr
    assert not (tmp_path / "q").exists()


# ---- an updatable project -------------------------------------------------

@pytest.fixture(scope="session")
def updatable_project(cnn_tflite, signing_key, tmp_path_factory):
    """One campaign-capable build (fault points stay disarmed unless armed)."""
    from tinygen.project.build import build
    from tinygen.project.updatable import UpdateConfig
    path, pub, key = signing_key
    out = tmp_path_factory.mktemp("upd") / "proj"
    cfg = UpdateConfig(public_key=pub, version=Version(1, 0, 0), fault_injection=True,
                       sign=keys.signer(key))
    return build(cnn_tflite, BOARD, out_dir=out, update=cfg, firmware="protocol")


@pytest.mark.slow
def test_update_sources_compile_with_werror(updatable_project, tmp_path):
    out = updatable_project.out_dir
    for cc in (["gcc"], ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"]):
        if shutil.which(cc[0]) is None:
            pytest.skip(f"{cc[0]} not installed")
        for src in ("tg_update.c", "tg_flash_ram.c", "tg_update_keys.c", "tg_protocol.c",
                    "model.c"):
            r = subprocess.run([*cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-DTG_UPDATE",
                                "-DTG_UPDATE_FAULTS", f"-I{out / 'src'}",
                                f"-I{out / 'lib/monocypher/src'}", f"-I{out / 'lib/hpatch/src'}",
                                "-c", str(out / "src" / src),
                                "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
            assert r.returncode == 0, f"{cc[0]} {src}: {r.stderr}"


# ---- in QEMU ------------------------------------------------------------------

class Board:
    """The updatable firmware in QEMU, its slots in a flash file."""

    def __init__(self, project, flash: Path):
        self.project, self.flash = project, flash
        self.qemu = self.dev = None

    def start(self):
        from tinygen.device.client import open_device
        from tinygen.device.qemu import QemuProcess
        from tinygen.project.updatable import flash_image_args
        self.qemu = QemuProcess("mps2-an386", self.project.elf,
                                extra_args=flash_image_args("mps2-an386", self.flash))
        self.qemu.start()
        self.dev = open_device(self.qemu.url)
        return self.dev

    def stop(self):
        if self.dev:
            self.dev.close()
        if self.qemu:
            self.qemu.stop()
        self.qemu = self.dev = None


def _exact(dev, tflite: bytes) -> bool:
    from tinygen.reference import TflmReference
    x = np.random.default_rng(11).integers(-128, 128, (1, 12, 12, 3), dtype=np.int8)
    got = dev.infer([x]).outputs[0]
    want = TflmReference(tflite).run([x])[0]
    return np.array_equal(got.reshape(want.shape), want)


def _make_image(project, tflite: bytes, key, version: str, counter: int = 0, selftest=None):
    from tinygen.convert import parse_checked
    from tinygen.update.make import aot_payload, image_for
    ir = parse_checked(tflite, "update")
    payload = aot_payload(ir, BOARD, "model")
    if selftest is None:
        return image_for(ir, payload, Version.parse(version), keys.signer(key), counter)
    meta = Meta("aot", payload.arena_bytes, payload.fingerprint, bytes.fromhex(ir.signature))
    return build_image(payload.data, meta, Version.parse(version), selftest,
                       keys.signer(key), counter)


def _raw_send(dev, image: bytes, digest: bytes, header: bytes, meta: bytes, counter: int = 0,
              stop_at: int | None = None):
    """UPDATE_BEGIN/CHUNK/FINISH with whatever the test says (no host checks)."""
    from tinygen.device import framing as fr
    begin = struct.pack("<II", len(image), 1024) + digest + header[:32] + \
        struct.pack("<I", counter) + meta
    reply = dev.request(fr.CMD_UPDATE_BEGIN, begin)
    offset = struct.unpack_from("<I", reply, 4)[0]
    while offset < len(image) and (stop_at is None or offset < stop_at):
        data = image[offset:offset + 1024]
        reply = dev.request(fr.CMD_UPDATE_CHUNK, struct.pack("<II", offset, zlib.crc32(data)) + data)
        offset = struct.unpack("<I", reply[:4])[0]
    return dev.request(fr.CMD_UPDATE_FINISH, timeout=60)


@pytest.mark.slow
def test_install_persist_activate(updatable_project, signing_key, cnn_tflite, tmp_path):
    from tinygen.device.slots import activate, read_slots, send_image
    _p, _pub, key = signing_key
    v1 = cnn_tflite.read_bytes()
    v2 = retrained(v1, 0.2, 1)
    board = Board(updatable_project, tmp_path / "flash.img")
    dev = board.start()
    try:
        table = read_slots(dev)
        assert table.active == 0 and table.slots[0].builtin and table.slots[0].version == "1.0.0"
        assert [s.state for s in table.slots[1:]] == ["empty", "empty"]
        assert _exact(dev, v1)
        r = send_image(dev, _make_image(updatable_project, v2, key, "1.1.0"))
        assert r.slot == 1 and r.resumed_from == 0 and r.verify_ticks > 0
        assert dev.info(refresh=True).signature == hashlib.sha256(v2).hexdigest()
        assert _exact(dev, v2)
    finally:
        board.stop()
    dev = board.start()           # power cycle: the slots are in the flash file
    try:
        table = read_slots(dev)
        assert table.active == 1 and table.slots[1].version == "1.1.0"
        assert table.slots[1].model_sha256 == hashlib.sha256(v2).hexdigest()
        assert _exact(dev, v2)
        activate(dev, 0)          # back to the built-in model, by choice
        assert read_slots(dev).active == 0 and _exact(dev, v1)
        activate(dev, 1)
        assert _exact(dev, v2)
        dev.close()               # QEMU serves one client at a time
        r = run_cli("models", "--port", board.qemu.url)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[1].startswith("   0  built-in valid     1.0.0")
        assert lines[2].startswith("*  1  update   valid     1.1.0")
        assert hashlib.sha256(v2).hexdigest()[:16] in lines[2]
        assert "empty" in lines[3]
    finally:
        board.stop()


@pytest.mark.slow
def test_every_refusal_keeps_the_running_model(updatable_project, signing_key, cnn_tflite,
                                               tmp_path):
    from tinygen.device.framing import DeviceError
    from tinygen.device.slots import read_slots, send_image
    _path, _pub, key = signing_key
    v1 = cnn_tflite.read_bytes()
    v2 = retrained(v1, 0.2, 3)
    other_key = keys.load_private(_keygen(tmp_path / "other.pem"))
    good = _make_image(updatable_project, v2, key, "1.1.0", counter=2)
    board = Board(updatable_project, tmp_path / "flash.img")
    dev = board.start()

    def refused(reason: str, send):
        with pytest.raises(DeviceError) as exc:
            send()
        assert reason in str(exc.value) and "running model is unchanged" in str(exc.value)
        assert read_slots(dev).active == 0 and _exact(dev, v1)

    try:
        img = parse_image(good)
        meta = img.meta.pack()
        # unsigned / foreign key / corrupted: caught after the transfer
        refused("not signed", lambda: send_image(dev, build_image(
            img.payload, img.meta, img.version, img.selftest, None)))
        refused("another key", lambda: send_image(dev, _make_image(
            updatable_project, v2, other_key, "1.1.0")))
        bad = bytearray(good)
        bad[HEADER_SIZE + 100] ^= 0x40
        refused("corrupted", lambda: _raw_send(dev, bytes(bad), img.digest, good, meta))
        # truncated transfer: FINISH with chunks missing
        refused("missing", lambda: _raw_send(dev, good, img.digest, good, meta, stop_at=1024))
        # an image whose header runs past what was sent
        short = good[:HEADER_SIZE + 200]
        refused("truncated", lambda: _raw_send(dev, short, img.digest, good, meta))
        # wrong architecture, too large: refused at UPDATE_BEGIN, before any byte
        wrong = Meta("aot", img.meta.arena_bytes, bytes(32), img.meta.model_sha256).pack()
        refused("another model architecture", lambda: _raw_send(dev, good, img.digest, good, wrong))
        huge = Meta("aot", 1 << 30, img.meta.fingerprint, img.meta.model_sha256).pack()
        refused("more arena", lambda: _raw_send(dev, good, img.digest, good, huge))
        refused("larger than a slot", lambda: _raw_send(dev, good + bytes(64 << 10), img.digest,
                                                         good, meta))
        # self-test vectors that do not match what the model computes
        wrong_out = selftest_tlv([bytes(432)], [bytes(5)])
        refused("self-test", lambda: send_image(dev, _make_image(
            updatable_project, v2, key, "1.1.0", selftest=wrong_out)))
        # anti-rollback: install 1.1.0 (counter 2), then older or lower-counter images
        send_image(dev, good)
        assert _exact(dev, v2)
        v3 = retrained(v1, 0.2, 4)

        def still_v2(reason, send):
            with pytest.raises(DeviceError, match=reason):
                send()
            assert read_slots(dev).slots[read_slots(dev).active].version == "1.1.0"
            assert _exact(dev, v2)
        still_v2("not newer", lambda: send_image(dev, _make_image(
            updatable_project, v3, key, "1.0.5", counter=2)))
        still_v2("security counter", lambda: send_image(dev, _make_image(
            updatable_project, v3, key, "1.2.0", counter=1)))
        still_v2("already the running model", lambda: send_image(dev, good))
    finally:
        board.stop()


@pytest.mark.slow
def test_interrupted_transfer_resumes(updatable_project, signing_key, cnn_tflite, tmp_path):
    from tinygen.device.slots import read_slots, send_image
    _p, _pub, key = signing_key
    v1 = cnn_tflite.read_bytes()
    v2 = retrained(v1, 0.25, 7)
    good = _make_image(updatable_project, v2, key, "1.1.0")
    img = parse_image(good)
    board = Board(updatable_project, tmp_path / "flash.img")
    dev = board.start()
    try:
        from tinygen.device import framing as fr
        begin = struct.pack("<II", len(good), 1024) + img.digest + good[:32] + \
            struct.pack("<I", 0) + img.meta.pack()
        dev.request(fr.CMD_UPDATE_BEGIN, begin)
        data = good[:1024]
        dev.request(fr.CMD_UPDATE_CHUNK, struct.pack("<II", 0, zlib.crc32(data)) + data)
    finally:
        board.stop()              # power off mid-transfer
    dev = board.start()
    try:
        table = read_slots(dev)
        assert table.active == 0 and table.slots[1].state == "receiving"
        assert table.slots[1].received == 1024
        r = send_image(dev, good)
        assert r.resumed_from == 1024 and r.bytes_sent == len(good) - 1024
        assert _exact(dev, v2)
    finally:
        board.stop()


@pytest.mark.slow
def test_delta_update_sends_less_and_runs_bit_exact(updatable_project, signing_key, cnn_tflite,
                                                    tmp_path):
    from tinygen.device.framing import DeviceError
    from tinygen.device.slots import read_slots, send_image
    from tinygen.update.delta import make_delta
    _p, _pub, key = signing_key
    v1 = cnn_tflite.read_bytes()
    v2 = retrained(v1, 0.2, 31)
    v3 = retrained(v2, 0.05, 32)
    base = next((updatable_project.out_dir / "images").glob("1.0.0-*.tgimg")).read_bytes()
    img2 = _make_image(updatable_project, v2, key, "1.1.0")
    img3 = _make_image(updatable_project, v3, key, "1.2.0")
    board = Board(updatable_project, tmp_path / "flash.img")
    dev = board.start()
    try:
        # a delta made from another image than the running one is refused
        with pytest.raises(DeviceError, match="another image"):
            send_image(dev, img3, base=img2)
        assert read_slots(dev).active == 0 and _exact(dev, v1)
        r = send_image(dev, img2, base=base)
        assert r.delta and r.bytes_sent == len(make_delta(base, img2)) < len(img2) // 2
        assert _exact(dev, v2)
        r = send_image(dev, img3, base=img2)
        assert r.delta and r.bytes_sent < len(img3) // 3
        assert read_slots(dev).active_slot.version == "1.2.0" and _exact(dev, v3)
    finally:
        board.stop()


@pytest.mark.slow
def test_power_loss_campaign_with_deltas(updatable_project, signing_key, cnn_tflite):
    """Every fault point of a delta install (the image rebuilt in flash) at least
    once: 54 fault resets for the 49 points of this model's install (43 before
    its FC weights became 16-bit lanes: more page programs per image)."""
    from tinygen.tools.update_campaign import Campaign
    path, _pub, _key = signing_key
    v1 = cnn_tflite.read_bytes()
    camp = Campaign(updatable_project.out_dir, path, [retrained(v1, 0.2, 23),
                                                      retrained(v1, 0.2, 24)], delta=True)
    rep = camp.run(resets=60, power_cut_every=10)
    assert rep.bricked == 0 and rep.survived == rep.resets_tried == 60
    assert rep.fault_resets == 54 and rep.points_per_install <= rep.fault_resets
    assert rep.phases["delta: rebuilding the image (erase, page programs)"] > 0


@pytest.mark.slow
def test_power_loss_campaign(updatable_project, signing_key, cnn_tflite):
    """A CI-sized campaign (bench/ or the tool run the long one): every fault
    point of an install is hit at least twice, plus power cuts."""
    from tinygen.tools.update_campaign import Campaign
    path, _pub, _key = signing_key
    v1 = cnn_tflite.read_bytes()
    camp = Campaign(updatable_project.out_dir, path, [retrained(v1, 0.2, 21),
                                                      retrained(v1, 0.2, 22)])
    rep = camp.run(resets=70, power_cut_every=10)
    assert rep.bricked == 0 and rep.failures == []
    assert rep.resets_tried == 70 and rep.survived == 70
    assert rep.power_cuts == 7 and rep.fault_resets == 63
    assert rep.points_per_install >= 20
    assert rep.outcome["old"] > 0 and rep.outcome["new"] > 0
    for phase in ("slot-table write (erase)", "slot-table write (program)", "self-test",
                  "signature verification", "chunk: page programs (mid-chunk) and resume mark"):
        assert rep.phases[phase] > 0, phase


# ---- flash plans for real boards ---------------------------------------------

@pytest.mark.parametrize("board_id", ["esp32cam", "esp32dev", "esp32-s3-devkitc-1",
                                      "esp32-c3-devkitm-1", "nucleo_f446re", "disco_f746ng",
                                      "nucleo_h743zi", "nucleo_l432kc"])
def test_flash_plans_fit_each_real_board(board_id):
    from tinygen.boards import get_board
    from tinygen.project.flash_plan import STM32_FLASH_BASE, STM32_SECTORS, plan_for
    board = get_board(board_id)
    plan = plan_for(board, 3000, slots=1 if board_id == "nucleo_f446re" else 2, app_bytes=60_000)
    names = [r.name for r in plan.regions]
    assert "tg_state_a" in names and "tg_state_b" in names and "tg_slot_1" in names
    spans = sorted((r.offset, r.offset + r.size) for r in plan.regions)
    assert all(b0 >= a1 for (_a0, a1), (b0, _b1) in zip(spans, spans[1:]))
    assert spans[-1][1] <= board.flash_bytes
    if board.family == "esp32":
        rows = [line.split(", ") for line in plan.text().splitlines() if not line.startswith("#")]
        assert all(int(row[3], 16) % 0x1000 == 0 for row in rows)
        assert [row[0] for row in rows][:3] == ["nvs", "phy_init", "factory"]
    else:
        # every region is whole sectors of the chip, never a shared one
        sizes = STM32_SECTORS[board_id]
        starts = {sum(sizes[:i]) for i in range(len(sizes) + 1)}
        assert all(r.offset in starts and r.offset + r.size in starts for r in plan.regions)
        assert f"0x{STM32_FLASH_BASE + plan.regions[1].offset:08x}" in plan.text()


def test_flash_plan_refuses_what_does_not_fit():
    from tinygen.boards import get_board
    from tinygen.errors import TinygenError
    from tinygen.project.flash_plan import plan_for
    with pytest.raises(TinygenError, match="leave .* for the application"):
        plan_for(get_board("nucleo_f446re"), 60_000, slots=2, app_bytes=200_000)
    with pytest.raises(TinygenError, match="emulated"):
        plan_for(get_board(BOARD), 3000)


# ---- the tflm runtime: the whole .tflite in the slot ----------------------------

def _tflm_tree() -> Path:
    import os

    from conftest import ROOT
    path = ROOT.parent / "shared" / "tflm" / "reference"
    if not (path / "tensorflow" / "lite" / "micro").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"TFLM tree {path} is missing; CI must provide ../shared/tflm")
        pytest.skip(f"TFLM tree {path} not present (../shared/tflm)")
    return path


def _convert(keras_model, path: Path, calib: Path) -> bytes:
    from tinygen.convert import convert
    from tinygen.load import load_model
    keras_model.save(path)
    return convert(load_model(path), calib).tflite


@pytest.mark.slow
def test_tflm_slots_take_a_real_finetune_and_another_graph(cnn_h5, cnn_calib, cnn_tflite,
                                                           signing_key, keras, tmp_path):
    """A Keras fine-tune (re-converted: new weights and new activation ranges)
    and a wider model with the same operators and I/O both install on a tflm
    firmware; --activate switches between them; all bit-exact."""
    from tinygen.device.framing import DeviceError
    from tinygen.device.slots import activate, read_slots, send_image
    from tinygen.project.build import build
    from tinygen.project.updatable import UpdateConfig
    from tinygen.update.make import tflm_payload
    path, pub, key = signing_key
    cfg = UpdateConfig(public_key=pub, version=Version(1, 0, 0), sign=keys.signer(key))
    project = build(cnn_tflite, BOARD, runtime="tflm", tflm_source=_tflm_tree(), arena_bytes=8192,
                    out_dir=tmp_path / "tflm", update=cfg, firmware="protocol")
    model = keras.models.load_model(cnn_h5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    model.fit(rng.random((64, 12, 12, 3), dtype=np.float32), rng.integers(0, 5, 64), epochs=3,
              verbose=0)
    tuned = _convert(model, tmp_path / "tuned.h5", cnn_calib)
    keras.utils.set_random_seed(3)
    wide = _convert(keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(12, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(5), keras.layers.Softmax()]),
        tmp_path / "wide.h5", cnn_calib)
    from tinygen.convert import parse_checked
    from tinygen.update.make import image_for

    def image(tflite, version):
        ir = parse_checked(tflite, "update")
        payload = tflm_payload(ir, BOARD, "model")
        assert payload.fingerprint.hex() == project.update["fingerprint"]
        return image_for(ir, payload, Version.parse(version), keys.signer(key))

    board = Board(project, tmp_path / "flash.img")
    dev = board.start()
    try:
        assert _exact(dev, cnn_tflite.read_bytes())
        r = send_image(dev, image(tuned, "1.1.0"))
        assert r.slot == 1 and _exact(dev, tuned)
        r = send_image(dev, image(wide, "2.0.0"))
        assert r.slot == 2 and _exact(dev, wide)
        activate(dev, 1)                      # the light model again
        assert read_slots(dev).active_slot.version == "1.1.0" and _exact(dev, tuned)
        with pytest.raises(DeviceError, match="already the running"):
            activate(dev, 1)
        activate(dev, 2)
        assert _exact(dev, wide)
    finally:
        board.stop()


@pytest.mark.slow
def test_cli_image_update_models(updatable_project, signing_key, cnn_tflite, tmp_path):
    """The commands a user types, against the running QEMU."""
    path, _pub, _key = signing_key
    out = updatable_project.out_dir
    v2 = tmp_path / "v2.tflite"
    v2.write_bytes(retrained(cnn_tflite.read_bytes(), 0.1, 41))
    other = _keygen(tmp_path / "other.pem")
    r = run_cli("image", v2, "--project", out, "--signing-key", other, "--model-version", "1.1.0",
                "-o", tmp_path / "x.tgimg")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not the key" in r.stderr
    assert not (tmp_path / "x.tgimg").exists()
    r = run_cli("image", v2, "--project", out, "--signing-key", path, "--model-version", "1.1.0",
                "-o", tmp_path / "v2.tgimg")
    assert r.returncode == 0, r.stderr
    bad = bytearray((tmp_path / "v2.tgimg").read_bytes())
    bad[HEADER_SIZE + 3] ^= 1
    (tmp_path / "bad.tgimg").write_bytes(bytes(bad))
    board = Board(updatable_project, tmp_path / "flash.img")
    board.start().close()
    try:
        url = board.qemu.url
        r = run_cli("update", "--port", url, "--project", out, tmp_path / "bad.tgimg")
        assert r.returncode == 2 and "corrupted" in r.stderr and r.stderr.count("\n") == 1
        r = run_cli("update", "--port", url, "--project", out, tmp_path / "v2.tgimg")
        assert r.returncode == 0, r.stderr
        assert "installed in slot 1" in r.stdout and "delta instead of" in r.stdout
        r = run_cli("update", "--port", url, "--activate", "3")
        assert r.returncode == 2 and "no such slot" in r.stderr
        r = run_cli("models", "--port", url, "--json")
        table = __import__("json").loads(r.stdout)
        assert table["active"] == 1 and table["slots"][1]["version"] == "1.1.0"
    finally:
        board.stop()
