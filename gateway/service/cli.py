"""Command line: ``python -m gateway {demo,run,backends,emulator}``."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["main", "LOOPS", "add_loop_argument", "loop_name", "run_on_loop"]

T = TypeVar("T")

#: The event loops ``--loop`` offers.
LOOPS = ("asyncio", "uvloop")


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """``--loop asyncio|uvloop`` (default: uvloop when installed)."""
    parser.add_argument(
        "--loop", choices=LOOPS, default=None,
        help="event loop (default: uvloop when installed, else asyncio)",
    )  # fmt: skip


def run_on_loop(main: Callable[[], Coroutine[Any, Any, T]], loop: str | None = None) -> T:
    """Run ``main()`` on ``loop`` (None: uvloop when installed, else asyncio's own).

    Raises ImportError naming the fix when uvloop is asked for but not installed.
    """
    if loop is None:
        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise ImportError(
                f"--loop uvloop but uvloop is not installed ({exc}); "
                "fix: pip install 'gateway[uvloop]'"
            ) from exc
        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        raise ValueError(f"unknown event loop {loop!r}; choose one of {', '.join(LOOPS)}")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running loop's kind (for logs and the demo)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def _cmd_backends(args: argparse.Namespace) -> int:
    from .. import backends

    info = backends.describe()
    if args.json:
        print(json.dumps(info))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value if value is not None else '(not installed)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backends", help="print the zlib/JSON/TLS/speedups backends in use")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_backends)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _register_emulator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..testing.cli import register

    register(sub)


def _register_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .demo import register

    register(sub)


def _register_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .run import register

    register(sub)


# Subcommands living in their own modules.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _register_demo,
    _register_run,
    _register_emulator,
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
