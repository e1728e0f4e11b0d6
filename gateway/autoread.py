"""``read_interval="auto"`` (the default): batched reading where it pays, and only there.

Batched reading (:mod:`gateway.poller`) saves CPU when one tick of the poller finds several
sockets with data: the loop then wakes, polls and iterates once for all of them, and the
consumer is woken once. When a tick finds one socket, it costs more than reading as data
arrives (the poller's own wake-up, timer and poll come on top), and it always adds up to
one interval of latency. So it pays for many connections on one loop whose reads together
are frequent, and not for one busy shard (its own reads already carry many messages each)
or for a few quiet ones.

Every connection of a loop opened with ``"auto"`` joins that loop's :class:`AutoReading`
once its websocket is open. Once a second it counts the messages its connections received
(a count that does not depend on how they are read, so switching cannot feed back into
it). Batching starts when at least ``AUTO_MIN_CONNECTIONS`` connections receive at least
``AUTO_START_RATE`` messages a second together, the busiest one left out (one firehose
beside idle shards gains nothing: a tick would find one socket), and stops when they
receive fewer than ``AUTO_STOP_RATE`` (a gap between the two, so a rate near the line does
not flip every second) or fewer connections remain. Messages are every websocket message:
heartbeat ACKs and dispatches that ``Config.event_types`` leaves out count too.
Switching moves a socket between the loop's selector and the poller without losing a byte
(the kernel holds what arrives meanwhile). While batching, the interval is
``AUTO_INTERVAL``: the added latency is at most that plus the batch's own processing. The
thresholds come from ``tools/bench_trickle.py`` (see docs/benchmarks.md, "Batched reading
chosen by itself").
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Final, Literal, Protocol

from .poller import MAX_READ_INTERVAL

__all__ = [
    "AUTO",
    "AUTO_INTERVAL",
    "AUTO_MIN_CONNECTIONS",
    "AUTO_START_RATE",
    "AUTO_STOP_RATE",
    "AutoReading",
    "Batchable",
    "ReadInterval",
    "auto_reading",
    "check_read_interval",
    "should_batch",
]

#: The ``read_interval`` that lets the library choose.
AUTO: Final = "auto"
#: What a ``read_interval`` may be: seconds (0: as data arrives), or :data:`AUTO`.
ReadInterval = float | Literal["auto"]
#: The interval while batching (seconds): the bound on the latency it adds. 3 ms keeps the
#: added p99 delivery latency under 5 ms (3.8-3.9 ms measured at 200 shards x 20 events/s;
#: 4 ms added 5.2) for 0.73x (asyncio) / 0.89x (uvloop) of direct reading's CPU per event.
AUTO_INTERVAL = 0.003
#: Batching needs at least this many connections on the loop (one socket gains nothing).
AUTO_MIN_CONNECTIONS = 2
#: Messages per second (all the loop's auto connections together) at which batching starts,
#: and below which it stops. Measured (tools/bench_trickle.py, 200 shards, both loops):
#: batched reading costs 1.55x direct's CPU per event at 128 messages/s, 1.19x at 310,
#: 0.96x at 630, 0.80x at 1,260 and 0.73-0.89x at 2,500; 4 shards at 257/s: 1.33x. So it
#: starts where it clearly pays and stops where the two are even.
AUTO_START_RATE = 1000
AUTO_STOP_RATE = 600
#: Seconds between two counts.
AUTO_WINDOW = 1.0

log = logging.getLogger(__name__)


def check_read_interval(value: object) -> None:
    """Raise ValueError unless ``value`` is a ``read_interval``: :data:`AUTO`, or seconds
    from 0 to :data:`~gateway.poller.MAX_READ_INTERVAL`.
    """
    if value == AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"read_interval must be 'auto' or seconds, got {value!r}")
    if not 0 <= value <= MAX_READ_INTERVAL:
        raise ValueError(f"read_interval must be 0-{MAX_READ_INTERVAL} seconds, got {value!r}")


class Batchable(Protocol):
    """What :class:`AutoReading` needs of a connection."""

    #: Messages received so far (only ever grows).
    received: int

    def batch(self, interval: float) -> None:
        """Read in batches every ``interval`` seconds (0: as data arrives)."""


def should_batch(batching: bool, connections: int, rate: float) -> bool:
    """The rule: whether a loop's ``connections`` auto connections batch for the next
    window (``batching``: they do now). ``rate`` is the messages a second they received
    together, leaving out the busiest one: batching pays when a tick finds several sockets
    with data, which one firehose beside idle shards does not make.
    """
    if connections < AUTO_MIN_CONNECTIONS:
        return False
    return rate >= (AUTO_STOP_RATE if batching else AUTO_START_RATE)


class AutoReading:
    """The ``"auto"`` connections of one event loop, and whether they batch now."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak, and no timer handle kept (a handle holds its loop): the registry maps loops
        # weakly to their group, so the group must not keep its loop alive. The loop's own
        # scheduled count keeps the group while it counts.
        self._loop = weakref.ref(loop)
        # Each member, with what it had received at the last count. Weak: a connection
        # whose loop was closed under it (no connection_lost) must not stay, nor keep the
        # loop, through the registry. Ordered: switched in joining order.
        self._members: weakref.WeakKeyDictionary[Batchable, int] = weakref.WeakKeyDictionary()
        #: Whether a count is scheduled; ``_round`` tells a stale one (counting stopped and
        #: started again before it ran) to do nothing.
        self.counting = False
        self._round = 0
        self._since = 0.0  # loop time of the last count (or of the start of counting)
        #: Whether the members read in batches now.
        self.batching = False
        #: Messages per second at the last count, the busiest member left out.
        self.rate = 0.0

    def __len__(self) -> int:
        return len(self._members)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        assert loop is not None  # called by the loop, or by its connections
        return loop

    def join(self, member: Batchable) -> None:
        """A connection opened: it reads as the others do."""
        if member in self._members:
            return
        self._members[member] = member.received
        if self.batching:
            self._batch(member, AUTO_INTERVAL)
        if not self.counting and len(self._members) >= AUTO_MIN_CONNECTIONS:
            self._start_counting()

    def leave(self, member: Batchable) -> None:
        """A connection ended (it stops reading by itself)."""
        if self._members.pop(member, None) is None:  # what it received since goes with it
            return
        if len(self._members) < AUTO_MIN_CONNECTIONS:
            self._switch(False)
            self.counting = False

    def _start_counting(self) -> None:
        # Every window counts from now: what a member received while nobody counted (alone
        # for an hour, or while the others reconnected) is no burst.
        for member in list(self._members):
            self._members[member] = member.received
        loop = self._running_loop()
        self._since = loop.time()
        self.counting = True
        self._round += 1
        loop.call_later(AUTO_WINDOW, self._count, self._round)

    def _count(self, round_: int | None = None) -> None:
        """Count the window just ended and decide (``round_``: the scheduled count's)."""
        if (round_ is not None and round_ != self._round) or not self.counting:
            return  # stale: counting stopped (and maybe started again) since it was set
        loop = self._running_loop()
        try:
            now = loop.time()
            # The real window: a late timer (a stalled loop) must not inflate the rate.
            window = max(now - self._since, AUTO_WINDOW) if round_ is not None else AUTO_WINDOW
            self._since = now
            members = self._members
            counts = []
            for member, before in list(members.items()):
                counts.append(member.received - before)
                members[member] = member.received
            counts.sort()
            self.rate = sum(counts[:-1]) / window
            self._switch(should_batch(self.batching, len(counts), self.rate))
        finally:  # whatever happened, the next window is counted
            if round_ is not None:
                loop.call_later(AUTO_WINDOW, self._count, round_)

    def _switch(self, batching: bool) -> None:
        if batching is self.batching:
            return
        self.batching = batching
        interval = AUTO_INTERVAL if batching else 0.0
        for member in list(self._members):
            self._batch(member, interval)

    @staticmethod
    def _batch(member: Batchable, interval: float) -> None:
        """Switch one member; one that fails is logged, and the others still switch."""
        try:
            member.batch(interval)
        except Exception:
            log.exception("switching a connection's reading mode failed")


_groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AutoReading] = (
    weakref.WeakKeyDictionary()
)


def auto_reading(loop: asyncio.AbstractEventLoop) -> AutoReading:
    """The ``"auto"`` connections of ``loop`` (made on first use)."""
    group = _groups.get(loop)
    if group is None:
        group = _groups[loop] = AutoReading(loop)
    return group
