"""Command line: ``python -m gateway {demo,run,backends,emulator}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _cmd_backends(args: argparse.Namespace) -> int:
    from . import backends

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
    from .testing.cli import register

    register(sub)


def _register_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .demo import register

    register(sub)


def _register_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .runner import register

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
