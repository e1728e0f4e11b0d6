"""Heartbeat round-trip statistics."""

from __future__ import annotations

__all__ = ["Latency"]


class Latency:
    """Round trips of heartbeats: average, the 5 most recent, count, last sent/acked times.

    Times are the driver's monotonic clock in seconds.
    """

    __slots__ = ("_count", "_recent", "_total", "received", "sent")

    def __init__(self) -> None:
        # A tuple, not a deque(maxlen=5): ~760 bytes less per shard, and ACKs are rare.
        self._recent: tuple[float, ...] = ()
        self._total = 0.0
        self._count = 0
        #: When the last heartbeat was sent (None: none yet).
        self.sent: float | None = None
        #: When the last ACK arrived (None: none yet).
        self.received: float | None = None

    def record_sent(self, now: float) -> None:
        self.sent = now

    def record_ack(self, now: float) -> None:
        self.received = now
        if self.sent is not None:
            rtt = now - self.sent
            self._recent = (*self._recent[-4:], rtt)
            self._total += rtt
            self._count += 1

    @property
    def average(self) -> float | None:
        """Mean round trip in seconds over every acknowledged heartbeat."""
        return self._total / self._count if self._count else None

    @property
    def recent(self) -> tuple[float, ...]:
        """The 5 most recent round trips, oldest first."""
        return self._recent

    @property
    def heartbeats(self) -> int:
        """How many heartbeats were acknowledged."""
        return self._count

    def __repr__(self) -> str:
        avg = f"{self.average * 1000:.1f} ms" if self.average is not None else "n/a"
        return f"Latency(average={avg}, heartbeats={self._count})"
