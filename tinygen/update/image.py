"""The slot image: MCUboot's image layout carrying a tinygen model payload.

    header (32 B, padded to HEADER_SIZE)  magic 0x96f3b83d, load address 0,
                                          header size, protected-TLV size,
                                          payload size, flags 0,
                                          version major.minor.revision+build
    payload                               aot: the constants (codegen.aot)
    protected TLVs (0x6908)               SEC_CNT (0x50), tinygen meta (0xA0),
                                          self-test vectors (0xA1)
    TLVs (0x6907)                         SHA512 (0x12) of everything above,
                                          ED25519 (0x24) over that digest

MCUboot's conventions are kept where they fit: the header, the TLV areas and
their magic numbers, SHA-512 + Ed25519 signing the digest (imgtool's
`--sha 512` with an ed25519 key), keys as PKCS#8 PEM (`imgtool keygen -t
ed25519` writes the same).  tinygen's own data sits in vendor TLVs.  The
device has no SHA-256 (its crypto library, Monocypher, has SHA-512), which
is why the digest is SHA-512; the model's SHA-256 in the meta TLV is an
identity, covered by the signature like everything else.

Meta TLV (72 B): format u16 (1), runtime u8 (1 aot, 2 tflm), reserved u8,
arena bytes needed u32, architecture fingerprint [32], model SHA-256 [32].
Self-test TLV: n_in u8, n_out u8, 2 reserved, then per input and output
tensor a u32 length and its bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from ..errors import TinygenError

IMAGE_MAGIC = 0x96F3B83D
HEADER_SIZE = 64
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
TLV_SHA512 = 0x12
TLV_ED25519 = 0x24
TLV_SEC_CNT = 0x50
TLV_TG_META = 0xA0
TLV_TG_SELFTEST = 0xA1
META_FORMAT = 1
RUNTIMES = {"aot": 1, "tflm": 2}
_HEADER = struct.Struct("<IIHHII BBHI I")
_META = struct.Struct("<HBBI32s32s")


class ImageError(TinygenError):
    """An image that is not one, or not one this device takes."""


@dataclass(frozen=True)
class Version:
    major: int
    minor: int = 0
    revision: int = 0
    build: int = 0

    @classmethod
    def parse(cls, text: str) -> "Version":
        """"1.2.3" or "1.2.3+4", as imgtool's --version."""
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\+(\d+))?", text.strip())
        if not m:
            raise ImageError(f"model version {text!r} is not MAJOR[.MINOR[.REVISION]][+BUILD], "
                             "e.g. 1.2.0")
        parts = [int(g) if g else 0 for g in m.groups()]
        v = cls(*parts)
        if v.major > 255 or v.minor > 255 or v.revision > 65535 or v.build > 0xFFFFFFFF:
            raise ImageError(f"model version {text!r} is out of range "
                             "(major, minor <= 255, revision <= 65535)")
        return v

    def key(self) -> tuple[int, int, int, int]:
        return (self.major, self.minor, self.revision, self.build)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.revision}"
        return base + (f"+{self.build}" if self.build else "")


@dataclass
class Meta:
    runtime: str
    arena_bytes: int
    fingerprint: bytes       # 32 bytes
    model_sha256: bytes      # 32 bytes

    def pack(self) -> bytes:
        return _META.pack(META_FORMAT, RUNTIMES[self.runtime], 0, self.arena_bytes,
                          self.fingerprint, self.model_sha256)


@dataclass
class Image:
    """A parsed image; `data` is the whole image."""
    data: bytes
    version: Version
    security_counter: int
    meta: Meta
    payload: bytes
    selftest: bytes
    digest: bytes | None
    signature: bytes | None
    signed_len: int

    @property
    def size(self) -> int:
        return len(self.data)


def _tlvs(entries: list[tuple[int, bytes]], magic: int) -> bytes:
    body = b"".join(struct.pack("<HH", t, len(v)) + v for t, v in entries)
    return struct.pack("<HH", magic, 4 + len(body)) + body


def selftest_tlv(inputs: list[bytes], outputs: list[bytes]) -> bytes:
    out = struct.pack("<BBH", len(inputs), len(outputs), 0)
    for blob in list(inputs) + list(outputs):
        out += struct.pack("<I", len(blob)) + blob
    return out


