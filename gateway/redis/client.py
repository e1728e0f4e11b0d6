"""What every Redis piece shares: the client, the key namespace of a bot, and how an outage
is retried and logged (:class:`_Outage`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ReadOnlyError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "gateway.redis needs redis-py's asyncio client: pip install 'gateway[redis]'"
    ) from exc

from ..config import normalize_token

__all__ = ["Client", "DEFAULT_PREFIX", "connect", "token_namespace"]

log = logging.getLogger("gateway.redis")  # one logger for the package, as before the split

DEFAULT_PREFIX = "gateway"

#: Errors that mean "Redis cannot serve us right now" (down, loading, a replica during a
#: failover): retried with backoff.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

#: redis-py's asyncio client (``redis.asyncio.Redis``): what every class here takes, or a URL.
Client = aioredis.Redis


def connect(url: str, **options: Any) -> Client:
    """A redis-py asyncio client for ``url`` (``redis://host:port/db``), bytes replies.

    A command that fails on a connection is retried once on a new one: after a Redis
    restart every pooled connection is dead, which is no outage.
    """
    options.setdefault("socket_connect_timeout", 2.0)
    options.setdefault("socket_timeout", 5.0)
    options.setdefault("retry", Retry(NoBackoff(), 1))
    options.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError])
    return aioredis.Redis.from_url(url, **options)


def token_namespace(token: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``prefix:{hash}``: the key namespace of one bot. The hash (not the token) names it,
    and the braces keep a bot's keys in one Redis Cluster slot.
    """
    digest = hashlib.sha256(normalize_token(token).encode()).hexdigest()[:16]
    return f"{prefix}:{{{digest}}}"


def _describe(client: Client) -> str:
    """Where ``client`` points, for logs (host, port, db; never a password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


class _Outage:
    """Backoff, logs and state while Redis cannot serve us. Two kinds of failure:

    - unreachable (down, restarting, timing out, a replica): one error when it becomes
      unreachable, one notice when it is back. A single failure is retried at once,
      quietly: after a Redis restart, each pooled connection fails once before it
      reconnects.
    - refusing (a reply error: ``OOM`` under ``maxmemory``, ``MISCONF`` after a failed
      save, ``READONLY``): one warning at the first refusal, retried with backoff, one
      notice when a call succeeds again. Nothing is retried at once: the same call would
      be refused the same way.

    ``failures`` counts every failed call, ``last_error`` names the latest and ``healthy``
    is False from a failure until the next success: the state a health check or a
    metrics exporter reads.
    """

    def __init__(
        self, client: Client, what: str, retry_min: float = 0.05, retry_max: float = 5.0
    ) -> None:
        self._client = client
        self._what = what
        self._range = (retry_min, retry_max)
        self._backoff = retry_min
        self._strikes = 0
        self._since: float | None = None
        self._refused = False
        self.failures = 0
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """False from a failed call until the next one succeeds."""
        return self._strikes == 0

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before retrying."""
        self._strikes += 1
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        refused = not isinstance(exc, _UNREACHABLE)
        if self._strikes == 1 and not refused:
            log.debug("Redis call failed (%s); retrying at once", self.last_error)
            return 0.0
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._range[1])
        if self._since is None:
            self._since = time.monotonic()
            self._refused = refused
            if refused:
                log.warning(
                    "Redis at %s refuses the call (%s); %s, retrying with backoff "
                    "(next in %.2f s)",
                    _describe(self._client), self.last_error, self._what, delay,
                )  # fmt: skip
            else:
                log.error(
                    "Redis unreachable at %s (%s); %s, retrying with backoff (next in %.2f s)",
                    _describe(self._client), self.last_error, self._what, delay,
                )  # fmt: skip
        else:
            still = "refuses" if refused else "unreachable"
            log.debug("Redis still %s (%s); retrying in %.2f s", still, self.last_error, delay)
        return delay

    def ok(self) -> None:
        self._strikes = 0
        self._backoff = self._range[0]
        if self._since is not None:
            log.warning(
                "Redis at %s %s again after %.1f s",
                _describe(self._client),
                "serves" if self._refused else "reachable",
                time.monotonic() - self._since,
            )
            self._since = None


async def _retrying(what: str, client: Client, call: Callable[[], Awaitable[Any]]) -> Any:
    outage = _Outage(client, what)
    while True:
        try:
            result = await call()
        except _UNREACHABLE as exc:
            await asyncio.sleep(outage.failed(exc))
            continue
        outage.ok()
        return result
