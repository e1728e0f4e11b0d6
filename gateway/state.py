"""Shard connection states (as twilight's ShardState)."""

from __future__ import annotations

import enum

__all__ = ["ShardState"]


class ShardState(enum.Enum):
    """Where a shard is in its life."""

    #: No connection; one will be made (``reconnect_attempts`` on the shard says how many).
    DISCONNECTED = "disconnected"
    #: Connected, waiting for HELLO / an identify permit / READY.
    IDENTIFYING = "identifying"
    #: Connected, RESUME sent, replay in progress until RESUMED.
    RESUMING = "resuming"
    #: READY or RESUMED received: events flow and commands are sent.
    ACTIVE = "active"
    #: Closed with a fatal code (bad token, intents, shard, version): never reconnects.
    FATALLY_CLOSED = "fatally_closed"
    #: Closed by the user with :meth:`Shard.close`.
    CLOSED = "closed"

    def is_identified(self) -> bool:
        """Whether the session is established (commands can be sent)."""
        return self is ShardState.ACTIVE
