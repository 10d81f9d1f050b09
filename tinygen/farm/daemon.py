"""The process that keeps a farm of emulated boards up.

``tinygen farm up`` builds the firmware, then starts this module as a
detached process (``python -m tinygen.farm.daemon DIR``), because the boards,
the coordinator and the exporter must outlive the command.  It reads
``DIR/farm.json`` (what to start), starts the N QEMUs, a labgrid
coordinator on loopback unless one is named, a labgrid exporter publishing
every board's UART as a ``NetworkSerialPort`` (protocol raw), and the places;
then writes ``DIR/state.json`` and waits for SIGTERM (``tinygen farm
down``), on which it takes down exactly what it started, places included.

Children get SIGTERM if this process dies (PR_SET_PDEATHSIG), so even a
SIGKILLed farm leaves no QEMU or exporter behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..device.qemu import QemuProcess
from ..errors import TinygenError
from .places import Farm, FarmError, grpc_environment

SPEC = "farm.json"
STATE = "state.json"
LOG = "farm.log"
_LISTENING = re.compile(rb"listening on (\S+:\d+)")


def _die_with_parent() -> None:   # in the child, between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))   # PR_SET_PDEATHSIG


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def exporter_yaml(groups: dict[str, tuple[int, int]]) -> str:
    """The exporter's resources: one group per board, its UART on loopback.
    labgrid renders this file with Jinja, where a lone ``#`` starts a
    comment tag: comments are ``##``."""
    lines = ["## written by tinygen farm up: one group per emulated board"]
    for name, (port, baud) in groups.items():
        lines += [f"{name}:", "  NetworkSerialPort:", "    host: 127.0.0.1",
                  f"    port: {port}", f"    speed: {baud}", "    protocol: raw"]
    return "\n".join(lines) + "\n"


class _Child:
    """A labgrid process of ours, its output in the farm's log."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, log: Path):
        self.name = name
        self.log = log
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=grpc_environment(dict(os.environ)),
                                     preexec_fn=_die_with_parent)
        self._out = bytearray()

    def read_until(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            m = pattern.search(self._out)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                tail = self._out.decode(errors="replace").strip().splitlines()[-3:]
                raise FarmError(f"{self.name} did not start: " + (" / ".join(tail) or "no output"))
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if chunk:
                    self._out += chunk
                    with self.log.open("ab") as f:
                        f.write(chunk)

    def drain_to_log(self) -> None:
        """Let the child's output flow to the log from now on (a pipe nobody
        reads would block it)."""
        import threading

        def pump(proc=self.proc, log=self.log):
            with log.open("ab") as f:
                for line in iter(proc.stdout.readline, b""):
                    f.write(line)
                    f.flush()
        threading.Thread(target=pump, daemon=True, name=f"{self.name}-log").start()

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def run(farm_dir: Path) -> int:
    spec = json.loads((farm_dir / SPEC).read_text())
    state: dict = {"status": "starting", "pid": os.getpid(), "board": spec["board"],
                   "places": [], "started": time.time()}
    write_json(farm_dir / STATE, state)
    log = farm_dir / LOG
    qemus: list[QemuProcess] = []
    children: list[_Child] = []
    farm: Farm | None = None
    created: list[str] = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        names = [f"{spec['prefix']}-{k + 1}" for k in range(spec["count"])]
        for name in names:
            qemu = QemuProcess(spec["machine"], spec["elf"])
            qemu.start()
            qemus.append(qemu)
            state["places"].append({"name": name, "url": qemu.url, "qemu_pid": qemu.pid})
        address = spec.get("coordinator")
        if not address:
            coord_dir = farm_dir / "coordinator"
            coord_dir.mkdir(exist_ok=True)
            coordinator = _Child("labgrid-coordinator",
                                 ["labgrid-coordinator", "-l", "127.0.0.1:0"], coord_dir, log)
            children.append(coordinator)
            address = coordinator.read_until(_LISTENING, 30).group(1).decode()
            coordinator.drain_to_log()
            state["coordinator_pid"] = coordinator.proc.pid
        state["coordinator"] = address
        exporter_name = spec["exporter"]
        (farm_dir / "exporter.yaml").write_text(exporter_yaml(
            {name: (q.port, spec["baud"]) for name, q in zip(names, qemus)}))
        exporter = _Child("labgrid-exporter",
                          ["labgrid-exporter", "-c", address, "-n", exporter_name,
                           "--hostname", "127.0.0.1", str(farm_dir / "exporter.yaml")],
                          farm_dir, log)
        children.append(exporter)
        exporter.drain_to_log()
        state["exporter_pid"] = exporter.proc.pid
        state["exporter"] = exporter_name
        farm = Farm(address)
        farm.open()
        farm.wait_for_resources(len(names), exporter_name)
        for name in names:
            farm.create_place(name, f"{exporter_name}/{name}/*", spec["tags"])
            created.append(name)
        state["status"] = "ready"
        write_json(farm_dir / STATE, state)
        while not stop:
            time.sleep(0.2)
        return 0
    except (TinygenError, OSError) as exc:
        state["status"] = "failed"
        state["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        write_json(farm_dir / STATE, state)
        return 1
    finally:
        # Places first (they live on a coordinator that may not be ours), then
        # the exporter and the coordinator, then the boards.
        if farm is not None:
            for name in created:
                with contextlib.suppress(TinygenError):
                    farm.delete_place(name)
            farm.close()
        for child in reversed(children):
            child.stop()
        for qemu in qemus:
            qemu.stop()
        if state["status"] == "ready":
            state["status"] = "stopped"
            write_json(farm_dir / STATE, state)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
