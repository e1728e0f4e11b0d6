"""The command line: demo, run, backends and emulator, each in a child interpreter."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import time

import pytest

from conftest import child_env
from gateway.service.run import ShardSpec, parse_shards
from gateway.testing import GatewayEmulator

TOKEN = "cli-test-token-never-printed"


async def gateway_cli(*args: str, timeout: float = 60, **env: str) -> tuple[int, str, str]:
    """Run ``python -m gateway args`` without blocking the loop (the emulator lives here)."""
    full_env, home = child_env(**env)
    full_env.pop("DISCORD_TOKEN", None)
    full_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=home, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def summary_events(out: str) -> dict[int, int]:
    return {
        int(m[1]): int(m[2].replace(",", ""))
        for m in re.finditer(r"^shard (\d+): ([\d,]+) events", out, re.M)
    }


async def test_demo_runs_and_every_shard_gets_events() -> None:
    code, out, err = await gateway_cli("demo", "--seconds", "5")
    assert code == 0, err
    assert re.search(r"^summary: 4 shards, [\d,]+ events in 5\.\d s", out, re.M), out
    events = summary_events(out)
    assert sorted(events) == [0, 1, 2, 3] and all(n > 0 for n in events.values()), out
    assert "[" in out.splitlines()[0]  # not a terminal: plain status lines


async def test_demo_with_faults_heals() -> None:
    code, out, err = await gateway_cli("demo", "--seconds", "6", "--shards", "2", "--faults")
    assert code == 0, out + err
    assert int(re.search(r"(\d+) faults injected", out)[1]) >= 3  # type: ignore[index]
    assert all(n > 0 for n in summary_events(out).values())
    assert re.search(r"resumes [1-9]", out), out


@pytest.mark.parametrize("read_interval", ["auto", "0", "0.005"])
async def test_run_writes_json_lines_of_the_wanted_events(read_interval: str) -> None:
    async with GatewayEmulator(tokens=[TOKEN], events_per_second=500, guilds=4) as emu:
        code, out, err = await gateway_cli(
            "run", "--intents", "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT", "--gateway-url", emu.url,
            "--events", "MESSAGE_CREATE", "--limit", "20", "--read-interval", read_interval,
            DISCORD_TOKEN=TOKEN,
        )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 20
    assert {line["t"] for line in lines} == {"MESSAGE_CREATE"}
    assert all(line["shard"] == 0 and line["d"]["content"] is not None for line in lines)
    seqs = [line["s"] for line in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert TOKEN not in out + err


async def test_run_auto_shards_from_gateway_bot() -> None:
    async with GatewayEmulator(tokens=[TOKEN], shards=2, max_concurrency=2, guilds=8) as emu:
        code, out, err = await gateway_cli(
            "run", "--intents", "GUILDS", "--api-url", emu.api_url, "--events", "READY",
            "--limit", "2", DISCORD_TOKEN=TOKEN,
        )  # fmt: skip
    assert code == 0, err
    ready = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["shard"] for r in ready) == [0, 1]
    assert all(r["d"]["shard"][1] == 2 for r in ready)


async def test_run_fatal_close_is_one_line_and_exit_1() -> None:
    async with GatewayEmulator(tokens=["another-token"]) as emu:
        code, out, err = await gateway_cli(
            "run", "--intents", "GUILDS", "--gateway-url", emu.url, "--log-level", "CRITICAL",
            DISCORD_TOKEN=TOKEN,
        )  # fmt: skip
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "4004" in err and err.startswith("error:"), err
    assert TOKEN not in err


async def test_run_bad_token_for_gateway_bot_exits_1() -> None:
    async with GatewayEmulator(tokens=["another-token"]) as emu:
        code, _, err = await gateway_cli(
            "run", "--intents", "GUILDS", "--api-url", emu.api_url, DISCORD_TOKEN=TOKEN
        )
    assert code == 1 and "401" in err and TOKEN not in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", "--intents", "GUILDS"], {}, "DISCORD_TOKEN"),
        (["run", "--intents", "GUILDS,NOPE"], {"DISCORD_TOKEN": TOKEN}, "unknown intent 'NOPE'"),
        (["run", "--intents", "GUILDS", "--events", "NOPE"], {"DISCORD_TOKEN": TOKEN},
         "unknown event type"),
        (["run", "--intents", "GUILDS", "--shards", "3-1/4"], {"DISCORD_TOKEN": TOKEN},
         "--shards"),
        (["demo", "--discord"], {}, "DISCORD_TOKEN"),
        (["run", "--intents", "GUILDS", "--read-interval", "5"], {"DISCORD_TOKEN": TOKEN},
         "read_interval must be 0-0.1 seconds"),
    ],
)  # fmt: skip
async def test_usage_errors_are_one_line_exit_2(
    args: list[str], env: dict[str, str], message: str
) -> None:
    code, out, err = await gateway_cli(*args, **env)
    assert code == 2 and out == ""
    assert err.startswith("error:") and err.strip().count("\n") == 0 and message in err, err


@pytest.mark.parametrize("command", ["demo", "run", "backends", "emulator"])
async def test_every_subcommand_has_help(command: str) -> None:
    code, out, _ = await gateway_cli(command, "--help")
    assert code == 0 and out.startswith("usage: python -m gateway " + command)


@pytest.mark.parametrize(
    ("text", "spec"),
    [("auto", ShardSpec()), ("4", ShardSpec(0, 4, 4)), ("2-5/8", ShardSpec(2, 6, 8))],
)
def test_parse_shards(text: str, spec: ShardSpec) -> None:
    assert parse_shards(text) == spec


@pytest.mark.parametrize("text", ["0", "-1", "5-2/8", "0-8/8", "x"])
def test_parse_shards_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shards(text)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_run_on_the_event_loop_asked_for(loop: str) -> None:
    async with GatewayEmulator(tokens=[TOKEN], guilds=1) as emu:
        code, out, err = await gateway_cli(
            "run", "--intents", "GUILDS", "--gateway-url", emu.url, "--events", "READY",
            "--limit", "1", "--loop", loop, DISCORD_TOKEN=TOKEN,
        )  # fmt: skip
    assert code == 0, err
    assert f"event loop: {loop}" in err and json.loads(out)["t"] == "READY"


async def test_demo_defaults_to_uvloop_when_installed() -> None:
    code, out, err = await gateway_cli("demo", "--seconds", "1", "--shards", "1")
    assert code == 0, err
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert re.search(rf"^event loop: {expected}$", out, re.M), out


def test_uvloop_asked_for_but_missing_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.service.cli import run_on_loop

    async def never() -> None:
        raise AssertionError("not run")

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'gateway\[uvloop\]'"):
        run_on_loop(never, "uvloop")


async def test_run_keeps_heartbeating_while_its_reader_pauses_and_loses_nothing() -> None:
    """A downstream reader that stops reading for 3 s: the pipe fills, then the runner's
    output buffer; the shards must go on heartbeating (the loop never blocks on stdout)
    and, once the reader drains, every event is there once and in order.
    """
    total, pause = 3000, 3.0
    async with GatewayEmulator(
        tokens=[TOKEN], guilds=4, heartbeat_interval=0.5, events_per_second=1500,
        total_events=total,
    ) as emu:  # fmt: skip
        full_env, home = child_env(DISCORD_TOKEN=TOKEN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--intents",
            "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT", "--gateway-url", emu.url,
            "--limit", str(total), "--log-level", "WARNING", cwd=home, env=full_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=4096,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            # A small read buffer (``limit``) here, so that the pipe fills when we stop.
            head = await asyncio.wait_for(proc.stdout.readexactly(4096), 30)
            paused_at = time.monotonic()  # the emulator's clock
            await asyncio.sleep(pause)  # the reader pauses: this is the fault under test
            resumed_at = time.monotonic()
            # The pipe and the runner's buffer filled within that pause: the shard was held.
            session = next(iter(emu.sessions.values()))
            assert session.seq > 1000, session.seq
            beats = [
                r.time
                for r in emu.records_of("received")
                if r.data["op"] == 1 and paused_at + 1.0 <= r.time <= resumed_at
            ]
            rest = await asyncio.wait_for(proc.stdout.read(), 60)
            err = (await asyncio.wait_for(proc.stderr.read(), 10)).decode()
            assert await asyncio.wait_for(proc.wait(), 10) == 0, err
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # A heartbeat every 0.5 s through the last 2 s of the pause (the loop was not blocked).
    assert len(beats) >= 3, (beats, paused_at, resumed_at)
    seqs = [json.loads(line)["s"] for line in (head + rest).decode().splitlines()]
    assert seqs == list(range(1, total + 1)), (len(seqs), seqs[:5], seqs[-5:])


async def test_run_stops_quietly_when_its_reader_closes_the_pipe() -> None:
    """``python -m gateway run ... | head -1``: the writer thread's BrokenPipeError ends the
    run with status 0 and no traceback.
    """
    async with GatewayEmulator(tokens=[TOKEN], guilds=4, events_per_second=1000) as emu:
        full_env, home = child_env(DISCORD_TOKEN=TOKEN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--intents", "GUILDS,GUILD_MESSAGES",
            "--gateway-url", emu.url, cwd=home, env=full_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["s"] == 1
            proc._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            err = (await proc.stderr.read()).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert "Traceback" not in err and "the reader closed the pipe" in err, err
