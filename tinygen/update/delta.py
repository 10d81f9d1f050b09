"""Delta images: only what changed between the running image and the new one.

The format is HDiffPatch's compressed diff ("HDIFF13", no compression
plugin), made by `detools` (patch type `hdiffpatch`, compression `none`)
and applied on the device by HDiffPatch's own patcher
(`patch_decompress_with_cache`).  detools wraps the diff in a small header
of its own (patch type, sizes); it is read with detools' functions and
dropped, since the device's patcher takes HDiffPatch's format directly.

The delta is not signed: the device rebuilds the full image from it and
verifies that, signature included, like any full transfer.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import TinygenError
from .image import parse_image

SUFFIX = ".tgimg"


def make_delta(base: bytes, new: bytes) -> bytes:
    """The HDiffPatch diff that turns `base` into `new`."""
    try:
        from detools import create_patch
        from detools.common import unpack_header, unpack_size
    except ImportError:  # pragma: no cover - a dependency of tinygen
        raise TinygenError("delta updates need the Python package `detools` "
                           "(pip install detools==0.53.0)") from None
    out = io.BytesIO()
    create_patch(io.BytesIO(base), io.BytesIO(new), out, compression="none",
                 patch_type="hdiffpatch", algorithm="hdiffpatch", use_mmap=False)
    stream = io.BytesIO(out.getvalue())
    _patch_type, _compression = unpack_header(stream.read(1))
    to_size = unpack_size(stream)
    diff_size = unpack_size(stream)
    diff = stream.read()
    if to_size != len(new) or diff_size != len(diff) or not diff.startswith(b"HDIFF13"):
        raise TinygenError("detools made a patch of an unexpected layout: cannot send it as a delta")
    return diff


def image_name(image: bytes) -> str:
    img = parse_image(image)
    return f"{img.version}-{img.meta.model_sha256.hex()[:16]}{SUFFIX}"


def keep(image_dir: Path, image: bytes) -> Path:
    """Store an image under its version and model hash (the bases of later deltas)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / image_name(image)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(image)
        tmp.replace(path)
    return path


def find_base(image_dir: Path, version: str, model_sha256: str) -> bytes | None:
    """The stored image with this version and model, if any."""
    path = image_dir / f"{version}-{model_sha256[:16]}{SUFFIX}"
    try:
        return path.read_bytes()
    except OSError:
        return None
