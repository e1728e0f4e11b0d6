"""A blocked event loop starves every shard: say so, once per stall, with where it is stuck.

User code that blocks the loop (a synchronous HTTP call, ``time.sleep``, a long CPU job)
stops every heartbeat of every shard on that loop; Discord then closes the sessions.
:func:`watch` starts, lazily and once per loop, a daemon thread that wakes every second
and checks a timestamp the loop refreshes on a plain timer (nothing per event). When the
loop has not run for the threshold, it logs one WARNING naming the shards at risk, with
the loop thread's current stack.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
import weakref
from typing import Any

__all__ = ["watch", "LoopWatchdog"]

log = logging.getLogger(__name__)

#: How often the loop refreshes its timestamp, and the thread checks it (seconds).
TICK = 1.0


class LoopWatchdog:
    """Watches one event loop from a daemon thread (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.threshold = threshold
        self.shards: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._warned = False
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = loop.call_later(TICK, self._tick)
        self._thread = threading.Thread(
            target=self._watch, name="gateway loop watchdog", daemon=True
        )
        self._thread.start()

    def _tick(self) -> None:
        self._last = time.monotonic()
        if self._loop.is_closed() or not self.shards:
            self.stop()
            return
        self._handle = self._loop.call_later(TICK, self._tick)

    def stop(self) -> None:
        """Stop watching (the loop closed, or no shard is left)."""
        self._stop.set()
        handle, self._handle = self._handle, None
        if handle is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(handle.cancel)
        if _WATCHDOGS.get(self._loop) is self:
            _WATCHDOGS.pop(self._loop, None)

    def _watch(self) -> None:
        while not self._stop.wait(TICK / 2):
            if self._loop.is_closed():
                self.stop()
                return
            if not self._loop.is_running():  # stopped between runs: not blocked
                self._last = time.monotonic()
                continue
            stalled = time.monotonic() - self._last
            if stalled < self.threshold:
                self._warned = False
            elif not self._warned:
                self._warned = True
                self._warn(stalled)

    def _warn(self, stalled: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        names = ", ".join(sorted(repr(getattr(s, "id", s)) for s in list(self.shards)))
        log.warning(
            "the event loop has not run for %.1f s: heartbeats of shards %s are late and "
            "Discord will close their sessions. The loop is stuck here:\n%s",
            stalled, names or "(none)", stack,
        )  # fmt: skip


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWatchdog] = (
    weakref.WeakKeyDictionary()
)


def watch(loop: asyncio.AbstractEventLoop, shard: Any, threshold: float) -> LoopWatchdog:
    """Add ``shard`` to the watchdog of ``loop`` (started on first use). The first shard's
    threshold is the loop's (``Config.loop_watchdog``).
    """
    dog = _WATCHDOGS.get(loop)
    if dog is None:
        dog = _WATCHDOGS[loop] = LoopWatchdog(loop, threshold)
    dog.shards.add(shard)
    return dog
