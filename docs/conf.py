"""Sphinx configuration: ``sphinx-build -n -W --keep-going docs docs/_build/html``.

Strict: ``-n`` (nitpicky) reports every cross-reference that does not resolve and ``-W``
makes any warning an error. References to the standard library and third-party packages
are not linked (CI has no network to fetch their inventories) and are listed below as
known; every reference into :mod:`gateway` must resolve.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("gateway") is None:  # not installed: document the source tree
    sys.path.insert(0, str(ROOT))

import gateway  # noqa: E402

project = "gateway"
author = "the gateway authors"
copyright = "the gateway authors"
release = version = gateway.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"gateway {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
# Shown as their names, not expanded (a bare ``type`` is ambiguous: models have ``type`` fields).
autodoc_type_aliases = {
    "StructType": "gateway.models.StructType",
    "Models": "gateway.models.Models",
}
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_preserve_defaults = True

nitpicky = True
# Outside gateway: builtins, the standard library and dependencies (not linked offline).
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(builtins\.)?(str|int|float|bool|bytes|object|type|dict|list|tuple|set"
        r"|frozenset|None|NoneType|Exception|BaseException|TimeoutError|ValueError|Ellipsis)",
    ),
    (
        r"py:.*",
        r"(asyncio|ssl|ssl_module|collections|collections\.abc|typing|typing_extensions|enum"
        r"|types|dataclasses|http|websockets|logging|contextlib|redis|selectors|msgspec)(\..*)?",
    ),
    (
        r"py:.*",
        r"(Any|Callable|Awaitable|AsyncIterator|Iterable|Mapping|Sequence|Literal"
        r"|NotRequired|TypeAlias|ClassVar|Generic|Protocol|NamedTuple|TypedDict|SSLContext"
        r"|IntFlag|IntEnum|Enum|Future|Task|TimerHandle|AbstractEventLoop|ServerConnection"
        r"|Request|Response|Headers|Server|deque|Path|WebSocketURI)",
    ),
    # TypeVars of generic classes.
    (r"py:.*", r"(gateway\.[a-z_.]+\.)?[TD]"),
]
# Private names (``_ShardStream``, ``_EventFields``) are bases and helpers, not documented.
nitpick_ignore_regex.append((r"py:.*", r"(.*\.)?_[A-Za-z][\w.]*"))
# gateway.redis comes with the ``redis`` extra; without it, references to it stay unlinked.
try:
    import gateway.redis
except ImportError:
    nitpick_ignore_regex.append((r"py:.*", r"gateway\.redis(\..*)?"))
    _REDIS = "Install ``gateway[redis]`` (and the module) to document ``gateway.redis``.\n"
else:
    _REDIS = """\
.. automodule:: gateway.redis
   :no-members:

.. automodule:: gateway.redis.queue

.. automodule:: gateway.redis.sessions

.. automodule:: gateway.redis.streams

.. automodule:: gateway.redis.client
"""
# Generated at each build (and ignored by git): the page exists with or without the extra.
(ROOT / "docs" / "reference" / "redis.rst").write_text("Redis\n=====\n\n" + _REDIS)


def _canonical(dotted: str) -> str | None:
    """Where ``dotted`` (``gateway.Shard.close``) is defined (``gateway.shard.Shard.close``)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        name, rest = ".".join(parts[:cut]), parts[cut:]
        for i, attr in enumerate(rest):
            if not hasattr(obj, attr):
                return None
            obj = getattr(obj, attr)
            qualname, module = getattr(obj, "__qualname__", None), getattr(obj, "__module__", None)
            if isinstance(qualname, str) and isinstance(module, str):
                name, rest = f"{module}.{qualname}", rest[i + 1 :]
                return ".".join([name, *rest])
        return dotted  # a data item: documented where it is
    return None


def _resolve_reexport(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve a name to where it is documented: docstrings name the re-exports
    (``gateway.Shard``, ``Shard`` in another module) rather than the defining module.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].removeprefix("~")
    module = node.get("py:module") or "gateway"
    bases = [target, f"{module}.{target}", f"gateway.{target}"]
    if node.get("py:class"):  # a name beside the documented class, in its real module
        cls = _canonical(f"{module}.{node['py:class']}")
        if cls:
            bases.append(f"{cls.rpartition('.')[0]}.{target}")
    domain = env.get_domain("py")
    for base in bases:
        canonical = _canonical(base)
        if canonical is None:
            continue
        for typ in (node["reftype"], "obj"):
            found = domain.resolve_xref(env, node["refdoc"], app.builder, typ, canonical, node,
                                        contnode)  # fmt: skip
            if found is not None:
                return found
    return None


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("missing-reference", _resolve_reexport)
