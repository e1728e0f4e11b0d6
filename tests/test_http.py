"""GET /gateway/bot against the emulator's HTTP routes (loopback only)."""

from __future__ import annotations

import logging
import socket

import pytest

from gateway import GatewayBot, HTTPError, UnauthorizedError, get_gateway_bot
from gateway.testing import GatewayEmulator

TOKEN = "http-test-token"


async def test_gateway_bot_reads_url_shards_and_budget() -> None:
    async with GatewayEmulator(
        tokens=[TOKEN], shards=6, max_concurrency=2, session_start_remaining=990
    ) as emu:
        bot = await get_gateway_bot(f"Bot {TOKEN}", api_base_url=emu.api_url)
    assert bot.url == emu.url and bot.shards == 6
    limit = bot.session_start_limit
    assert (limit.total, limit.remaining, limit.max_concurrency) == (1000, 990, 2)
    assert 86_000 < limit.reset_after <= 86_400  # milliseconds became seconds


async def test_bad_token_is_unauthorized_and_not_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-token-never-shown"
    async with GatewayEmulator(tokens=[TOKEN]) as emu:
        with pytest.raises(UnauthorizedError) as info:
            await get_gateway_bot(secret, api_base_url=emu.api_url)
    assert info.value.status == 401
    assert secret not in str(info.value) and secret not in caplog.text


async def test_other_status_is_an_http_error() -> None:
    async with GatewayEmulator() as emu:
        with pytest.raises(HTTPError) as info:
            await get_gateway_bot(TOKEN, api_base_url=emu.api_url + "/nowhere")
    assert info.value.status == 404 and not isinstance(info.value, UnauthorizedError)


async def test_network_failure_is_an_http_error() -> None:
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HTTPError, match="network error") as info:
        await get_gateway_bot(TOKEN, api_base_url=f"http://127.0.0.1:{port}/api/v10", timeout=2)
    assert info.value.status is None


@pytest.mark.parametrize(
    "body",
    [{}, {"url": "ws://x", "shards": 1}, {"url": "ws://x", "shards": "many",
     "session_start_limit": {}}],
)  # fmt: skip
def test_malformed_body_is_an_http_error(body: object) -> None:
    with pytest.raises(HTTPError, match="malformed"):
        GatewayBot.from_json(body)


def test_trailing_slash_and_zero_shards_are_normalised() -> None:
    limit = {"total": 1, "remaining": 1, "reset_after": 0, "max_concurrency": 1}
    bot = GatewayBot.from_json(
        {"url": "wss://g.example/", "shards": 0, "session_start_limit": limit}
    )
    assert bot.url == "wss://g.example" and bot.shards == 1


async def test_empty_token_is_rejected_before_any_request() -> None:
    with pytest.raises(ValueError):
        await get_gateway_bot("Bot  ", api_base_url="http://127.0.0.1:9")
