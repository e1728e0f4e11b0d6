"""Outgoing command rate limit: 120 payloads per 60 s per connection (protocol.md 6).

A sliding window of send times. Heartbeats keep a reserve so they are never held behind
user commands: a command may go out only while ``sent + reserve < limit``.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["CommandRatelimiter"]

LIMIT = 120
WINDOW = 60.0


class CommandRatelimiter:
    """Counts every payload sent on one connection; decides when a command may go."""

    __slots__ = ("_sent", "limit", "reserve", "window")

    def __init__(self, heartbeat_interval: float, limit: int = LIMIT, window: float = WINDOW):
        self._sent: deque[float] = deque()
        self.limit = limit
        self.window = window
        #: Slots kept for heartbeats: every beat of one window, plus one for an op 1 request,
        #: at most the whole window but one. Beats faster than every 0.5 s (test servers)
        #: fill the window by themselves: commands then wait, and nothing raises.
        beats = math.ceil(window / heartbeat_interval) + 1 if heartbeat_interval > 0 else 1
        self.reserve = min(beats, limit - 1)

    def _prune(self, now: float) -> None:
        sent = self._sent
        while sent and now - sent[0] >= self.window:
            sent.popleft()

    def record(self, now: float) -> None:
        """Count one payload sent at ``now`` (heartbeats, identify, resume, commands)."""
        self._sent.append(now)

    def available(self, now: float) -> int:
        """How many user commands may be sent right now."""
        self._prune(now)
        return max(0, self.limit - self.reserve - len(self._sent))

    def next_available(self) -> float:
        """When the next user command may go (0.0: already)."""
        excess = len(self._sent) - (self.limit - self.reserve - 1)
        if excess <= 0:
            return 0.0
        return self._sent[excess - 1] + self.window
