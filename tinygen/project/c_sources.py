"""C libraries compiled into updatable firmware, taken from PyPI source
distributions (the only package registry with them here):

* Monocypher 3.1.2 (Loup Vaillant, BSD-2-Clause OR CC0-1.0): SHA-512 and
  Ed25519 signature checks.  The `monocypher-py` 0.0.3 sdist bundles the
  official release, optional/monocypher-ed25519.c included.
* HDiffPatch's patcher (HouSisong, MIT): applies the delta images that
  `detools` (the `hdiffpatch` patch type) makes.  The `detools` 0.53.0 sdist
  bundles HDiffPatch's sources; detools' own C patcher is not in the sdist.

Each is fetched once with pip (scripts/setup.sh does it), checked against
the sdist's SHA-256, and kept in ``~/.tinygen/<name>`` (or
``$TINYGEN_C_SOURCES/<name>``); each updatable project gets a copy in
lib/<name>/, so a user's real-board build needs no network for them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import TinygenError

DIR_ENV = "TINYGEN_C_SOURCES"


@dataclass(frozen=True)
class Library:
    name: str            # folder and PlatformIO library name
    version: str
    sdist: str           # pip requirement
    sha256: str          # of the sdist
    files: dict          # path inside the sdist (after its top folder) -> file name
    licence: str

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.licence}), from the {self.sdist} sdist on PyPI"


MONOCYPHER = Library(
    "monocypher", "3.1.2", "monocypher-py==0.0.3",
    "9f1da74704ade57be8f1f93c75526342b0c4515a9548a388cc2f6ddc62ac94a3",
    {"src/monocypher-3.1.2-src/monocypher.c": "monocypher.c",
     "src/monocypher-3.1.2-src/monocypher.h": "monocypher.h",
     "src/monocypher-3.1.2-src/optional/monocypher-ed25519.c": "monocypher-ed25519.c",
     "src/monocypher-3.1.2-src/optional/monocypher-ed25519.h": "monocypher-ed25519.h"},
    "Loup Vaillant, BSD-2-Clause OR CC0-1.0")

_HPATCH = "detools/HDiffPatch/libHDiffPatch/HPatch/"
HDIFFPATCH = Library(
    "hpatch", "detools-0.53.0", "detools==0.53.0",
    "95b5bdeaaaf76e73ca4c8015f2d7c0cc98fbe91f5119b0a97faeb991315241db",
    {_HPATCH + n: n for n in ("patch.c", "patch.h", "patch_private.h", "patch_types.h")},
    "HDiffPatch, HouSisong, MIT")

LIBRARIES = (MONOCYPHER, HDIFFPATCH)


def source_dir(lib: Library) -> Path:
    env = os.environ.get(DIR_ENV)
    base = Path(env) if env else Path.home() / ".tinygen"
    return base / f"{lib.name}-{lib.version}"


def available(lib: Library) -> bool:
    return all((source_dir(lib) / name).is_file() for name in lib.files.values())


def provision(lib: Library) -> Path:
    """Fetch and unpack the sources if they are not there yet."""
    dest = source_dir(lib)
    if available(lib):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"tg-{lib.name}-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-build-isolation", "--disable-pip-version-check", "-q", lib.sdist, "-d", tmp],
            capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or len(sdists) != 1:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise TinygenError(f"cannot fetch {lib.name}'s C sources ({lib.sdist} from PyPI: "
                               f"{tail[0]}); run scripts/setup.sh with PyPI reachable")
        if hashlib.sha256(sdists[0].read_bytes()).hexdigest() != lib.sha256:
            raise TinygenError(f"{sdists[0].name} does not have the expected SHA-256: refusing "
                               "to compile it into firmware")
        staging = Path(tempfile.mkdtemp(prefix=f".{lib.name}-", dir=dest.parent))
        try:
            with tarfile.open(sdists[0]) as tar:
                for member in tar.getmembers():
                    inner = member.name.split("/", 1)[-1]
                    if member.isfile() and inner in lib.files:
                        src = tar.extractfile(member)
                        assert src is not None
                        (staging / lib.files[inner]).write_bytes(src.read())
            if not all((staging / n).is_file() for n in lib.files.values()):
                raise TinygenError(f"{sdists[0].name} does not hold the expected {lib.name} "
                                   "sources")
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def place(lib: Library, lib_dir: Path) -> None:
    """lib/<name>/ of a project: the sources and a library.json."""
    src = provision(lib)
    (lib_dir / "src").mkdir(parents=True, exist_ok=True)
    for name in lib.files.values():
        shutil.copyfile(src / name, lib_dir / "src" / name)
    (lib_dir / "library.json").write_text(
        '{\n  "name": "%s",\n  "version": "0.0.0",\n  "description": "%s",\n'
        '  "build": {"flags": ["-Os", "-DNDEBUG"]}\n}\n' % (lib.name, lib.describe()))


if __name__ == "__main__":
    for library in LIBRARIES:
        print(provision(library))
