"""Backend choice, made once at import: zlib, JSON, TLS and speedups.

Environment variables override the defaults (see the README's backend table):

============================== ================================ ==========================
variable                       values                           default
============================== ================================ ==========================
``GATEWAY_ZLIB``               ``zlib``, ``isal``, ``zlib-ng``  fastest installed
``GATEWAY_JSON``               ``json``, ``ujson``, ``orjson``  fastest installed
``GATEWAY_TLS``                ``system``, ``certifi``,         ``system``
                               ``truststore``
``GATEWAY_NO_EXTENSIONS``      ``1``                            compiled speedups if built
``GATEWAY_REQUIRE_EXTENSIONS`` ``1``                            a missing build is fine
============================== ================================ ==========================

"Fastest" is the order measured by ``tools/bench_backends.py`` on gateway-sized messages
(~1 KB zlib-stream chunks, 1-7 KB JSON payloads): zlib-ng before stdlib zlib before isal
(isal's per-call overhead loses on small sync-flushed chunks), orjson before ujson before
stdlib json. An unknown value, or a backend asked for but not installed, raises ImportError
naming the variable, the value and the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib
import os
import ssl
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _speedups

__all__ = [
    "ZLIB",
    "JSON",
    "TLS",
    "SPEEDUPS",
    "zlib",
    "json_loads",
    "json_dumps",
    "create_ssl_context",
    "default_ssl_context",
    "describe",
    "ZLIB_ORDER",
    "JSON_ORDER",
]

#: Preference order when the variable is unset (measured by tools/bench_backends.py).
ZLIB_ORDER = ("zlib-ng", "zlib", "isal")
JSON_ORDER = ("orjson", "ujson", "json")
TLS_ORDER = ("system", "certifi", "truststore")

# backend name -> (module to import, attribute holding the zlib-compatible module, pip name)
_ZLIB_MODULES = {
    "zlib": ("zlib", None, None),
    "isal": ("isal.isal_zlib", None, "isal"),
    "zlib-ng": ("zlib_ng.zlib_ng", None, "zlib-ng"),
}
_JSON_PIP = {"json": None, "ujson": "ujson", "orjson": "orjson"}
_TLS_PIP = {"system": None, "certifi": "certifi", "truststore": "truststore"}


def _requested(variable: str, choices: tuple[str, ...]) -> str | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if value not in choices:
        raise ImportError(
            f"{variable}={value!r} is not a known backend; choose one of {', '.join(choices)}"
        )
    return value


def _missing(variable: str, value: str, pip_name: str | None, exc: ImportError) -> ImportError:
    fix = f"pip install {pip_name}" if pip_name else "reinstall Python with this module"
    return ImportError(f"{variable}={value!r} but it is not installed ({exc}); fix: {fix}")


def _pick(
    variable: str,
    order: tuple[str, ...],
    load: Callable[[str], Any],
    pip_names: dict[str, str | None],
) -> tuple[str, Any]:
    wanted = _requested(variable, order)
    if wanted is not None:
        try:
            return wanted, load(wanted)
        except ImportError as exc:
            raise _missing(variable, wanted, pip_names[wanted], exc) from exc
    for name in order:
        try:
            return name, load(name)
        except ImportError:
            continue
    raise ImportError(f"no {variable} backend could be imported")  # pragma: no cover


def _load_zlib(name: str) -> ModuleType:
    return importlib.import_module(_ZLIB_MODULES[name][0])


def _load_json(name: str) -> tuple[Callable[[bytes | str], Any], Callable[[Any], str]]:
    if name == "orjson":
        import orjson

        orjson_dumps = orjson.dumps

        def dumps_orjson(obj: Any) -> str:
            return orjson_dumps(obj).decode()

        return orjson.loads, dumps_orjson
    if name == "ujson":
        import ujson

        ujson_dumps = ujson.dumps

        def dumps_ujson(obj: Any) -> str:
            return ujson_dumps(obj, ensure_ascii=False, escape_forward_slashes=False)

        return ujson.loads, dumps_ujson
    import json

    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    return json.loads, encoder.encode


def _load_tls(name: str) -> Callable[[], ssl.SSLContext]:
    if name == "certifi":
        import certifi

        where = certifi.where()
        return lambda: ssl.create_default_context(cafile=where)
    if name == "truststore":
        import truststore

        return lambda: truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return ssl.create_default_context


ZLIB: str
zlib: ModuleType
ZLIB, zlib = _pick(
    "GATEWAY_ZLIB", ZLIB_ORDER, _load_zlib, {k: v[2] for k, v in _ZLIB_MODULES.items()}
)

JSON: str
JSON, (json_loads, json_dumps) = _pick("GATEWAY_JSON", JSON_ORDER, _load_json, _JSON_PIP)

TLS: str
_wanted_tls = _requested("GATEWAY_TLS", TLS_ORDER) or "system"
try:
    create_ssl_context: Callable[[], ssl.SSLContext] = _load_tls(_wanted_tls)
except ImportError as _exc:
    raise _missing("GATEWAY_TLS", _wanted_tls, _TLS_PIP[_wanted_tls], _exc) from _exc
TLS = _wanted_tls

_default_context: ssl.SSLContext | None = None
_default_lock = threading.Lock()


def default_ssl_context() -> ssl.SSLContext:
    """The process-wide client context for ``wss://`` when none is given: made on first use
    by :func:`create_ssl_context` (verifying certificates and hostnames), then shared.

    One context per shard would cost ~840 KB and ~45 ms each (the trust store is loaded per
    context); connections share a context safely. Do not change the one returned: pass your
    own context instead.
    """
    global _default_context
    context = _default_context
    if context is None:
        with _default_lock:  # shards started from several threads still load it once
            context = _default_context
            if context is None:
                context = create_ssl_context()
                # A client never needs TLS 1.2 renegotiation; refusing it keeps a write from
                # ever waiting on a read (the transport's TLS layer does not support that).
                context.options |= ssl.OP_NO_RENEGOTIATION
                _default_context = context
    return context


SPEEDUPS: str = _speedups.BACKEND


def _zstd_backend() -> str | None:
    for module in ("compression.zstd", "backports.zstd", "zstandard"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return module
    return None


def describe() -> dict[str, str | None]:
    """The backends in use, e.g. ``{"zlib": "zlib-ng", "json": "orjson", ...}``."""
    return {
        "zlib": ZLIB,
        "json": JSON,
        "tls": TLS,
        "speedups": SPEEDUPS,
        "zstd": _zstd_backend(),
    }
