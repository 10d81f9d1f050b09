"""Places of a labgrid farm, through labgrid's own client session.

One :class:`Farm` is one labgrid ``ClientSession`` (labgrid allows one per
process): it sees the coordinator's places and the exporters' resources,
acquires places (through reservations when asked to wait for a busy one),
turns an acquired place's serial port into a pyserial URL, and releases
what it acquired.  Every labgrid or gRPC failure leaves as a
:class:`FarmError` naming the coordinator or the place.

The gRPC stub and labgrid's protobuf messages are used directly, not the
``labgrid-client`` command methods: those read argparse namespaces and
print to stdout, which would mix into ``tinygen verify --json -``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from ..errors import TinygenError

DEFAULT_WAIT_S = 0.0
# labgrid's tag syntax (TAG_KEY/TAG_VAL in labgrid.remote.common), checked
# here so a typo is our one-line error rather than a gRPC abort.
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")
_TAG_VAL = re.compile(r"^[a-z0-9_-]*$")
SERIAL_CLASSES = ("NetworkSerialPort",)


class FarmError(TinygenError):
    """The farm (coordinator, exporter, a place) could not do what was asked."""


def coordinator_address(explicit: str | None = None) -> str:
    """--coordinator, else $LG_COORDINATOR: where labgrid's coordinator listens."""
    address = explicit or os.environ.get("LG_COORDINATOR")
    if not address:
        raise FarmError("no labgrid coordinator: set LG_COORDINATOR=HOST:PORT (as "
                        "`tinygen farm up` prints it) or start a farm with `tinygen farm up`")
    return address


def grpc_environment(env: dict | None = None) -> dict:
    """gRPC honours http(s)_proxy even for loopback: exempt local addresses."""
    env = os.environ if env is None else env
    for key in ("no_proxy", "NO_PROXY"):
        have = [h for h in env.get(key, "").split(",") if h]
        for host in ("127.0.0.1", "localhost"):
            if host not in have:
                have.append(host)
        env[key] = ",".join(have)
    return env


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """["board=qemu_x", ...] -> {"board": "qemu_x"}, with labgrid's tag syntax."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _TAG_KEY.match(key) or not _TAG_VAL.match(value):
            raise FarmError(f"--place-tag {pair!r} is not KEY=VALUE in labgrid's tag syntax "
                            "(key: lower-case letters, digits, _; value: also -)")
        tags[key] = value
    return tags


def tag_value(text: str) -> str:
    """A board id as a labgrid tag value (which allows no dots or capitals)."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())


@dataclass
class AcquiredPlace:
    name: str
    url: str
    baud: int | None = None
    token: str | None = None          # the reservation it was acquired through


@dataclass
class _Held:
    places: list[AcquiredPlace] = field(default_factory=list)      # acquired here: released here
    tokens: list[str] = field(default_factory=list)
    borrowed: list[AcquiredPlace] = field(default_factory=list)    # held before: left held


