"""The command line: ``python -m gateway run | demo | emulator | backends``.

:mod:`gateway.service.cli` parses the arguments and hands each subcommand to its module:
:mod:`gateway.service.run` (shards to JSON lines, and the ``--redis`` workers) and
:mod:`gateway.service.demo`. The library never imports this package (tests/test_layout.py).
"""

from __future__ import annotations

__all__: list[str] = []
