"""Monocypher, the portable C crypto library the device verifies images with.

Its C sources come from PyPI, where the `monocypher-py` 0.0.3 source
distribution bundles the official Monocypher 3.1.2 release (monocypher.c/.h
and optional/monocypher-ed25519.c/.h: Ed25519 with SHA-512).  They are
fetched once with pip (scripts/setup.sh does it), checked against the
sdist's SHA-256, and kept in ``~/.tinygen/monocypher-3.1.2`` (or
``$TINYGEN_MONOCYPHER_DIR``); each updatable project gets a copy in
lib/monocypher/, so a user's real-board build needs no network for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import TinygenError

VERSION = "3.1.2"
SDIST = "monocypher-py==0.0.3"
SDIST_SHA256 = "9f1da74704ade57be8f1f93c75526342b0c4515a9548a388cc2f6ddc62ac94a3"
DIR_ENV = "TINYGEN_MONOCYPHER_DIR"
FILES = {"monocypher.c": "monocypher.c", "monocypher.h": "monocypher.h",
         "optional/monocypher-ed25519.c": "monocypher-ed25519.c",
         "optional/monocypher-ed25519.h": "monocypher-ed25519.h"}


def source_dir() -> Path:
    env = os.environ.get(DIR_ENV)
    return Path(env) if env else Path.home() / ".tinygen" / f"monocypher-{VERSION}"


def available() -> bool:
    return all((source_dir() / name).is_file() for name in FILES.values())


def provision() -> Path:
    """Fetch and unpack the sources if they are not there yet."""
    dest = source_dir()
    if available():
        return dest
    with tempfile.TemporaryDirectory(prefix="tg-monocypher-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-build-isolation", "--disable-pip-version-check", "-q", SDIST, "-d", tmp],
            capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or len(sdists) != 1:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise TinygenError(f"cannot fetch Monocypher's C sources ({SDIST} from PyPI: "
                               f"{tail[0]}); run scripts/setup.sh with PyPI reachable, or "
                               f"unpack Monocypher {VERSION} into {dest}")
        data = sdists[0].read_bytes()
        if hashlib.sha256(data).hexdigest() != SDIST_SHA256:
            raise TinygenError(f"{sdists[0].name} does not have the expected SHA-256: refusing "
                               "to compile it into firmware")
        staging = Path(tempfile.mkdtemp(prefix=".monocypher-", dir=_parent(dest)))
        try:
            with tarfile.open(sdists[0]) as tar:
                for member in tar.getmembers():
                    for rel, name in FILES.items():
                        if member.isfile() and member.name.endswith(
                                f"/monocypher-{VERSION}-src/{rel}"):
                            src = tar.extractfile(member)
                            assert src is not None
                            (staging / name).write_bytes(src.read())
            if not all((staging / n).is_file() for n in FILES.values()):
                raise TinygenError(f"{sdists[0].name} does not hold Monocypher {VERSION}'s sources")
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _parent(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.parent


def place(lib_dir: Path) -> None:
    """lib/monocypher/ of a project: the sources and a library.json."""
    src = provision()
    (lib_dir / "src").mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        shutil.copyfile(src / name, lib_dir / "src" / name)
    (lib_dir / "library.json").write_text(
        '{\n  "name": "monocypher",\n  "version": "%s",\n'
        '  "description": "Monocypher %s (Loup Vaillant, BSD-2-Clause OR CC0-1.0), '
        'from the monocypher-py 0.0.3 sdist on PyPI",\n'
        '  "build": {"flags": ["-Os"]}\n}\n' % (VERSION, VERSION))


if __name__ == "__main__":
    print(provision())
