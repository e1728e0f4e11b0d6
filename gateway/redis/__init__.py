"""Shards on many processes and hosts, coordinated through Redis (``pip install gateway[redis]``).

- :class:`RedisQueue`: the cluster-wide identify queue (the :class:`~gateway.queue.Queue`
  protocol). One IDENTIFY per bucket (``shard_id % max_concurrency``) per ``interval``
  across every process sharing the Redis and the token, lowest waiting shard first, one
  daily session-start budget. Every decision is one Lua script, timed by the Redis server's
  clock (``TIME``), never a host's.
- :class:`RedisSessionStore`: per shard, the session id, the last sequence delivered and the
  resume URL (the :class:`~gateway.session.SessionStore` protocol), expiring after the
  resumable window.
- :class:`Publisher` and :func:`consume`: dispatches fanned out to a Redis Stream, the
  sequence checkpoint committed in the same script as the ``XADD`` (a resumed worker never
  publishes a duplicate), and a consumer-group reader that reclaims a dead consumer's
  entries (``XAUTOCLAIM``).

Keys live under ``{prefix}:{<token hash>}:``: the token itself never reaches Redis, a log or a
repr. The stream's name is chosen by the user (default
:data:`~gateway.redis.streams.DEFAULT_STREAM`). One Redis server (or a primary); Redis Cluster
is not supported, as the publish script touches the stream and the checkpoint together.

The pieces live in :mod:`gateway.redis.queue`, :mod:`gateway.redis.sessions` and
:mod:`gateway.redis.streams`, what they share (the client, the key namespace) in
:mod:`gateway.redis.client`; every public name is importable from ``gateway.redis``.
"""

from __future__ import annotations

from .client import DEFAULT_PREFIX, Client, connect, token_namespace
from .queue import LimitSource, RedisQueue
from .sessions import RESUMABLE_WINDOW, RedisSessionStore
from .streams import DEFAULT_STREAM, Publisher, StreamEntry, consume
from .streams import close_for_handover as close_for_handover
from .streams import split_dispatch as split_dispatch

__all__ = [
    "Client",
    "LimitSource",
    "DEFAULT_PREFIX",
    "DEFAULT_STREAM",
    "RESUMABLE_WINDOW",
    "Publisher",
    "RedisQueue",
    "RedisSessionStore",
    "StreamEntry",
    "connect",
    "consume",
    "token_namespace",
]
