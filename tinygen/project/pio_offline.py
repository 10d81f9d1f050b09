"""PlatformIO without a network, for tinygen's emulated boards.

`pio run` needs three things that normally come from the PlatformIO registry:
the core package ``tool-scons``, a development platform and its toolchain.
Here they are all local:

* ``tool-scons`` is a folder in ``$PLATFORMIO_CORE_DIR/packages`` whose
  ``scons.py`` runs the SCons installed with pip (``scons==4.11.1``);
* the platform is tinygen's own ``firmware_templates/pio_platform``
  (``tinygen-qemu``), used through ``platform = symlink://...`` so that edits
  to it take effect without reinstalling;
* the toolchain is Debian's ``gcc-arm-none-eabi``, wrapped as a
  ``toolchain-gccarmnoneeabi`` package folder of symlinks and given to the
  project with ``platform_packages = ...@symlink://...``.

``prepare_core_dir()`` creates all this (idempotently) in a core dir of its
own (default ``~/.tinygen/platformio``, or ``$TINYGEN_PIO_CORE_DIR``), so the
user's own ``~/.platformio`` is never touched.  ``run_build()`` then runs
``pio run`` with that core dir and returns the firmware ELF.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import TinygenError
from ..paths import TEMPLATES_DIR

PLATFORM_DIR = TEMPLATES_DIR / "pio_platform"
"""The tinygen-qemu PlatformIO development platform."""

EMULATED_BOARDS = ("qemu-stm32f405", "qemu-cortex-m4", "qemu-cortex-m7", "qemu-esp32c3",
                   "qemu-esp8266")
"""PlatformIO board ids the tinygen-qemu platform defines (boards/*.json)."""

CORE_DIR_ENV = "TINYGEN_PIO_CORE_DIR"

SCONS_PACKAGE = "tool-scons"
SCONS_PACKAGE_VERSION = "4.41101.0"  # PlatformIO's encoding of SCons 4.11.1
SCONS_REQUIREMENT = "~4.41101.0"     # what PlatformIO 6.2.0 asks for
TOOLCHAIN_PACKAGE = "toolchain-gccarmnoneeabi"
TOOLCHAIN_VERSION = "1.120201.0"     # Debian bookworm ships GCC 12.2.1
TOOLCHAIN_PREFIX = "arm-none-eabi-"


@dataclass(frozen=True)
class Toolchain:
    """A Debian cross toolchain wrapped as a PlatformIO toolchain package."""
    package: str
    version: str
    prefix: str
    debian: str              # the Debian packages that provide it


# By the boards' build.tinygen_arch (boards/*.json; "arm" when absent).
TOOLCHAINS = {
    "arm": Toolchain(TOOLCHAIN_PACKAGE, TOOLCHAIN_VERSION, TOOLCHAIN_PREFIX,
                     "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"),
    "riscv32": Toolchain("toolchain-riscv64-unknown-elf", "1.120200.0", "riscv64-unknown-elf-",
                         "gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf "
                         "picolibc-riscv64-unknown-elf"),
    "xtensa": Toolchain("toolchain-xtensa-lx106-elf", "1.120200.0", "xtensa-lx106-elf-",
                        "gcc-xtensa-lx106 binutils-xtensa-lx106 picolibc-xtensa-lx106-elf"),
}

_DEFAULT_TIMEOUT_S = 900.0
_LOG_TAIL_LINES = 60


class PioProvisionError(TinygenError):
    """The offline PlatformIO core dir could not be prepared."""


class PioBuildError(TinygenError):
    """`pio run` failed; ``log_tail`` holds the end of its output."""

    def __init__(self, message: str, log_tail: str = "", returncode: int | None = None):
        super().__init__(message)
        self.log_tail = log_tail
        self.returncode = returncode


# ---------------------------------------------------------------------------
# Paths


def default_core_dir() -> Path:
    """``$TINYGEN_PIO_CORE_DIR`` if set, else ``~/.tinygen/platformio``."""
    env = os.environ.get(CORE_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".tinygen" / "platformio"


def _core(core_dir: str | os.PathLike | None) -> Path:
    return Path(core_dir).expanduser().resolve() if core_dir else default_core_dir()


def platforms_dir(core_dir: str | os.PathLike | None = None) -> Path:
    """Where PlatformIO records the tinygen-qemu platform of *this* tinygen.

    PlatformIO keeps one installed platform per name and reinstalls it when a
    project names another ``symlink://`` source; two tinygen checkouts (or
    versions) building at once would swap it under each other's feet
    ("UnknownPlatform" mid-build).  One folder per platform source keeps them
    apart while the packages and the build cache stay shared.
    """
    source = str(PLATFORM_DIR.resolve()).encode()
    return _core(core_dir) / "platforms" / hashlib.sha256(source).hexdigest()[:12]


def build_cache_dir(core_dir: str | os.PathLike | None = None) -> Path:
    """PlatformIO's object cache for emulated builds (keyed by flags and content)."""
    return _core(core_dir) / "build-cache"


def toolchain_dir(core_dir: str | os.PathLike | None = None,
                  package: str = TOOLCHAIN_PACKAGE) -> Path:
    """A toolchain package folder inside a core dir (default: the ARM one)."""
    return _core(core_dir) / "tinygen-packages" / package


def board_build(board: str) -> dict:
    """The ``build`` section of a tinygen-qemu board (boards/<board>.json)."""
    try:
        return json.loads((PLATFORM_DIR / "boards" / f"{board}.json").read_text())["build"]
    except (OSError, KeyError, ValueError):
        raise TinygenError(
            f"{board!r} is not an emulated board (tinygen-qemu has: "
            f"{', '.join(EMULATED_BOARDS)})") from None


def board_toolchain(board: str) -> Toolchain:
    return TOOLCHAINS[board_build(board).get("tinygen_arch", "arm")]


# ---------------------------------------------------------------------------
# Provisioning


def prepare_core_dir(core_dir: str | os.PathLike | None = None) -> Path:
    """Make ``core_dir`` a PlatformIO core dir that builds the emulated boards
    offline, and return its absolute path.

    Creates ``packages/tool-scons`` (package.json, .piopm, scons.py running
    the pip SCons), ``tinygen-packages/toolchain-gccarmnoneeabi`` (package.json
    and bin/ symlinks to the system ``arm-none-eabi-*`` tools) and, for a new
    core dir, an ``appstate.json`` that keeps PlatformIO from printing its
    first-run banner.  Safe to call repeatedly and from concurrent processes:
    files are rewritten only when their content changes.
    """
    core = _core(core_dir)
    try:
        core.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PioProvisionError(f"cannot create PlatformIO core dir {core}: {exc}") from None
    with _locked(core / ".tinygen-provision.lock"):
        _provision_scons(core / "packages" / SCONS_PACKAGE)
        _provision_toolchain(toolchain_dir(core))
        # The RISC-V and Xtensa toolchains when installed (only their boards need them).
        for tc in TOOLCHAINS.values():
            if tc.package != TOOLCHAIN_PACKAGE and shutil.which(tc.prefix + "gcc"):
                _provision_toolchain(toolchain_dir(core, tc.package), tc)
        _seed_appstate(core / "appstate.json")
    return core


def _provision_scons(pkg: Path) -> None:
    spec = importlib.util.find_spec("SCons")
    if spec is None or not spec.submodule_search_locations:
        raise PioProvisionError(
            "SCons is not installed for this Python; `pip install scons==4.11.1` "
            "(PlatformIO's tool-scons package cannot be downloaded offline)")
    scons_parent = str(Path(list(spec.submodule_search_locations)[0]).parent)
    pkg.mkdir(parents=True, exist_ok=True)
    _write_if_changed(pkg / "package.json", json.dumps({
        "name": SCONS_PACKAGE,
        "version": SCONS_PACKAGE_VERSION,
        "description": "SCons from pip, provided offline by tinygen",
    }, indent=2) + "\n")
    # PlatformIO only accepts an installed package whose .piopm spec names
    # the owner (platformio) and the requirement it asks for.
    _write_if_changed(pkg / ".piopm", json.dumps({
        "type": "tool",
        "name": SCONS_PACKAGE,
        "version": SCONS_PACKAGE_VERSION,
        "spec": {"owner": "platformio", "id": None, "name": SCONS_PACKAGE,
                 "requirements": SCONS_REQUIREMENT, "uri": None},
    }) + "\n")
    _write_if_changed(pkg / "scons.py", (
        "# Written by tinygen (tinygen/project/pio_offline.py): PlatformIO's tool-scons\n"
        "# package, satisfied offline by the SCons installed with pip.\n"
        "import sys\n"
        "\n"
        "try:\n"
        "    import SCons.Script\n"
        "except ImportError:  # PlatformIO started from another Python\n"
        f"    sys.path.insert(0, {scons_parent!r})\n"
        "    import SCons.Script\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    SCons.Script.main()\n"))


def _provision_toolchain(pkg: Path, tc: Toolchain = TOOLCHAINS["arm"]) -> None:
    gcc = shutil.which(tc.prefix + "gcc")
    if gcc is None:
        raise PioProvisionError(
            f"{tc.prefix}gcc not found on PATH; install the Debian packages {tc.debian}")
    bin_dir = Path(gcc).parent
    tools = {p.name: p for p in sorted(bin_dir.glob(tc.prefix + "*"))
             if p.is_file() and os.access(p, os.X_OK)}
    links = pkg / "bin"
    links.mkdir(parents=True, exist_ok=True)
    what = ("GNU Arm Embedded toolchain" if tc.package == TOOLCHAIN_PACKAGE
            else f"{tc.prefix}gcc toolchain")
    _write_if_changed(pkg / "package.json", json.dumps({
        "name": tc.package,
        "version": tc.version,
        "description": f"{what} from {bin_dir}, wrapped by tinygen",
        "system": ["linux_x86_64"],
    }, indent=2) + "\n")
    for name, target in tools.items():
        link = links / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        tmp = links / f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    for link in links.iterdir():
        if link.name not in tools and link.is_symlink():
            link.unlink()


def _seed_appstate(path: Path) -> None:
    if path.exists():
        return
    try:
        version = metadata.version("platformio")
    except metadata.PackageNotFoundError:
        return
    _write_if_changed(path, json.dumps({"last_version": version}) + "\n")


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Project configuration


def platformio_ini_lines(board: str, core_dir: str | os.PathLike | None = None) -> list[str]:
    """The ``[env:...]`` lines that build ``board`` with the tinygen-qemu
    platform and the offline toolchain (absolute paths of this machine)."""
    if board not in EMULATED_BOARDS:
        raise TinygenError(
            f"{board!r} is not an emulated board (tinygen-qemu has: {', '.join(EMULATED_BOARDS)})")
    tc = board_toolchain(board)
    if tc.package != TOOLCHAIN_PACKAGE and shutil.which(tc.prefix + "gcc") is None:
        raise TinygenError(f"{board} needs {tc.prefix}gcc, which is not installed; install the "
                           f"Debian packages {tc.debian}")
    return [
        f"platform = symlink://{PLATFORM_DIR.resolve()}",
        f"platform_packages = platformio/{tc.package}@symlink://"
        f"{toolchain_dir(core_dir, tc.package)}",
        f"board = {board}",
    ]


def pio_environment(core_dir: str | os.PathLike | None = None,
                    base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for running ``pio`` against the offline core dir."""
    env = dict(os.environ if base is None else base)
    env.update({
        "PLATFORMIO_CORE_DIR": str(_core(core_dir)),
        "PLATFORMIO_PLATFORMS_DIR": str(platforms_dir(core_dir)),
        "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "No",
        "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650",
        "PLATFORMIO_DISABLE_UPGRADE_CHECK": "true",
        "PLATFORMIO_DISABLE_PROGRESSBAR": "true",
        "PLATFORMIO_NO_ANSI": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _build_dir(project: Path) -> Path:
    """``[platformio] build_dir`` of a project (default ``.pio/build``)."""
    config = configparser.ConfigParser(interpolation=None, strict=False)
    with contextlib.suppress(configparser.Error, OSError):
        config.read(project / "platformio.ini")
    raw = config.get("platformio", "build_dir", fallback="").strip()
    if not raw or "$" in raw:
        return project / ".pio" / "build"
    path = Path(raw).expanduser()
    return path if path.is_absolute() else project / path


def _single_env(project: Path) -> str:
    config = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        config.read(project / "platformio.ini")
    except configparser.Error as exc:
        raise PioBuildError(f"{project}/platformio.ini is malformed: {exc}") from None
    envs = [s[4:] for s in config.sections() if s.startswith("env:")]
    default = config.get("platformio", "default_envs", fallback="").split(",")[0].strip()
    if default:
        return default
    if len(envs) != 1:
        raise PioBuildError(
            f"{project}/platformio.ini has environments {envs}; say which one to build")
    return envs[0]


def run_build(project_dir: str | os.PathLike, env_name: str | None = None, *,
              core_dir: str | os.PathLike | None = None,
              timeout: float = _DEFAULT_TIMEOUT_S, jobs: int | None = None,
              verbose: bool = False) -> Path:
    """Run ``pio run -d project_dir -e env_name`` offline and return the
    path of the firmware ELF (``project_dir/.pio/build/ENV/firmware.elf``,
    relative if ``project_dir`` is).

    ``env_name`` defaults to the project's ``default_envs`` or its only
    environment.  The core dir is provisioned first.  Raises
    :class:`PioBuildError` (with the tail of the build log) when PlatformIO
    fails or takes longer than ``timeout`` seconds.
    """
    given = Path(project_dir)
    project = given.resolve()
    if not (project / "platformio.ini").is_file():
        raise PioBuildError(f"{project} has no platformio.ini")
    env_name = env_name or _single_env(project)
    core = prepare_core_dir(core_dir)
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(project), "-e", env_name]
    if jobs:
        cmd += ["-j", str(jobs)]
    if verbose:
        cmd.append("-v")
    try:
        proc = subprocess.run(cmd, env=pio_environment(core), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        tail = _tail(out)
        raise PioBuildError(
            f"`pio run` for {env_name} in {project} did not finish within {timeout:.0f} s\n{tail}",
            tail) from None
    log = proc.stdout or ""
    (project / ".pio").mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        (project / ".pio" / f"tinygen-build-{env_name}.log").write_text(log)
    if proc.returncode != 0:
        tail = _tail(log)
        raise PioBuildError(
            f"`pio run` for {env_name} in {project} failed (exit {proc.returncode}):\n{tail}",
            tail, proc.returncode)
    elf = _build_dir(given) / env_name / "firmware.elf"
    if not elf.is_file():
        tail = _tail(log)
        raise PioBuildError(f"`pio run` succeeded but {elf} is missing:\n{tail}", tail)
    return elf


def _tail(log: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(log.rstrip().splitlines()[-lines:])
