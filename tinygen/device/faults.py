"""Fault injection for serial links: a pyserial-compatible wrapper that damages
traffic on purpose (docs/fault-tolerance.md).

    port = FaultyPort(serial.serial_for_url(url, timeout=0.02),
                      FaultPlan(seed=7, to_device=Faults(flip=1e-4), from_device=Faults(drop=1e-4)))
    client = DeviceClient(port, baudrate=0)

:class:`FaultyPort` offers what :class:`tinygen.device.protocol.DeviceClient`
and most pyserial users need from ``serial.Serial``: ``read``, ``write``,
``timeout`` (settable; ``None`` blocks, ``0`` polls), ``in_waiting``,
``reset_input_buffer``, ``reset_output_buffer``, ``flush``, ``close``,
``is_open``, ``baudrate``.  Each direction has its own :class:`Faults`:

* ``drop``, ``flip``, ``duplicate``: per-byte probabilities of losing a
  byte, flipping one of its bits, sending it twice;
* ``garbage``: per-byte probability of inserting a burst of random bytes
  (``garbage_bytes`` long, zero bytes included) before that byte;
* ``delay``: per-call probability of delivering the bytes ``delay_s``
  seconds late (order is kept: later bytes wait behind them);
* ``stall``: per-call probability that the direction stops delivering
  anything for ``stall_s`` seconds (bytes are held, not lost);
* ``max_faults``: stop injecting in this direction after that many faults.

And for the device as a whole, ``reset``: per-write probability of a device
reset ``reset_delay_s`` seconds after that write (a board's reset button, a
brown-out, a watchdog): the ``on_reset`` callback restarts the device and
may return a new inner port (an emulator restarted on a new TCP port) or
``None`` to keep the current one (a board behind the same UART).  Bytes in
flight at the reset are lost.  :func:`qemu_reset` makes the callback for a
:class:`~tinygen.device.qemu.QemuProcess`.

Everything random comes from ``random.Random`` seeded from the plan's seed
(one stream per direction and one for resets), so a failing run repeats
with the same seed and the same traffic.  :attr:`FaultyPort.log` counts
what was injected.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import time
from typing import Any, Callable

ResetCallback = Callable[[], Any]

_POLL = 0.01  # longest single wait on the inner port while something is scheduled


@dataclasses.dataclass
class Faults:
    """Faults of one direction (all probabilities 0 = a clean line)."""

    drop: float = 0.0          # per byte
    flip: float = 0.0          # per byte: one random bit inverted
    duplicate: float = 0.0     # per byte: sent twice
    garbage: float = 0.0       # per byte: a burst of random bytes inserted before it
    garbage_bytes: tuple[int, int] = (1, 64)
    delay: float = 0.0         # per call: delivered late
    delay_s: tuple[float, float] = (0.0, 0.2)
    stall: float = 0.0         # per call: nothing delivered for stall_s
    stall_s: float = 1.0
    max_faults: int | None = None

    @property
    def active(self) -> bool:
        return any((self.drop, self.flip, self.duplicate, self.garbage, self.delay, self.stall))


@dataclasses.dataclass
class FaultPlan:
    seed: int = 0
    to_device: Faults = dataclasses.field(default_factory=Faults)
    from_device: Faults = dataclasses.field(default_factory=Faults)
    reset: float = 0.0                       # per write: probability of a device reset
    reset_delay_s: tuple[float, float] = (0.0, 0.0)
    max_resets: int | None = None


@dataclasses.dataclass
class FaultLog:
    """What a FaultyPort injected so far."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bytes_to_device: int = 0
    bytes_from_device: int = 0

    def note(self, direction: str, kind: str, n: int = 1) -> None:
        if n:
            self.counts[f"{direction}.{kind}"] += n

    def total(self, direction: str | None = None) -> int:
        return sum(v for k, v in self.counts.items()
                   if k != "device.reset" and (direction is None or k.startswith(direction + ".")))

    @property
    def resets(self) -> int:
        return self.counts["device.reset"]


