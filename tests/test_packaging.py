"""The README's commands are what CI runs, and `[dev]` holds everything the tests need."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, re.S)


def test_dev_holds_every_optional_test_dependency() -> None:
    dev = names(EXTRAS["dev"])
    # The modules the tests would otherwise skip over: the TLS backends, zstd, the build.
    assert {"certifi", "truststore", "zstandard", "backports.zstd", "wheel", "cython"} <= dev
    for extra in ("zstd", "certifi", "truststore", "docs"):
        assert names(EXTRAS[extra]) <= dev, f"[dev] lacks part of [{extra}]"


def test_ci_installs_and_tests_with_the_readme_command() -> None:
    command = "pip install '.[fast,dev]' && pytest"
    assert command in readme_commands()
    install, test = command.split(" && ")
    # Exactly the README's words, after environment variables (as in VAR=1 pytest).
    for words in (install, test):
        assert re.search(rf"^(\S+=\S+ )*{re.escape(words)}$", CI, re.M), words


def test_ci_builds_the_docs_with_the_readme_command_in_strict_mode() -> None:
    docs = [c for c in readme_commands() if "sphinx-build" in c]
    assert len(docs) == 1
    build = docs[0].split(" && ")[-1]
    assert "-W" in build.split() and "-n" in build.split()  # warnings and broken refs fail
    assert re.search(rf"^{re.escape(build)}$", CI, re.M), CI
