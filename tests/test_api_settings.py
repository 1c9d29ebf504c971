"""services/api settings: every CUGAR_* (and OTEL_*) value the API reads is checked at start;
`python -m services.api` exits 2 with one line naming the variable, without a traceback."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel import ConfigError
from services.api.app import create_app
from services.api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# One line per case: variable, bad value, a fragment of the message (what is accepted).
BAD = [
    ("CUGAR_API_PORT", "eighty", "a TCP port number (1-65535), got 'eighty'"),
    ("CUGAR_API_PORT", "0", "a TCP port number"),
    ("CUGAR_PROMETHEUS_URL", "prometheus:9090", "http:// or https:// URL with a host"),
    ("CUGAR_PROMETHEUS_URL", "", "http:// or https:// URL with a host, e.g. http://127.0.0.1:9090"),
    ("CUGAR_PROMETHEUS_URL", "http://prometheus:ninety", "got 'http://prometheus:ninety'"),
    ("CUGAR_COLLECTOR_HEALTH_URL", "127.0.0.1:13133", "http:// or https:// URL"),
    ("CUGAR_TRACE_BACKEND_URL", "jaeger", "http:// or https:// URL"),
    ("CUGAR_TRACE_BACKEND_URL", "ftp://jaeger:16686", "http:// or https:// URL"),
    ("CUGAR_API_HOST", "", "an IP address or a host name"),
    ("CUGAR_API_HOST", "local host", "an IP address or a host name"),
    ("CUGAR_API_HOST", "http://0.0.0.0", "an IP address or a host name"),
    ("CUGAR_API_KEY", "   ", "must not be blank"),
    ("CUGAR_API_KEY", " s3cret\n", "start or end with whitespace"),
    ("CUGAR_RUNBOOKS_PATH", "/nonexistent/runbooks.md", "a readable Markdown file"),
    ("CUGAR_RUNBOOKS_PATH", "/", "a readable Markdown file"),
    ("CUGAR_API_RATE_LIMIT", "fast", "requests per second per client"),
    ("CUGAR_API_RATE_LIMIT", "-1", "a number >= 0"),
    ("CUGAR_API_RATE_BURST", "0", "a whole number of requests >= 1"),
]


@pytest.mark.parametrize("name,value,message", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_value_is_rejected_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(f"{name} must ")
    assert message in str(raised.value)
    if name == "CUGAR_API_KEY":
        assert "s3cret" not in str(raised.value)  # the key is never echoed


@pytest.mark.parametrize("env,field,value", [
    ({}, "prometheus_url", "http://127.0.0.1:9090"),
    ({"CUGAR_PROMETHEUS_URL": "https://prom.example:9090/"}, "prometheus_url",
     "https://prom.example:9090"),
    ({"CUGAR_COLLECTOR_HEALTH_URL": ""}, "collector_health_url", None),
    ({"CUGAR_COLLECTOR_HEALTH_URL": "http://otelcol:13133/"}, "collector_health_url",
     "http://otelcol:13133/"),
    ({"CUGAR_TRACE_BACKEND_URL": ""}, "trace_backend_url", None),
    ({"CUGAR_API_KEY": ""}, "api_key", None),
    ({"CUGAR_API_KEY": "k 1"}, "api_key", "k 1"),
    ({"CUGAR_API_HOST": "0.0.0.0"}, "host", "0.0.0.0"),
    ({"CUGAR_API_HOST": "::"}, "host", "::"),
    ({"CUGAR_API_HOST": "api.internal"}, "host", "api.internal"),
    ({"CUGAR_RUNBOOKS_PATH": ""}, "runbooks_path", Settings.runbooks_path),
    ({"CUGAR_RUNBOOKS_PATH": str(Settings.runbooks_path)}, "runbooks_path",
     Settings.runbooks_path),
])
def test_good_values_are_taken(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize("name,value", [
    ("CUGAR_API_PORT", "eighty"),
    ("CUGAR_TRACE_BACKEND_URL", "jaeger:16686"),
    ("CUGAR_RUNBOOKS_PATH", "/nonexistent/runbooks.md"),
    ("OTEL_TRACES_SAMPLER", "bogus"),  # the telemetry settings the app's workers would read
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
])
def test_python_m_services_api_exits_2_with_the_message_and_no_traceback(name: str,
                                                                          value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CUGAR_"))}
    env.update({name: value, "CUGAR_API_PORT": "1"} if name != "CUGAR_API_PORT" else {name: value})
    result = subprocess.run([sys.executable, "-m", "services.api"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("cugar-api: ") and name in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_app_itself_refuses_a_bad_telemetry_setting(monkeypatch) -> None:
    """Started without `python -m services.api` (e.g. by uvicorn directly), the app still
    refuses a wrong OTEL_* value instead of serving silently without telemetry."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "bogus")
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER"):
        create_app(dataclasses.replace(Settings(), telemetry=True))