class _Direction:
    """One direction: damages bytes and schedules their delivery."""

    def __init__(self, name: str, faults: Faults, rng: random.Random, log: FaultLog):
        self.name, self.faults, self.rng, self.log = name, faults, rng, log
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.stall_until = 0.0
        self.injected = 0
        self.countdown: int | None = None          # bytes to the next drop/flip/duplicate
        self.garbage_countdown: int | None = None  # bytes to the next garbage burst

    def _budget(self) -> bool:
        limit = self.faults.max_faults
        return limit is None or self.injected < limit

    def _count(self, kind: str, n: int = 1) -> None:
        self.injected += n
        self.log.note(self.name, kind, n)

    def _hits(self, n: int, p: float, countdown: int | None) -> tuple[list[int], int]:
        """Positions in a call of n bytes hit by a per-byte fault of rate p,
        and the countdown carried into the next call."""
        pos = self._gap(p) if countdown is None else countdown
        hits = []
        while pos < n:
            hits.append(pos)
            pos += 1 + self._gap(p)
        return hits, pos - n

    def _gap(self, p: float) -> int:
        """Bytes until the next per-byte fault (geometric, so the rate is
        exactly p per byte however the stream is cut into calls)."""
        u = self.rng.random()
        return int(math.log(1.0 - u) / math.log(1.0 - p)) if p < 1.0 else 0

    def damage(self, data: bytes) -> bytes:
        f, rng = self.faults, self.rng
        if not data or not f.active or not self._budget():
            return data
        p = min(1.0, f.drop + f.flip + f.duplicate)
        out = bytearray(data)
        if p > 0:
            # the faulty positions of this call; edits go back to front
            hits, self.countdown = self._hits(len(data), p, self.countdown)
            for at in reversed(hits):
                if not self._budget():
                    break
                r = rng.random() * p
                if r < f.drop:
                    del out[at]
                    self._count("drop")
                elif r < f.drop + f.flip:
                    out[at] ^= 1 << rng.randrange(8)
                    self._count("flip")
                else:
                    out.insert(at, out[at])
                    self._count("duplicate")
        if f.garbage:
            # positions in the original bytes; bursts go in back to front, and a
            # position past what drops left is the end
            hits, self.garbage_countdown = self._hits(len(data), min(1.0, f.garbage),
                                                      self.garbage_countdown)
            for at in reversed(hits):
                if not self._budget():
                    break
                lo, hi = f.garbage_bytes
                junk = bytes(rng.randrange(256) for _ in range(rng.randint(lo, hi)))
                at = min(at, len(out))
                out[at:at] = junk
                self._count("garbage")
        return bytes(out)

    def schedule(self, data: bytes, now: float) -> None:
        """Queue damaged bytes for delivery (stalls and delays decided per call)."""
        f, rng = self.faults, self.rng
        if f.stall and self._budget() and rng.random() < f.stall:
            self.stall_until = max(self.stall_until, now + f.stall_s)
            self._count("stall")
        due = max(now, self.stall_until)
        if f.delay and self._budget() and rng.random() < f.delay:
            due += rng.uniform(*f.delay_s)
            self._count("delay")
        if self.queue:  # keep the order: nothing overtakes what waits
            due = max(due, self.queue[-1][0])
        if data:
            self.queue.append((due, data))

    def due(self, now: float) -> bytes:
        """Bytes whose time has come (none while stalled)."""
        if now < self.stall_until:
            return b""
        out = bytearray()
        while self.queue and self.queue[0][0] <= now:
            out += self.queue.popleft()[1]
        return bytes(out)

    def next_event(self) -> float | None:
        if not self.queue:
            return None
        return max(self.queue[0][0], self.stall_until)

    def clear(self) -> None:
        self.queue.clear()