class Farm:
    """A session with a labgrid coordinator; use as a context manager."""

    def __init__(self, address: str | None = None, *, connect_timeout: float = 10.0):
        self.address = coordinator_address(address)
        self.connect_timeout = connect_timeout
        self._session = None
        self._loop = None

    # -- session -------------------------------------------------------------

    def __enter__(self) -> "Farm":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        import asyncio

        grpc_environment()
        _quiet_labgrid_logging()
        from labgrid.remote.client import ClientSession, Error
        from labgrid.util.proxy import proxymanager
        # grpc.aio binds its channel to the thread's current event loop
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        address = proxymanager.get_grpc_address(self.address, default_port=20408)
        session = ClientSession(address, self._loop)
        try:
            self._run(session.start(), self.connect_timeout)
        except (Error, TimeoutError, OSError) as exc:
            self._session = session
            self.close()
            why = "" if isinstance(exc, Error) else f" ({_reason(exc)})"
            raise FarmError(f"labgrid coordinator at {self.address} does not answer{why}: is it "
                            "running? (`tinygen farm up` starts one; LG_COORDINATOR names "
                            "it)") from None
        self._session = session

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._run(session.stop(), 5)
            with contextlib.suppress(Exception):
                self._run(session.close(), 5)
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def _run(self, coro, timeout: float | None = 30.0):
        import asyncio
        assert self._loop is not None
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def _call(self, what: str, request_name: str, method: str, **fields):
        """One coordinator RPC, then a sync so our view of places is current."""
        import grpc
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
        session = self._live()
        request = getattr(pb2, request_name)(**fields)

        async def call():
            response = await getattr(session.stub, method)(request)
            await session.sync_with_coordinator()
            return response
        try:
            return self._run(call())
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise FarmError(f"labgrid coordinator at {self.address} went away "
                                f"while {what}") from None
            raise FarmError(f"{what}: the coordinator said: {exc.details()}") from None
        except TimeoutError:
            raise FarmError(f"labgrid coordinator at {self.address} did not answer "
                            f"while {what}") from None

    def _live(self):
        session = self._session
        if session is None:
            raise FarmError("not connected to a labgrid coordinator")
        if session.stopping.is_set():
            raise FarmError(f"labgrid coordinator at {self.address} went away")
        return session

    @property
    def user(self) -> str:
        session = self._live()
        return f"{session.gethostname()}/{session.getuser()}"

    # -- what the farm holds -------------------------------------------------

    def places(self) -> dict:
        """name -> labgrid Place (tags, matches, acquired, reservation...)."""
        return dict(self._live().places)

    def matching(self, tags: dict[str, str]) -> list[str]:
        """Names of the places carrying every tag in ``tags``."""
        return sorted(name for name, place in self.places().items()
                      if all(place.tags.get(k) == v for k, v in tags.items()))

    def serial_port(self, name: str) -> tuple[str, int | None]:
        """(pyserial URL, baud) of the serial port a place's matches select."""
        session = self._live()
        place = session.places.get(name)
        if place is None:
            raise FarmError(f"place {name} does not exist on the coordinator at {self.address}")
        paths = [tuple(p) for p in place.acquired_resources] if place.acquired else []
        if not paths:     # not acquired: look the resources up through the matches
            paths = [(e, g, r.cls, n) for e, groups in session.resources.items()
                     for g, group in groups.items() for n, r in group.items()
                     if place.hasmatch((e, g, r.cls, n))]
        for exporter, group, cls, res_name in paths:
            if cls not in SERIAL_CLASSES:
                continue
            entry = session.resources.get(exporter, {}).get(group, {}).get(res_name)
            if entry is None or not entry.data or not entry.avail:
                continue
            params = entry.params
            scheme = "rfc2217" if params.get("protocol", "rfc2217") == "rfc2217" else "socket"
            return f"{scheme}://{params['host']}:{params['port']}", params.get("speed")
        raise FarmError(f"place {name} has no available serial port (a NetworkSerialPort it "
                        "matches): its exporter is gone or was never started "
                        f"(matches: {', '.join(str(m) for m in place.matches) or 'none'})")

    # -- acquire / release ----------------------------------------------------

    def _owner_note(self, name: str) -> str:
        place = self._live().places.get(name)
        if place is None:
            return f"place {name} no longer exists"
        if place.acquired:
            return f"place {name} is acquired by {place.acquired}"
        if place.reservation:
            return f"place {name} is reserved for another job (token {place.reservation})"
        return f"place {name} is busy"

    @contextlib.contextmanager
    def acquired(self, names: Sequence[str], wait: float = DEFAULT_WAIT_S, progress=None,
                 release_failed: Callable[[str], None] | None = None) -> Iterator[list[AcquiredPlace]]:
        """Acquire every place in ``names`` (waiting up to ``wait`` seconds
        for busy ones, through reservations), yield their serial ports, and
        release them all on the way out, however it is left.  A release
        that fails raises, or goes to ``release_failed`` when given (so a
        finished verification keeps its report)."""
        held = _Held()
        try:
            wanted = list(dict.fromkeys(names))
            self._acquire_all(list(wanted), wait, held, progress)
            by_name = {p.name: p for p in held.places + held.borrowed}
            yield [by_name[n] for n in wanted]
        finally:
            try:
                self._release_all(held)
            except FarmError as exc:
                if release_failed is None:
                    raise
                release_failed(str(exc))

    def _acquire_all(self, names: list[str], wait: float, held: _Held, progress) -> None:
        session = self._live()
        missing = [n for n in names if n not in session.places]
        if missing:
            known = ", ".join(sorted(session.places)) or "none"
            raise FarmError(f"no place named {', '.join(missing)} on the coordinator at "
                            f"{self.address} (places: {known})")
        # Places this user holds already (a job that acquired them to flash
        # first) are used as they are and stay held: their holder releases them.
        me = self.user
        for name in [n for n in names if session.places[n].acquired == me]:
            url, baud = self.serial_port(name)
            held.borrowed.append(AcquiredPlace(name=name, url=url, baud=baud))
            names.remove(name)
        if wait <= 0:
            for name in names:
                place = session.places[name]
                if place.acquired or place.reservation:
                    raise FarmError(f"{self._owner_note(name)}; give --place-wait SECONDS to "
                                    "queue for it")
                self._acquire_one(name, None, held)
            return
        # Queue one reservation per place; the coordinator allocates each when
        # it is free.  A reservation not polled expires: poll them all.
        tokens: dict[str, str] = {}
        for name in names:
            response = self._call(f"reserving place {name}", "CreateReservationRequest",
                                  "CreateReservation", filters=_name_filter(name), prio=0.0)
            tokens[name] = response.reservation.token
            held.tokens.append(response.reservation.token)
        deadline = time.monotonic() + wait
        pending = list(names)
        announced = False
        while pending:
            for name in list(pending):
                state = self._poll(tokens[name])
                if state == "allocated":
                    self._acquire_one(name, tokens[name], held)
                    pending.remove(name)
                elif state in ("expired", "invalid"):
                    raise FarmError(f"the reservation for place {name} became {state}")
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise FarmError("; ".join(self._owner_note(n) for n in pending)
                                + f": still busy after waiting {wait:g} s")
            if progress and not announced:
                progress("waiting: " + "; ".join(self._owner_note(n) for n in pending))
                announced = True
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _poll(self, token: str) -> str:
        from labgrid.remote.common import Reservation
        response = self._call("waiting for a reservation", "PollReservationRequest",
                              "PollReservation", token=token)
        return Reservation.from_pb2(response.reservation).state.name

    def _acquire_one(self, name: str, token: str | None, held: _Held) -> None:
        self._call(f"acquiring place {name}", "AcquirePlaceRequest", "AcquirePlace",
                   placename=name)
        place = AcquiredPlace(name=name, url="", token=token)
        held.places.append(place)       # released even when its port is missing
        url, baud = self.serial_port(name)
        place.url, place.baud = url, baud

    def _release_all(self, held: _Held) -> None:
        problems = []
        for place in reversed(held.places):
            try:
                self._call(f"releasing place {place.name}", "ReleasePlaceRequest",
                           "ReleasePlace", placename=place.name)
            except FarmError as exc:
                problems.append(str(exc))
        for token in held.tokens:
            with contextlib.suppress(FarmError):   # reservations also expire by themselves
                self._call("cancelling a reservation", "CancelReservationRequest",
                           "CancelReservation", token=token)
        held.places.clear()
        held.tokens.clear()
        if problems:
            raise FarmError("; ".join(problems))

    # -- administration (farm up/down) --------------------------------------

    def create_place(self, name: str, match: str, tags: dict[str, str]) -> None:
        if name in self._live().places:
            raise FarmError(f"place {name} already exists on the coordinator at {self.address} "
                            "(another farm's? `tinygen farm down` it, or choose other names "
                            "with --prefix)")
        self._call(f"creating place {name}", "AddPlaceRequest", "AddPlace", name=name)
        self._call(f"adding a match to place {name}", "AddPlaceMatchRequest", "AddPlaceMatch",
                   placename=name, pattern=match)
        self._call(f"tagging place {name}", "SetPlaceTagsRequest", "SetPlaceTags",
                   placename=name, tags=tags)

    def delete_place(self, name: str) -> None:
        place = self._live().places.get(name)
        if place is None:
            return
        if place.acquired:      # a farm going down takes its places with it
            self._call(f"releasing place {name}", "ReleasePlaceRequest", "ReleasePlace",
                       placename=name, fromuser=place.acquired)
        self._call(f"deleting place {name}", "DeletePlaceRequest", "DeletePlace", name=name)

    def wait_for_resources(self, count: int, exporter: str, timeout: float = 20.0) -> None:
        """Until ``exporter`` has published ``count`` serial ports."""
        deadline = time.monotonic() + timeout
        while True:
            session = self._live()
            groups = session.resources.get(exporter, {})
            have = sum(1 for g in groups.values() for r in g.values()
                       if r.data and r.cls in SERIAL_CLASSES and r.avail)
            if have >= count:
                return
            if time.monotonic() >= deadline:
                raise FarmError(f"labgrid exporter {exporter} published {have} of {count} serial "
                                f"ports within {timeout:g} s")
            self._run(session.sync_with_coordinator(), 5)
            time.sleep(0.1)


