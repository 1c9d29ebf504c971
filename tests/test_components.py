"""One version of each component everywhere: what the harness (tests, `make run`) starts is the
release components/versions.env pins (tests/test_compose_stack.py checks that docker-compose.yml
ships exactly those releases).

The running processes are asked for their own build info, so a stale cached binary, a binary
from PATH or a compose tag that drifted fails here."""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from services.stack import components
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import get_json
from tests.support import require

PINS = components.pinned_versions()

def test_the_jaeger_line_is_v2_and_prometheus_v3() -> None:
    assert PINS["JAEGER_VERSION"].startswith("2.")
    assert PINS["PROMETHEUS_VERSION"].startswith("3.")
    # The Go modules are tagged differently from the releases; the pins say both.
    assert PINS["PROMETHEUS_MODULE"].endswith(
        "@v0.{}{:02d}.{}".format(*map(int, PINS["PROMETHEUS_VERSION"].split("."))))
    assert PINS["ALERTMANAGER_MODULE"].endswith(f"@v{PINS['ALERTMANAGER_VERSION']}")


def _version_line(component: components.Component) -> str:
    binary = require(component)
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


@pytest.mark.parametrize(("component", "pin"), [
    (components.PROMTOOL, "PROMETHEUS_VERSION"),
    (components.AMTOOL, "ALERTMANAGER_VERSION"),
])
def test_the_command_line_tools_are_the_pinned_release(component: components.Component,
                                                       pin: str) -> None:
    assert re.search(rf"version {re.escape(PINS[pin])}\b", _version_line(component))


@pytest.mark.integration
def test_the_running_prometheus_is_the_pinned_release(pipeline: Pipeline) -> None:
    info = get_json(f"{pipeline.prometheus_url}/api/v1/status/buildinfo")["data"]
    assert info["version"] == PINS["PROMETHEUS_VERSION"]


@pytest.mark.integration
def test_the_running_alertmanager_is_the_pinned_release(pipeline: Pipeline) -> None:
    status = get_json(f"{pipeline.alertmanager_url}/api/v2/status")
    assert status["versionInfo"]["version"] == PINS["ALERTMANAGER_VERSION"]


@pytest.mark.integration
def test_the_running_jaeger_is_the_pinned_release(pipeline: Pipeline) -> None:
    assert pipeline.jaeger is not None
    assert pipeline.jaeger.version() == PINS["JAEGER_VERSION"]


def _page(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
        return resp.status, resp.read().decode(errors="replace")


@pytest.mark.integration
def test_the_web_uis_are_served(pipeline: Pipeline) -> None:
    status, html = _page(f"{pipeline.prometheus_url}/query")
    assert status == 200 and "<title>Prometheus" in html and "/assets/" in html
    status, html = _page(f"{pipeline.alertmanager_url}/ui/")
    assert status == 200 and "<script" in html
    status, html = _page(f"{pipeline.jaeger_url}/")
    assert status == 200 and "<html" in html.lower()
