"""Every example in examples/ runs against the emulator, and type-checks with mypy --strict."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(
    p.name for p in EXAMPLES.glob("*.py") if p.name not in ("target.py", "test_your_bot.py")
)


def run_example(name: str, *args: str, emulator: bool = True) -> subprocess.CompletedProcess[str]:
    env, home = child_env()
    env.pop("DISCORD_TOKEN", None)  # never Discord from the tests
    if emulator:
        env["GATEWAY_EXAMPLE_EMULATOR"] = "1"
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, env=env, cwd=home, timeout=60,
    )  # fmt: skip


def ok(name: str, *args: str) -> list[str]:
    done = run_example(name, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout.splitlines()


def test_every_example_has_a_test() -> None:
    tested = {f"{m[1]}.py" for n in globals() if (m := re.fullmatch(r"test_(\w+)_example", n))}
    assert set(SCRIPTS) <= tested


def test_one_shard_example() -> None:
    out = ok("one_shard.py")
    assert out[0].startswith("ready as ")
    assert len(out) == 4 and all(": message " in line for line in out[1:])


def test_many_shards_example() -> None:
    out = ok("many_shards.py")
    assert out[0] == "4 shards"
    assert sum(" ready: " in line for line in out) == 4
    per_shard = ast.literal_eval(out[-1].removeprefix("guilds per shard: "))
    assert sum(per_shard.values()) == 8 and set(per_shard) <= {0, 1, 2, 3}


def test_event_filtering_example() -> None:
    out = ok("event_filtering.py")
    last = re.fullmatch(r"decoded \{'READY': 1, 'MESSAGE_CREATE': 5\} of (\d+) dispatches", out[-1])
    assert last, out[-1]
    # Undecoded dispatches (GUILD_CREATEs, typing...) still advanced the sequence.
    assert int(last[1]) > 6


def test_typed_events_example() -> None:
    out = ok("typed_events.py")
    assert out[0] == "ready as Nelly, 2 guilds"
    assert [line for line in out if line.startswith("guild ")] == [
        "guild Discord Testers: 3 channels"
    ] * 2  # GUILD_CREATE decoded into the shipped model
    messages = [line for line in out if line.startswith("Mason in ")]
    assert len(messages) == 3 and all(": message " in line for line in messages)


def test_request_members_example() -> None:
    out = ok("request_members.py")
    assert len(out) == 3
    assert all(re.fullmatch(r"guild \d+: 2 members \(Nelly, Mason\)", line) for line in out)


def test_resume_after_restart_example() -> None:
    out = ok("resume_after_restart.py")
    restart = out.index("-- the process restarts --")
    first, second = out[:restart], out[restart + 1 :]
    assert first[0].startswith("identified: new session")
    saved = int(first[-1].removeprefix("saved session at sequence "))
    assert second[0] == f"resuming at sequence {saved}"
    assert not any(line.startswith("identified") for line in second)  # resumed
    # Nothing lost: what the restarted process handles follows the last sequence handled.
    handled = [int(m[1]) for line in second if (m := re.match(r"sequence (\d+):", line))]
    assert handled == list(range(saved + 1, saved + 1 + len(handled)))
    assert sum("resumed" not in line for line in second if line.startswith("sequence")) == 3


def test_custom_queue_example() -> None:
    out = ok("custom_queue.py")
    grants = [line for line in out if "may identify" in line]
    # Buckets 0 and 1 first (in whichever order the shards asked), then the second round.
    assert sorted(grants[:2]) == [
        "shard 0 may identify (bucket 0)",
        "shard 1 may identify (bucket 1)",
    ]
    assert sorted(grants[2:]) == [
        "shard 2 may identify (bucket 0)",
        "shard 3 may identify (bucket 1)",
    ]
    assert sum("is ready" in line for line in out) == 4


def test_reshard_example() -> None:
    out = ok("reshard.py")
    assert out[0] == "2 shards ready"
    swap = out.index("swapped 2 shards for 4")
    assert "4 shards ready" in out[:swap]
    # After the swap, only the new set (of 4) serves.
    after = [line for line in out[swap + 1 :] if line.startswith("shard ")]
    assert after and all(", 4]" in line for line in after)


def test_raw_proxy_example() -> None:
    out = ok("raw_proxy.py")
    lines = [json.loads(line) for line in out]
    assert len(lines) == 10
    assert {line["shard"] for line in lines} <= {0, 1}
    assert {line["payload"]["op"] for line in lines} >= {0, 10}  # HELLO too: nothing decoded


def test_the_emulator_flag_works_as_the_variable() -> None:
    done = run_example("one_shard.py", "--emulator", emulator=False)
    assert done.returncode == 0, done.stderr


def test_without_a_token_an_example_says_what_to_set() -> None:
    done = run_example("one_shard.py", emulator=False)
    assert done.returncode == 1
    assert "set DISCORD_TOKEN, or pass --emulator" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_pytest_example_passes() -> None:
    env, home = child_env()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(EXAMPLES / "test_your_bot.py")],
        capture_output=True, text=True, env=env, cwd=home, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


# ---- typed payloads: mypy --strict over the examples ---------------------------------------


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One mypy --strict run over every example plus two altered copies of one_shard.py."""
    pytest.importorskip("mypy")
    tmp = tmp_path_factory.mktemp("mypy")
    source = (EXAMPLES / "one_shard.py").read_text()
    assert source.count('event.data["content"]') == 1
    checked = source.replace(
        'event.data["content"]', 'assert_type(event.data["content"], str)'
    ).replace("import asyncio\n", "import asyncio\nfrom typing import assert_type\n")
    (tmp / "checked_one_shard.py").write_text(checked)
    (tmp / "misspelled_one_shard.py").write_text(source.replace('["content"]', '["contnet"]'))
    # From the checkout (where `mypy --strict gateway` runs), not from site-packages.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env["MYPYPATH"] = str(EXAMPLES)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp / "cache"), *sorted(map(str, EXAMPLES.glob("*.py"))),
         str(tmp / "checked_one_shard.py"), str(tmp / "misspelled_one_shard.py")],
        capture_output=True, text=True, env=env, cwd=EXAMPLES.parent, timeout=300,
    )  # fmt: skip
    return done.stdout + done.stderr


def test_mypy_strict_passes_on_the_examples(mypy_output: str) -> None:
    errors = [line for line in mypy_output.splitlines() if "misspelled_one_shard" not in line]
    assert not errors, mypy_output


def test_mypy_knows_the_type_of_message_content(mypy_output: str) -> None:
    # assert_type(..., str) fails under mypy if the type is Any or anything else.
    assert "checked_one_shard" not in mypy_output, mypy_output


def test_mypy_rejects_a_misspelled_key(mypy_output: str) -> None:
    errors = [line for line in mypy_output.splitlines() if "error:" in line]
    assert errors, "mypy accepted event.data['contnet']"
    assert all("misspelled_one_shard.py" in line for line in errors), mypy_output
    assert all('TypedDict "MessageCreate" has no key "contnet"' in e for e in errors), errors


# ---- the examples are where readers look for them ----------------------------------------


def test_the_readme_and_the_docs_show_every_example() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    docs = "".join(p.read_text() for p in (EXAMPLES.parent / "docs").rglob("*.md"))
    for name in [*SCRIPTS, "test_your_bot.py"]:
        assert f"`{name}`" in readme, f"README.md does not list {name}"
        assert f"examples/{name}" in docs, f"no page of docs/ includes {name}"
