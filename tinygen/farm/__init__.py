"""Board farms through labgrid: places acquired for `tinygen verify`, and
farms of emulated boards (`tinygen farm up/down`).  docs/board-farm.md."""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from ..boards import all_boards
from .places import AcquiredPlace, Farm, FarmError, parse_tags, tag_value

__all__ = ["AcquiredPlace", "Farm", "FarmError", "PlaceSelection", "acquire_places",
           "parse_tags", "board_of_places"]


@dataclass
class PlaceSelection:
    """What was acquired: one port URL and place name per board."""
    places: list[AcquiredPlace] = field(default_factory=list)
    board_tag: str | None = None      # the `board` tag all of them carry, if one

    @property
    def ports(self) -> list[str]:
        return [p.url for p in self.places]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.places]


def board_of_places(tag: str | None) -> str | None:
    """The board id whose tag value is ``tag`` (farm up tags places board=ID)."""
    if not tag:
        return None
    for board in all_boards():
        if tag_value(board.id) == tag:
            return board.id
    return None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A CI job cancelled with SIGTERM releases its places like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def acquire_places(names: Sequence[str] = (), tags: Sequence[str] = (), *, wait: float = 0.0,
                   coordinator: str | None = None,
                   progress: Callable[[str], None] = lambda _m: None,
                   warn: Callable[[str], None] | None = None) -> Iterator[PlaceSelection]:
    """Acquire the named places and every place carrying all ``tags``
    (KEY=VALUE), yield their serial ports, release them however the block
    is left (an exception, Ctrl-C, SIGTERM); a release that fails goes to
    ``warn`` when given, else raises."""
    wanted_tags = parse_tags(tags)
    with _sigterm_as_interrupt(), Farm(coordinator) as farm:
        selected = list(dict.fromkeys(names))
        if wanted_tags:
            matching = farm.matching(wanted_tags)
            if not matching:
                raise FarmError(f"no place on the coordinator at {farm.address} carries "
                                + " ".join(f"{k}={v}" for k, v in wanted_tags.items())
                                + f" (places: {', '.join(sorted(farm.places())) or 'none'})")
            selected += [n for n in matching if n not in selected]
        all_places = farm.places()
        board_tags = {all_places[n].tags.get("board") for n in selected if n in all_places}
        progress(f"acquiring {len(selected)} place(s) from the labgrid coordinator at "
                 f"{farm.address}: {', '.join(selected)}")
        with farm.acquired(selected, wait=wait, progress=progress,
                           release_failed=warn) as acquired:
            yield PlaceSelection(places=list(acquired),
                                 board_tag=board_tags.pop() if len(board_tags) == 1 else None)