class FaultyPort:
    """A pyserial-like port that damages the traffic of ``inner`` by ``plan``.

    ``on_reset`` restarts the device when the plan (or :meth:`reset_device`)
    says so; it may return a new inner port.  The inner port's own timeout is
    managed here; set the wanted read timeout on this object."""

    def __init__(self, inner: Any, plan: FaultPlan | None = None, *,
                 on_reset: ResetCallback | None = None, timeout: float | None = None):
        self.inner = inner
        self.plan = plan or FaultPlan()
        self.on_reset = on_reset
        self.log = FaultLog()
        seed = self.plan.seed
        self._tx = _Direction("to_device", self.plan.to_device, random.Random(f"{seed}/tx"), self.log)
        self._rx = _Direction("from_device", self.plan.from_device, random.Random(f"{seed}/rx"), self.log)
        self._reset_rng = random.Random(f"{seed}/reset")
        self._reset_at: float | None = None
        self._rx_ready = bytearray()
        self._timeout = timeout if timeout is not None else getattr(inner, "timeout", None)
        self._closed = False

    # -- pyserial attributes ---------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value

    @property
    def baudrate(self) -> int:
        return getattr(self.inner, "baudrate", 0)

    @property
    def is_open(self) -> bool:
        return not self._closed and getattr(self.inner, "is_open", True)

    @property
    def in_waiting(self) -> int:
        self._service(0.0)
        return len(self._rx_ready)

    @property
    def out_waiting(self) -> int:
        return sum(len(d) for _, d in self._tx.queue)

    def reset_input_buffer(self) -> None:
        self._service(0.0)
        self._rx_ready.clear()
        self._rx.clear()
        if hasattr(self.inner, "reset_input_buffer"):
            self.inner.reset_input_buffer()

    def reset_output_buffer(self) -> None:
        self._tx.clear()
        if hasattr(self.inner, "reset_output_buffer"):
            self.inner.reset_output_buffer()

    def flush(self) -> None:
        """Sends what is due; delayed and stalled bytes stay scheduled."""
        self._pump_tx(time.monotonic())
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        self._closed = True
        self.inner.close()

    def __enter__(self) -> "FaultyPort":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- I/O ---------------------------------------------------------------

    def write(self, data: bytes) -> int:
        self._check_open()
        data = bytes(data)
        now = time.monotonic()
        self.log.bytes_to_device += len(data)
        self._service(0.0)
        self._tx.schedule(self._tx.damage(data), now)
        self._pump_tx(now)
        self._maybe_plan_reset(now)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._check_open()
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._service(0.0)
            if len(self._rx_ready) >= size:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = _POLL if deadline is None else deadline - now
            for event in (self._tx.next_event(), self._rx.next_event(), self._reset_at):
                if event is not None:
                    wait = min(wait, max(0.0, event - now))
            self._service(max(wait, 0.0005) if wait > 0 else 0.0)
            if len(self._rx_ready) >= size:
                break
        out = bytes(self._rx_ready[:size])
        del self._rx_ready[:size]
        return out

    def reset_device(self) -> None:
        """Reset the device now (through on_reset)."""
        self._do_reset()

    # -- internals ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OSError("FaultyPort is closed")

    def _maybe_plan_reset(self, now: float) -> None:
        plan = self.plan
        if not plan.reset or self._reset_at is not None or self.on_reset is None:
            return
        if plan.max_resets is not None and self.log.resets >= plan.max_resets:
            return
        if self._reset_rng.random() < plan.reset:
            self._reset_at = now + self._reset_rng.uniform(*plan.reset_delay_s)

    def _do_reset(self) -> None:
        self._reset_at = None
        self.log.note("device", "reset")
        # What was on the wire is gone with the device's receive state.
        self._tx.clear()
        self._rx.clear()
        if self.on_reset is None:
            raise RuntimeError("FaultyPort.reset_device needs an on_reset callback")
        new_inner = self.on_reset()
        if new_inner is not None and new_inner is not self.inner:
            try:
                self.inner.close()
            except Exception:  # noqa: BLE001 - the old link may already be dead
                pass
            self.inner = new_inner

    def _pump_tx(self, now: float) -> None:
        data = self._tx.due(now)
        if data:
            self.inner.write(data)

    def _service(self, wait: float) -> None:
        """Run due resets and deliveries; take what the inner port has,
        waiting up to ``wait`` seconds for its first byte."""
        now = time.monotonic()
        if self._reset_at is not None and now >= self._reset_at:
            self._do_reset()
        self._pump_tx(now)
        inner = self.inner
        inner.timeout = wait
        data = inner.read(1)
        if data:
            inner.timeout = 0
            while True:
                more = inner.read(65536)
                if not more:
                    break
                data += more
        now = time.monotonic()
        if data:
            self.log.bytes_from_device += len(data)
            self._rx.schedule(self._rx.damage(data), now)
        self._rx_ready += self._rx.due(now)


def qemu_reset(qemu: Any, *, url_timeout: float = 0.02) -> ResetCallback:
    """on_reset for a QemuProcess: stop it, start it again (on a new loopback
    port) and return a pyserial port connected to it.

    The restart happens in whatever thread does the I/O that triggers it (a
    watchdog's worker thread, say); QEMU's ``die_with_parent`` would kill the
    new QEMU when that thread ends, so it is turned off here.  QEMU is still
    stopped by ``stop()``, garbage collection and interpreter exit."""

    def restart():
        import serial
        qemu.stop()
        qemu.die_with_parent = False
        qemu.start()
        return serial.serial_for_url(qemu.url, timeout=url_timeout)

    return restart
