"""The documentation site: its pages exist, and docs/conf.py resolves re-exported names.

CI builds the site strictly (`sphinx-build -n -W`); these checks are the cheap part.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def canonical() -> Callable[[str], str | None]:
    conf: dict[str, Any] = runpy.run_path(str(DOCS / "conf.py"))
    function: Callable[[str], str | None] = conf["_canonical"]
    return function


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("gateway.Shard", "gateway.shard.Shard"),
        ("gateway.Shard.close", "gateway.shard.Shard.close"),
        ("gateway.testing.GatewayEmulator", "gateway.testing.emulator.GatewayEmulator"),
        ("gateway.stream.InMemoryQueue", "gateway.queue.InMemoryQueue"),
        ("gateway.config.Compression", "gateway.config.Compression"),  # a data item
        ("gateway.NoSuchThing", None),
        # Members are not looked up (dataclass fields are not class attributes): Sphinx
        # reports the name if nothing is documented there.
        ("gateway.Shard.no_such_method", "gateway.shard.Shard.no_such_method"),
    ],
)
def test_names_resolve_to_where_they_are_defined(
    canonical: Callable[[str], str | None], name: str, where: str | None
) -> None:
    assert canonical(name) == where


def toctree(page: Path) -> list[str]:
    text = page.read_text()
    block = text[text.index("```{toctree}") : text.index("```", text.index("```{toctree}") + 3)]
    return [line for line in block.splitlines()[1:] if line and not line.startswith(":")]


def test_the_site_has_every_part_the_issue_asks_for() -> None:
    assert toctree(DOCS / "index.md") == [
        "tutorial",
        "howto/index",
        "explanation/index",
        "reference/index",
        "benchmarks",
        "changelog",
    ]
    howtos = set(toctree(DOCS / "howto" / "index.md"))
    assert {"many-machines", "resume", "request-members", "testing", "custom-queue"} <= howtos
    assert {"reshard", "event-filtering", "proxy", "backends", "tls", "logging"} <= howtos
    explanations = set(toctree(DOCS / "explanation" / "index.md"))
    assert explanations == {"design", "receive-path", "contract", "reconnect", "rate-limits"}
    for page in [*howtos, *explanations]:
        folder = "howto" if page in howtos else "explanation"
        assert (DOCS / folder / f"{page}.md").exists(), page
