"""Ed25519 signing keys, as PKCS#8 PEM files (what `imgtool keygen -t
ed25519` writes), through the `cryptography` package."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TinygenError


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency of tinygen
        raise TinygenError("signing needs the Python package `cryptography` "
                           "(pip install cryptography)") from None
    return serialization, ed25519


def generate(path: str | os.PathLike) -> bytes:
    """Write a new private key to path (refusing to overwrite); returns the
    32-byte public key."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    if path.exists():
        raise TinygenError(f"{path} exists: tinygen keygen never overwrites a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_bytes(key)


def public_bytes(key) -> bytes:
    serialization, _ = _crypto()
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def load_private(path: str | os.PathLike):
    """The Ed25519 private key in a PEM file, or a one-line TinygenError."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TinygenError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise TinygenError(f"{path} is not an unencrypted PEM private key "
                           "(make one with `tinygen keygen FILE`)") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TinygenError(f"{path} is not an Ed25519 key (tinygen signs with Ed25519; "
                           "make one with `tinygen keygen FILE`)")
    return key


def signer(key):
    return lambda digest: key.sign(digest)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False
