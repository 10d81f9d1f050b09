"""`tinygen farm up` / `tinygen farm down`: a labgrid farm of emulated boards.

The farm's folder (``--dir``, default ``tinygen-farm``) holds what one farm
is: ``farm.json`` (what was asked), ``state.json`` (what runs: the daemon's
pid, the coordinator's address, each place's board and URL), the exporter's
YAML, the coordinator's ``places.yaml`` and a log.  `farm down` signals the
daemon named there, after checking that the pid is still that daemon, so it
stops what `farm up` started and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..boards import get_board
from ..errors import TinygenError
from .daemon import LOG, SPEC, STATE, write_json
from .places import FarmError, coordinator_address, tag_value

DEFAULT_DIR = "tinygen-farm"
MAX_BOARDS = 64


@dataclass
class FarmState:
    directory: Path
    coordinator: str
    places: list[dict]
    pid: int
    board: str


def _read_state(farm_dir: Path) -> dict | None:
    try:
        return json.loads((farm_dir / STATE).read_text())
    except (OSError, ValueError):
        return None


def _is_our_daemon(pid: int, farm_dir: Path) -> bool:
    """The pid still runs tinygen.farm.daemon for this folder (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"tinygen.farm.daemon" in cmdline and str(farm_dir.resolve()).encode() in cmdline


def running_farm(farm_dir: Path) -> dict | None:
    state = _read_state(farm_dir)
    if state and _is_our_daemon(int(state.get("pid", 0)), farm_dir):
        return state
    return None


def farm_up(model: str, *, board_id: str, count: int, farm_dir: Path, runtime: str | None = None,
            calib: str | None = None, output: str | None = None, prefix: str | None = None,
            coordinator: str | None = None, force: bool = False, tflm_source: str | None = None,
            start_timeout: float = 90.0,
            progress: Callable[[str], None] = lambda _m: None) -> FarmState:
    """Build ``model`` for ``board_id``, start the farm's daemon and wait
    until its places exist.  ``coordinator`` (or $LG_COORDINATOR) names a
    coordinator to join instead of starting one."""
    from ..project.build import build, default_out_dir
    board = get_board(board_id)
    if not board.emulated:
        raise TinygenError(f"{board.id} is a real board: `farm up` boots emulated boards; a farm "
                           "of real boards runs labgrid-exporter on the hosts they hang off "
                           "(docs/board-farm.md)")
    if not 1 <= count <= MAX_BOARDS:
        raise TinygenError(f"--count must be from 1 to {MAX_BOARDS}")
    for tool in ("labgrid-coordinator", "labgrid-exporter"):
        if shutil.which(tool) is None:
            raise TinygenError(f"{tool} not found: install labgrid (pip install labgrid, "
                               "or bash scripts/setup.sh)")
    farm_dir = farm_dir.resolve()
    live = running_farm(farm_dir)
    if live:
        raise TinygenError(f"a farm is already up in {farm_dir} (pid {live['pid']}, "
                           f"coordinator {live.get('coordinator')}): `tinygen farm down "
                           f"--dir {farm_dir}` first, or use another --dir")
    if coordinator is None and os.environ.get("LG_COORDINATOR"):
        coordinator = coordinator_address()
    # the boards speak the serial protocol `tinygen verify` drives
    out = Path(output) if output else default_out_dir(Path(model), board, "protocol")
    result = build(model, board.id, runtime=runtime, calib=calib, out_dir=out,
                   progress=progress, tflm_source=tflm_source, force=force, firmware="protocol")
    if result.elf is None:
        raise TinygenError(f"the build for {board.id} produced no firmware")
    farm_dir.mkdir(parents=True, exist_ok=True)
    for stale in (STATE, LOG):
        (farm_dir / stale).unlink(missing_ok=True)
    spec = {"board": board.id, "count": count, "machine": board.qemu_machine,
            "elf": str(Path(result.elf).resolve()), "baud": board.baud,
            "prefix": prefix or board.id, "coordinator": coordinator,
            "exporter": f"tinygen-{os.uname().nodename}-{os.getpid()}",
            "tags": {"board": tag_value(board.id)}, "model": str(model),
            "model_signature": result.signature, "project": str(result.out_dir)}
    write_json(farm_dir / SPEC, spec)
    progress(f"starting {count} {board.id} board(s), "
             + (f"joining the coordinator at {coordinator}" if coordinator
                else "a labgrid coordinator on loopback") + " and a labgrid exporter")
    with (farm_dir / LOG).open("ab") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "tinygen.farm.daemon", str(farm_dir)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  start_new_session=True, cwd=farm_dir)
    deadline = time.monotonic() + start_timeout
    while True:
        state = _read_state(farm_dir) or {}
        if state.get("status") == "ready":
            break
        if state.get("status") == "failed" or daemon.poll() is not None:
            daemon.wait(10)
            raise TinygenError(f"farm up failed: {state.get('error') or _log_tail(farm_dir)} "
                               f"(log: {farm_dir / LOG})")
        if time.monotonic() > deadline:
            daemon.terminate()
            daemon.wait(15)
            raise TinygenError(f"farm up: not ready within {start_timeout:.0f} s "
                               f"(log: {farm_dir / LOG})")
        time.sleep(0.1)
    return FarmState(directory=farm_dir, coordinator=state["coordinator"],
                     places=state["places"], pid=state["pid"], board=board.id)


def _log_tail(farm_dir: Path) -> str:
    try:
        lines = (farm_dir / LOG).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "the daemon exited without a word"


def farm_down(farm_dir: Path, timeout: float = 30.0) -> dict:
    """Stop the farm of ``farm_dir``; returns its last state.  A farm that is
    not running is an error naming the folder."""
    farm_dir = farm_dir.resolve()
    state = _read_state(farm_dir)
    if state is None:
        raise FarmError(f"no farm in {farm_dir} (no {STATE}): nothing to stop")
    pid = int(state.get("pid", 0))
    if not _is_our_daemon(pid, farm_dir):
        raise FarmError(f"the farm in {farm_dir} is not running (its daemon, pid {pid}, is gone)")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_daemon(pid, farm_dir):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)   # its children follow it (PDEATHSIG)
            break
        time.sleep(0.1)
    return _read_state(farm_dir) or state
