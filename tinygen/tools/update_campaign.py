"""The power-loss campaign for model updates (docs/model-update.md).

An updatable firmware built with --fault-injection runs in QEMU with its
model partition in a file.  Each trial starts from the same situation (one
model active, the previous one committed in the other slot) and installs a
newer image; the host arms the device to reset itself at the f-th fault
point of the install (every flash erase, every 256-byte page programmed --
torn in half when the fault strikes -- and every verification step), with f
swept over all the points of an install, again and again.  Every few trials
the power is cut from outside instead: QEMU is killed (SIGKILL) at a random
moment of the transfer and started again on the same flash file.

After every reset the host checks that the device booted a verified model
that is either the old or the new one (by the SLOTS table and by one
inference that must equal the tflite_micro interpreter's output for that
model, bit for bit), then completes the install (it resumes) and checks the
new model runs.  A trial in which the device runs no model, another model,
or a wrong output counts as bricked.

    python3 -m tinygen.tools.update_campaign --project DIR --signing-key KEY \\
        --model A.tflite --model B.tflite --resets 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..device.client import DeviceClient, open_device
from ..device.framing import ERR_UPDATE, DeviceError, ProtocolError
from ..device.qemu import QemuProcess
from ..device.slots import arm_fault, read_slots, send_image
from ..errors import TinygenError
from ..project.updatable import flash_image_args
from ..reference import TflmReference
from ..update import keys
from ..update.image import Meta, Version, build_image, selftest_tlv
from ..update.make import payload_for, selftest_vectors

SAME_IMAGE = 19


@dataclass
class CampaignReport:
    resets_tried: int = 0
    survived: int = 0
    bricked: int = 0
    delta: bool = False           # installs sent as deltas
    fault_resets: int = 0         # device reset itself at an armed fault point
    power_cuts: int = 0           # QEMU killed and restarted on the same flash file
    installs_completed: int = 0
    points_per_install: int = 0
    outcome: Counter = field(default_factory=Counter)   # old/new model after the reset
    phases: Counter = field(default_factory=Counter)    # resets per phase
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if not isinstance(v, Counter)}
        out.update(outcome=dict(self.outcome), phases=dict(self.phases))
        return out

    def summary(self) -> str:
        return (f"resets tried {self.resets_tried}, survived {self.survived}, bricked "
                f"{self.bricked} ({self.fault_resets} at fault points over "
                f"{self.points_per_install} points per install, {self.power_cuts} power cuts "
                f"by killing QEMU); after the reset the old model ran {self.outcome['old']} "
                f"times, the new one {self.outcome['new']}; {self.installs_completed} installs "
                f"completed; {self.seconds:.0f} s")


class _Model:
    def __init__(self, tflite: bytes, board: str, name: str, runtime: str = "aot"):
        from ..convert import parse_checked
        self.ir = parse_checked(tflite, "campaign model")
        self.payload = payload_for(runtime, self.ir, board, name)
        ins, outs = selftest_vectors(self.ir)
        self.selftest = selftest_tlv(ins, outs)
        self.sha = self.ir.signature
        self.reference = TflmReference(tflite)
        x = np.random.default_rng(7).integers(-128, 128, self.ir.tensors[self.ir.inputs[0]].shape)
        self.x = x.astype(np.int8)
        self.expected = self.reference.run([self.x])[0]


class Campaign:
    def __init__(self, project: Path, key_path: Path, tflites: list[bytes], seed: int = 0,
                 log=None, delta: bool = False):
        manifest = json.loads((project / "tinygen.json").read_text())
        update = manifest.get("update") or {}
        if not update.get("fault_injection"):
            raise TinygenError(f"{project} was not built with --updatable --fault-injection")
        from ..device.flash import find_elf
        self.elf = find_elf(project)
        self.machine = "mps2-an386"
        self.flash = project / "campaign-flash.img"
        self.flash.unlink(missing_ok=True)
        self.key = keys.load_private(key_path)
        board, name = manifest["board"], manifest.get("c_name", "model")
        self.runtime = update.get("runtime", "aot")
        builtin = _Model((project / "model.tflite").read_bytes(), board, name, self.runtime)
        self.models = [_Model(t, board, name, self.runtime) for t in tflites]
        self.by_sha = {m.sha: m for m in [builtin, *self.models]}
        self.rng = random.Random(seed)
        self.version = 0
        self.log = log or (lambda _m: None)
        self.qemu: QemuProcess | None = None
        self.dev: DeviceClient | None = None
        self.install_seconds = 0.5
        self.delta = delta
        self.images: dict[str, bytes] = {}      # version -> image, the bases of deltas
        from ..update.image import parse_image
        for path in (project / update["image_dir"]).glob("*.tgimg"):
            data = path.read_bytes()
            self.images[str(parse_image(data).version)] = data

    # -- plumbing ---------------------------------------------------------
    def _start(self) -> None:
        self.qemu = QemuProcess(self.machine, self.elf,
                                extra_args=flash_image_args(self.machine, self.flash))
        self.qemu.start()
        self.dev = open_device(self.qemu.url, timeout=3.0)
        self.dev.info()

    def _stop(self, kill: bool = False) -> None:
        if self.dev is not None:
            self.dev.close()
            self.dev = None
        if self.qemu is not None:
            if kill and self.qemu.pid:
                os.kill(self.qemu.pid, signal.SIGKILL)
            self.qemu.stop()
            self.qemu = None

    def _image(self, k: int) -> tuple[bytes, _Model]:
        m = self.models[k % len(self.models)]
        meta = Meta(self.runtime, m.payload.arena_bytes, m.payload.fingerprint,
                    bytes.fromhex(m.sha))
        image = build_image(m.payload.data, meta, Version(1, 1, k), m.selftest,
                            keys.signer(self.key))
        self.images[str(Version(1, 1, k))] = image
        return image, m

    def _reconnect(self) -> None:
        assert self.dev is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                self.dev.info(refresh=True)
                return
            except ProtocolError:
                if time.monotonic() > deadline:
                    raise

    def _install(self, image: bytes) -> None:
        """Install to completion (resuming); an image already active is done."""
        assert self.dev is not None
        base = None
        if self.delta:
            base = self.images.get(read_slots(self.dev).active_slot.version)
        try:
            send_image(self.dev, image, base=base)
        except DeviceError as exc:
            if not (exc.code == ERR_UPDATE and exc.detail == SAME_IMAGE):
                raise

    def _check(self, allowed: dict[str, str]) -> str | None:
        """Which of `allowed` (sha -> "old"/"new") runs, verified and bit-exact;
        None when it is anything else."""
        assert self.dev is not None
        table = read_slots(self.dev)
        s = table.active_slot
        if s.state != "valid" or s.model_sha256 not in allowed:
            self.log(f"active slot {s.index} is {s.state} with model {s.model_sha256[:16]}")
            return None
        info = self.dev.info(refresh=True)
        if not info.model_ready or info.signature != s.model_sha256:
            self.log(f"model not ready ({info.model_status}) or INFO names another model")
            return None
        m = self.by_sha[s.model_sha256]
        out = self.dev.infer([m.x]).outputs[0].reshape(m.expected.shape)
        if not np.array_equal(out, m.expected):
            self.log(f"slot {s.index}: output differs from the tflite_micro reference")
            return None
        return allowed[s.model_sha256]

    def _count_points(self, image: bytes) -> list[tuple[int, str]]:
        """Install once, noting the fault points each step passes: the
        phase of every point of an install in this situation."""
        assert self.dev is not None
        from ..device.framing import CMD_UPDATE_BEGIN, CMD_UPDATE_CHUNK, CMD_UPDATE_FINISH
        marks: list[tuple[int, str]] = []
        base = arm_fault(self.dev, 0)
        original = self.dev.request

        def request(ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
            reply = original(ftype, payload, timeout)
            if ftype in (CMD_UPDATE_BEGIN, CMD_UPDATE_CHUNK, CMD_UPDATE_FINISH):
                marks.append((arm_fault(self.dev, 0) - base, {
                    CMD_UPDATE_BEGIN: "begin: slot-table write, slot erase, receive record",
                    CMD_UPDATE_CHUNK: "chunk: page programs (mid-chunk) and resume mark",
                    CMD_UPDATE_FINISH: "finish"}[ftype]))
            return reply
        self.dev.request = request  # type: ignore[method-assign]
        try:
            self._install(image)
        finally:
            del self.dev.request
        phases: list[tuple[int, str]] = []
        prev = 0
        for end, label in marks:
            points = list(range(prev + 1, end + 1))
            if label == "finish":
                tail = ["after the slot-table write", "slot-table write (program)",
                        "slot-table write (erase)", "before the slot-table write",
                        "self-test", "signature verification"]
                tail += ["hash verification"] * (len(image) // 4096 + 1)
                for i, p in enumerate(reversed(points)):
                    phases.append((p, tail[i] if i < len(tail) else
                                   "delta: rebuilding the image (erase, page programs)"))
            else:
                phases += [(p, label) for p in points]
            prev = end
        return sorted(phases)

    # -- the campaign ------------------------------------------------------
    def run(self, resets: int, power_cut_every: int = 10) -> CampaignReport:
        rep = CampaignReport(delta=self.delta)
        t0 = time.monotonic()
        self._start()
        try:
            # reach the steady situation: slots 1 and 2 both hold a model
            for _ in range(3):
                self.version += 1
                self._install(self._image(self.version)[0])
            self.version += 1
            image, _m = self._image(self.version)
            t = time.monotonic()
            points = self._count_points(image)
            self.install_seconds = time.monotonic() - t
            rep.points_per_install = len(points)
            rep.installs_completed = 4
            sweep = 0
            while rep.resets_tried < resets:
                old = read_slots(self.dev).active_slot.model_sha256
                self.version += 1
                image, new_model = self._image(self.version)
                allowed = {old: "old", new_model.sha: "new"}
                cut = power_cut_every and (rep.resets_tried + 1) % power_cut_every == 0
                if cut:
                    phase = self._power_cut(image)
                    rep.power_cuts += 1
                else:
                    f, phase = points[sweep % len(points)]
                    sweep += 1
                    arm_fault(self.dev, f)
                    try:
                        self._install(image)
                        phase = None        # no reset: the point was not reached
                    except ProtocolError:
                        rep.fault_resets += 1
                    if phase is None:
                        arm_fault(self.dev, 0)
                        rep.installs_completed += 1
                        continue
                    self._reconnect()
                rep.resets_tried += 1
                rep.phases[phase] += 1
                which = self._check(allowed)
                if which is None:
                    rep.bricked += 1
                    rep.failures.append(f"reset at {phase} (version 1.1.{self.version}): "
                                        "no verified old/new model ran")
                    break
                rep.outcome[which] += 1
                self._install(image)
                if self._check({new_model.sha: "new"}) is None:
                    rep.bricked += 1
                    rep.failures.append(f"after a reset at {phase} the install did not complete")
                    break
                rep.survived += 1
                rep.installs_completed += 1
                if rep.resets_tried % 25 == 0:
                    self.log(f"{rep.resets_tried} resets, {rep.bricked} bricked")
        finally:
            self._stop()
            self.flash.unlink(missing_ok=True)
        rep.seconds = time.monotonic() - t0
        return rep

    def _power_cut(self, image: bytes) -> str:
        """Kill QEMU at a random moment of the install; start it again."""
        assert self.qemu is not None and self.dev is not None
        delay = self.rng.uniform(0.0, self.install_seconds)
        pid = self.qemu.pid
        timer = threading.Timer(delay, lambda: os.kill(pid, signal.SIGKILL))
        timer.start()
        try:
            self._install(image)
        except ProtocolError:
            pass
        timer.join()
        self._stop(kill=True)
        self._start()
        return "power cut at a random moment (QEMU killed)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tinygen.tools.update_campaign",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", required=True, help="project built with --updatable "
                    "--fault-injection for qemu-cortex-m4")
    ap.add_argument("--signing-key", required=True)
    ap.add_argument("--model", action="append", required=True,
                    help=".tflite of the same architecture (give two or more: installs cycle "
                         "through them)")
    ap.add_argument("--resets", type=int, default=300)
    ap.add_argument("--power-cut-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delta", action="store_true",
                    help="install by delta against the running image (HDiffPatch)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    try:
        camp = Campaign(Path(args.project), Path(args.signing_key),
                        [Path(m).read_bytes() for m in args.model], args.seed,
                        log=lambda m: print(f"  .. {m}", file=sys.stderr, flush=True),
                        delta=args.delta)
        rep = camp.run(args.resets, args.power_cut_every)
    except TinygenError as exc:
        print(f"update_campaign: error: {exc}", file=sys.stderr)
        return 2
    print(rep.summary())
    for phase, n in sorted(rep.phases.items()):
        print(f"  {n:4d}  {phase}")
    for f in rep.failures:
        print(f"  FAILED: {f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rep.as_dict(), indent=2))
    return 0 if rep.bricked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