def build_image(payload: bytes, meta: Meta, version: Version, selftest: bytes,
                sign, security_counter: int = 0) -> bytes:
    """The signed image.  sign(digest) -> 64-byte Ed25519 signature, or None
    for an unsigned image (which devices refuse; for tests)."""
    prot = _tlvs([(TLV_SEC_CNT, struct.pack("<I", security_counter)),
                  (TLV_TG_META, meta.pack()),
                  (TLV_TG_SELFTEST, selftest)], TLV_PROT_INFO_MAGIC)
    if len(prot) > 0xFFFF:
        raise ImageError(f"the self-test vectors make the protected TLVs {len(prot)} bytes "
                         "(at most 65535)")
    header = _HEADER.pack(IMAGE_MAGIC, 0, HEADER_SIZE, len(prot), len(payload), 0,
                          version.major, version.minor, version.revision, version.build, 0)
    signed = header + b"\0" * (HEADER_SIZE - len(header)) + payload + prot
    digest = hashlib.sha512(signed).digest()
    entries = [(TLV_SHA512, digest)]
    if sign is not None:
        entries.append((TLV_ED25519, sign(digest)))
    return signed + _tlvs(entries, TLV_INFO_MAGIC)


def _walk(data: bytes, off: int, magic: int, what: str) -> tuple[dict[int, bytes], int]:
    if off + 4 > len(data):
        raise ImageError(f"image is truncated: its {what} area is missing")
    m, tot = struct.unpack_from("<HH", data, off)
    if m != magic:
        raise ImageError(f"image {what} area has magic {m:#06x}, expected {magic:#06x}: "
                         "not a tinygen/MCUboot image, or corrupted")
    if tot < 4 or off + tot > len(data):
        raise ImageError(f"image is truncated: its {what} area needs {tot} bytes")
    found: dict[int, bytes] = {}
    p = 4
    while p < tot:
        if tot - p < 4:
            raise ImageError(f"image {what} area is malformed")
        t, n = struct.unpack_from("<HH", data, off + p)
        if p + 4 + n > tot:
            raise ImageError(f"image {what} area is malformed (entry {t:#x} runs past its end)")
        found[t] = data[off + p + 4: off + p + 4 + n]
        p += 4 + n
    return found, tot


def parse_image(data: bytes) -> Image:
    """Structure only (no hash or signature check: see check_image)."""
    if len(data) < 32:
        raise ImageError(f"image is truncated ({len(data)} bytes, a header alone is 32)")
    (magic, _load, hdr_size, prot_size, body_len, _flags, major, minor, rev, build,
     _pad) = _HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError(f"not a model image (magic {magic:#010x}, expected {IMAGE_MAGIC:#010x})")
    if hdr_size < 32 or hdr_size % 16:
        raise ImageError(f"image header size {hdr_size} is not one this tinygen knows")
    if hdr_size + body_len > len(data):
        raise ImageError(f"image is truncated: {len(data)} bytes, its header announces "
                         f"{hdr_size + body_len} before the TLVs")
    off = hdr_size + body_len
    prot: dict[int, bytes] = {}
    if prot_size:
        prot, tot = _walk(data, off, TLV_PROT_INFO_MAGIC, "protected TLV")
        if tot != prot_size:
            raise ImageError("image protected TLV size disagrees with its header: corrupted")
    signed_len = off + prot_size
    tlvs, tot = _walk(data, signed_len, TLV_INFO_MAGIC, "TLV")
    if signed_len + tot != len(data):
        raise ImageError(f"image has {len(data) - signed_len - tot} bytes after its last TLV")
    raw = prot.get(TLV_TG_META)
    if raw is None or len(raw) != _META.size:
        raise ImageError("image has no tinygen meta TLV: it was not made by `tinygen image`")
    fmt, runtime, _r, arena, fp, sha = _META.unpack(raw)
    if fmt != META_FORMAT:
        raise ImageError(f"image format version {fmt}, this tinygen knows {META_FORMAT}")
    names = {v: k for k, v in RUNTIMES.items()}
    if runtime not in names:
        raise ImageError(f"image names runtime {runtime}, which this tinygen does not know")
    sec = prot.get(TLV_SEC_CNT)
    return Image(data=bytes(data), version=Version(major, minor, rev, build),
                 security_counter=struct.unpack("<I", sec)[0] if sec and len(sec) == 4 else 0,
                 meta=Meta(names[runtime], arena, fp, sha),
                 payload=data[hdr_size:hdr_size + body_len], selftest=prot.get(TLV_TG_SELFTEST, b""),
                 digest=tlvs.get(TLV_SHA512), signature=tlvs.get(TLV_ED25519),
                 signed_len=signed_len)


def check_image(image: Image, public_key: bytes | None = None) -> None:
    """Hash, then signature (with public_key, 32 raw bytes); ImageError says
    what is wrong, as the device would refuse it."""
    if image.digest is None:
        raise ImageError("image has no SHA-512 TLV")
    if hashlib.sha512(image.data[:image.signed_len]).digest() != image.digest:
        raise ImageError("image content does not match its SHA-512: it is corrupted")
    if image.signature is None:
        raise ImageError("image is not signed (no ED25519 TLV): sign it with `tinygen image "
                         "--signing-key`")
    if public_key is not None:
        from .keys import verify
        if not verify(public_key, image.signature, image.digest):
            raise ImageError("image signature does not verify with this device's public key: "
                             "it was signed with another key")
