"""Reading many quiet sockets in batches: one selector per event loop, read on a tick.

When thousands of shards each receive a few events per second, every event arrives alone:
the loop wakes for it (one ``epoll_wait``, one loop iteration), reads it (one ``recv``) and
wakes the consumer task, so the per-iteration costs are paid once per event.
With ``Config.read_interval`` set, a connection's socket leaves the event loop's selector
(its transport stays paused, writes still go through it) and joins the :class:`ReadPoller`
of that loop and interval. Every ``interval`` seconds the poller asks its own selector which
sockets have data, reads each once and hands the bytes to its connection, all in one loop
callback; a consumer is woken once per tick for what every shard received meanwhile. A
socket that filled its read (a burst: more is waiting) is read again at the next loop
iteration rather than one interval later, so a burst drains at full speed.

While none of its sockets has data, the poller does not tick: the loop watches only the
poller's selector, an epoll (or kqueue) file descriptor that is readable when any socket in
it is. The first data then waits ``interval`` before it is read, so that the data arriving
meanwhile is read in the same batch: the added latency is at most ``interval``.

Where the platform's selector has no file descriptor of its own (Windows),
:func:`poller_for` returns None; where the loop cannot watch one (no ``add_reader``),
:meth:`ReadPoller.add` raises NotImplementedError. Connections then read as data arrives.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
import weakref
from collections.abc import Callable

__all__ = ["MAX_READ_INTERVAL", "ReadPoller", "poller_for"]

#: The longest read interval (seconds): batches are for milliseconds, far below the
#: heartbeat interval, so that heartbeat ACKs and close frames are never read late.
MAX_READ_INTERVAL = 0.1

log = logging.getLogger(__name__)

# Per loop, per interval: a loop's shards with the same interval share one tick.
_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, ReadPoller]] = (
    weakref.WeakKeyDictionary()
)


def poller_for(loop: asyncio.AbstractEventLoop, interval: float) -> ReadPoller | None:
    """The poller reading sockets of ``loop`` every ``interval`` seconds (made on first use),
    or None where sockets cannot be polled apart from the loop.
    """
    by_interval = _pollers.get(loop)
    if by_interval is None:
        by_interval = _pollers[loop] = {}
    poller = by_interval.get(interval)
    if poller is None:
        selector = selectors.DefaultSelector()
        # epoll, kqueue and /dev/poll have a descriptor of their own for the loop to watch;
        # select() and poll() do not.
        fileno: Callable[[], int] | None = getattr(selector, "fileno", None)
        if fileno is None:
            selector.close()
            return None
        poller = by_interval[interval] = ReadPoller(loop, interval, selector, fileno())
    return poller


class ReadPoller:
    """Reads the sockets added to it, every ``interval`` seconds while any has data.

    ``add(fd, read)``: call ``read()`` (which reads ``fd`` once, without blocking, and
    returns whether more may be waiting) on each tick that finds ``fd`` readable. A
    ``read`` that raises is logged and removed (it must fail its connection itself); the
    others go on. The poller closes its selector once its last socket is removed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        selector: selectors.BaseSelector,
        fd: int,
    ) -> None:
        self.interval = interval
        # Weak: a poller a loop left behind (its sockets never removed) must not keep the
        # loop, and itself, alive in the registry. The loop's own handles keep the poller.
        self._loop = weakref.ref(loop)
        self._selector = selector
        self._fd = fd  # the selector's own descriptor, readable when any socket in it is
        self._timer: asyncio.Handle | None = None  # the next tick
        self._watching = False  # the loop watches our selector's descriptor
        self._closed = False

    def __len__(self) -> int:
        return len(self._selector.get_map()) if not self._closed else 0

    @property
    def idle(self) -> bool:
        """No tick is due: the loop watches the selector for the next data (or nothing)."""
        return self._timer is None

    def add(self, fd: int, read: Callable[[], bool]) -> None:
        """Read ``fd`` with ``read`` from the next tick on (again, if it was removed)."""
        if self._closed:
            raise RuntimeError("the poller is closed")
        stale = self._selector.get_map().get(fd)
        if stale is not None:
            if stale.data is read:
                return
            # A descriptor closed without remove() (its number now reused): epoll forgot
            # it when it closed, the selector's map did not.
            self._selector.unregister(fd)
        self._selector.register(fd, selectors.EVENT_READ, read)
        if self._timer is None and not self._watching:
            try:
                self._watch()
            except BaseException:  # a loop that cannot watch a descriptor: not added
                self._selector.unregister(fd)
                raise

    def remove(self, fd: int, read: Callable[[], bool]) -> None:
        """Stop reading ``fd`` (nothing if ``read`` is not what reads it now)."""
        if self._closed:
            return
        key = self._selector.get_map().get(fd)
        if key is None or key.data is not read:
            return
        self._selector.unregister(fd)
        if not self._selector.get_map():
            self._close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        assert loop is not None  # called by the loop, or by its sockets' connections
        return loop

    def _watch(self) -> None:
        self._running_loop().add_reader(self._fd, self._woken)
        self._watching = True

    def _woken(self) -> None:
        """A socket has data: read it one interval from now, with whatever else arrives."""
        loop = self._running_loop()
        loop.remove_reader(self._fd)
        self._watching = False
        if self._timer is None:
            self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        loop = self._running_loop()
        due = loop.time() + self.interval  # one interval from this select, not from its end
        ready = self._selector.select(0)
        more = False
        for key, _ in ready:
            if self._closed:
                return
            if self._selector.get_map().get(key.fd) is not key:
                continue  # removed (or replaced) by an earlier reader of this tick
            read: Callable[[], bool] = key.data
            try:
                more = read() or more
            except Exception:  # a bug in one connection must not stop the others
                log.exception("reading a polled socket failed")
                self.remove(key.fd, read)
        if self._closed:
            return
        if more:  # a burst: read on at the next iteration, after the loop's other work
            self._timer = loop.call_soon(self._tick)
        elif ready:  # busy: tick again (data keeps coming, most likely)
            self._timer = loop.call_at(due, self._tick)
        elif not self._watching:  # quiet: sleep until a socket has data
            self._watch()

    def _close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop()
        if self._watching and loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
        self._watching = False
        self._selector.close()
        by_interval = _pollers.get(loop) if loop is not None else None
        if by_interval is not None and by_interval.get(self.interval) is self:
            del by_interval[self.interval]