def _name_filter(name: str) -> dict:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
    return {"main": pb2.Reservation.Filter(filter={"name": name})}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _quiet_labgrid_logging() -> None:
    """labgrid reports a lost coordinator with logging.error on the root
    logger; tinygen says it once, in its own words.  Without a handler of
    its own, Python would print those records on stderr."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def serial_url_of_target(target) -> tuple[str, int | None]:
    """(pyserial URL, baud) of a labgrid target's serial port: the
    NetworkSerialPort a RemotePlace expands to (or one declared in the
    environment file), else a local RawSerialPort."""
    from labgrid.exceptions import NoResourceFoundError
    from labgrid.resource import NetworkSerialPort, RawSerialPort
    from labgrid.util.proxy import proxymanager
    try:
        port = target.get_resource(NetworkSerialPort)
    except NoResourceFoundError:
        try:
            raw = target.get_resource(RawSerialPort)
        except NoResourceFoundError:
            raise FarmError(f"labgrid target {target.name} has no serial port "
                            "(NetworkSerialPort or RawSerialPort)") from None
        return raw.port, raw.speed
    # an SSH forward when the exporter is only reachable through its host
    host, tcp = proxymanager.get_host_and_port(port)
    scheme = "rfc2217" if port.protocol == "rfc2217" else "socket"
    return f"{scheme}://{host}:{tcp}", port.speed
