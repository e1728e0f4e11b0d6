"""Backend selection: defaults, every variable, every wrong value (in fresh interpreters)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import run_python

DESCRIBE = "import json, gateway.backends as b; print(json.dumps(b.describe()))"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def describe(**env: str) -> dict[str, str]:
    result = run_python(DESCRIBE, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_defaults_are_the_fastest_installed() -> None:
    from gateway.backends import JSON_ORDER, ZLIB_ORDER

    modules = {
        "zlib-ng": "zlib_ng",
        "zlib": "zlib",
        "isal": "isal",
        "orjson": "orjson",
        "ujson": "ujson",
        "json": "json",
    }
    info = describe()
    assert info["zlib"] == next(n for n in ZLIB_ORDER if installed(modules[n]))
    assert info["json"] == next(n for n in JSON_ORDER if installed(modules[n]))
    assert info["tls"] == "system"


@pytest.mark.parametrize(
    ("variable", "value", "module"),
    [
        ("GATEWAY_ZLIB", "zlib", "zlib"),
        ("GATEWAY_ZLIB", "isal", "isal"),
        ("GATEWAY_ZLIB", "zlib-ng", "zlib_ng"),
        ("GATEWAY_JSON", "json", "json"),
        ("GATEWAY_JSON", "ujson", "ujson"),
        ("GATEWAY_JSON", "orjson", "orjson"),
        ("GATEWAY_TLS", "system", "ssl"),
        ("GATEWAY_TLS", "certifi", "certifi"),
        ("GATEWAY_TLS", "truststore", "truststore"),
    ],
)
def test_variable_forces_backend(variable: str, value: str, module: str) -> None:
    if not installed(module):
        pytest.skip(f"{module} is not installed")
    key = variable.removeprefix("GATEWAY_").lower()
    assert describe(**{variable: value})[key] == value


@pytest.mark.parametrize("variable", ["GATEWAY_ZLIB", "GATEWAY_JSON", "GATEWAY_TLS"])
def test_unknown_value_names_variable_and_choices(variable: str) -> None:
    result = run_python(DESCRIBE, **{variable: "nonsense"})
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert f"{variable}='nonsense'" in result.stderr
    assert "choose one of" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "pip_name"),
    [
        ("GATEWAY_JSON", "orjson", "orjson"),
        ("GATEWAY_ZLIB", "isal", "isal"),
        ("GATEWAY_TLS", "truststore", "truststore"),
    ],
)
def test_missing_package_names_the_pip_fix(variable: str, value: str, pip_name: str) -> None:
    # Hide the package by poisoning sys.modules before gateway is imported.
    top = {"orjson": "orjson", "isal": "isal", "truststore": "truststore"}[pip_name]
    code = f"import sys; sys.modules[{top!r}] = None; " + DESCRIBE
    result = run_python(code, **{variable: value})
    assert result.returncode != 0
    assert f"{variable}={value!r}" in result.stderr
    assert f"pip install {pip_name}" in result.stderr


def test_fallback_when_fastest_missing() -> None:
    code = "import sys; sys.modules['orjson'] = None; sys.modules['zlib_ng'] = None; " + DESCRIBE
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["json"] in ("ujson", "json")
    assert info["zlib"] in ("zlib", "isal")


def test_no_extensions_forces_python() -> None:
    assert describe(GATEWAY_NO_EXTENSIONS="1")["speedups"] == "python"


def test_extensions_used_when_built() -> None:
    from gateway import _speedups

    expected = "cython" if "cython" in _speedups.twins() else "python"
    assert describe()["speedups"] == expected


def test_require_extensions_fails_when_not_built() -> None:
    code = "import sys; sys.modules['gateway._speedups._scan_c'] = None; " + DESCRIBE
    result = run_python(code, GATEWAY_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "GATEWAY_REQUIRE_EXTENSIONS=1" in result.stderr


def test_require_and_no_extensions_contradict() -> None:
    result = run_python(DESCRIBE, GATEWAY_NO_EXTENSIONS="1", GATEWAY_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "contradict" in result.stderr


@pytest.mark.parametrize("variable", ["GATEWAY_NO_EXTENSIONS", "GATEWAY_REQUIRE_EXTENSIONS"])
def test_flag_with_bad_value(variable: str) -> None:
    result = run_python(DESCRIBE, **{variable: "yes"})
    assert result.returncode != 0
    assert f"{variable}='yes'" in result.stderr


def test_cli_prints_backends() -> None:
    result = run_python("from gateway.service.cli import main; main(['backends', '--json'])")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"zlib", "json", "tls", "speedups", "zstd"}


def test_ssl_context_is_usable() -> None:
    import ssl

    from gateway import backends

    context = backends.create_ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
