"""The one HTTP call a gateway client needs: ``GET /gateway/bot``.

Standard library only (``urllib`` in a worker thread), so the core install stays small. The
token goes in the ``Authorization`` header and nowhere else: not in errors, not in logs.
"""

from __future__ import annotations

import asyncio
import json
import ssl as ssl_module
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import backends
from .config import USER_AGENT, normalize_token
from .errors import GatewayError

__all__ = [
    "DEFAULT_API_BASE_URL",
    "GatewayBot",
    "SessionStartLimit",
    "HTTPError",
    "UnauthorizedError",
    "get_gateway_bot",
]

DEFAULT_API_BASE_URL = "https://discord.com/api/v10"


class HTTPError(GatewayError):
    """``/gateway/bot`` failed: ``status`` is the HTTP status, or None for a network error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnauthorizedError(HTTPError):
    """The token was refused (HTTP 401): check ``DISCORD_TOKEN``; it may have been reset."""


@dataclass(frozen=True)
class SessionStartLimit:
    """The daily session-start budget (protocol.md 4.3). ``reset_after`` is in seconds."""

    total: int
    remaining: int
    reset_after: float
    max_concurrency: int


@dataclass(frozen=True)
class GatewayBot:
    """``GET /gateway/bot``: the gateway URL, recommended shard count and start budget."""

    url: str
    shards: int
    session_start_limit: SessionStartLimit

    @classmethod
    def from_json(cls, body: Any) -> GatewayBot:
        """Parse the response body; raise :class:`HTTPError` if it is malformed."""
        try:
            limit = body["session_start_limit"]
            return cls(
                url=str(body["url"]).rstrip("/"),
                shards=max(1, int(body["shards"])),
                session_start_limit=SessionStartLimit(
                    total=int(limit["total"]),
                    remaining=int(limit["remaining"]),
                    reset_after=int(limit["reset_after"]) / 1000,
                    max_concurrency=int(limit["max_concurrency"]),
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPError(f"malformed /gateway/bot response: {exc!r}") from None


async def get_gateway_bot(
    token: str,
    *,
    api_base_url: str = DEFAULT_API_BASE_URL,
    ssl: ssl_module.SSLContext | None = None,
    timeout: float = 10.0,
) -> GatewayBot:
    """Fetch ``/gateway/bot`` with ``token`` (the ``Bot`` prefix is optional).

    Raises :class:`UnauthorizedError` on 401, :class:`HTTPError` on any other failure
    (status, network, malformed body). ``api_base_url`` points at another API (the emulator's
    :attr:`~gateway.testing.GatewayEmulator.api_url` in tests).
    """
    token = normalize_token(token)
    url = api_base_url.rstrip("/") + "/gateway/bot"
    if url.startswith("https://") and ssl is None:
        ssl = backends.default_ssl_context()
    return await asyncio.to_thread(_fetch, url, token, ssl, timeout)


def _fetch(url: str, token: str, ssl: ssl_module.SSLContext | None, timeout: float) -> GatewayBot:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bot {token}", "User-Agent": USER_AGENT}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 401:
            raise UnauthorizedError("GET /gateway/bot: 401 Unauthorized (bad token)", 401) from None
        raise HTTPError(f"GET /gateway/bot: HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HTTPError(f"GET {url}: network error: {reason}") from None
    except ValueError as exc:
        raise HTTPError(f"GET /gateway/bot: invalid JSON: {exc}") from None
    return GatewayBot.from_json(body)
