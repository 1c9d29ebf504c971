"""services/api without a workload: auth, bad input, dependencies down, /metrics, negotiation,
instrumentation. Prometheus "down" is a closed loopback port, not a mock."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from services.api.metrics import ApiMetrics
from services.api.settings import Settings
from tests.support.api import api_client, closed_url

KEY = "s3cret-key-for-tests"


def test_liveness_answers_even_when_prometheus_is_down() -> None:
    with api_client() as c:
        r = c.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["service"] == "cugar-api" and body["version"]
    assert body["metrics"] is None
    assert "unreachable" in body["metrics_error"]


def test_readiness_is_503_naming_each_unreachable_dependency() -> None:
    with api_client(collector_health_url=closed_url() + "/", trace_backend_url=closed_url()) as c:
        r = c.get("/health/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not ready"
    assert not any(check["ok"] for check in body["checks"].values())
    assert set(body["checks"]) == {"collector", "prometheus", "trace_backend"}
    assert any("collector" in reason for reason in body["reasons"])
    assert any("Prometheus" in reason for reason in body["reasons"])
    assert any("trace backend" in reason for reason in body["reasons"])


def test_dashboard_is_503_saying_prometheus_is_unreachable() -> None:
    with api_client() as c:
        r = c.get("/dashboard")
    assert r.status_code == 503
    assert "Prometheus" in r.json()["detail"] and "unreachable" in r.json()["detail"]


@pytest.mark.parametrize("query, fragment", [
    ("window=2d", "number followed by s, m or h"),
    ("window=abc", "number followed by s, m or h"),
    ("window=-5m", "number followed by s, m or h"),
    ("window=0m", "number followed by s, m or h"),
    ("window=30s", "between 1m and 24h"),
    ("window=25h", "between 1m and 24h"),
    ("window=5m&end=yesterday", "unix timestamp or an RFC 3339"),
    ("window=5m&end=2026-01-05T12:00:00", "time zone"),
    ("window=5m&end=nan", "finite unix timestamp"),
    ("window=5m&end=-1", "finite unix timestamp"),
    ("window=5m&end=378282246310005", "finite unix timestamp"),  # past year 9999: was a 500
])
def test_bad_window_or_end_is_422_with_a_clear_message(query: str, fragment: str) -> None:
    with api_client() as c:
        r = c.get(f"/dashboard?{query}")
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]


def test_bad_format_is_422() -> None:
    with api_client() as c:
        r = c.get("/dashboard?format=xml")
    assert r.status_code == 422


@pytest.mark.parametrize("query", ["window=canary.person@example.com",
                                   "end=canary.person@example.com",
                                   "format=canary.person@example.com"])
def test_error_bodies_quote_the_request_redacted(query: str) -> None:
    with api_client() as c:
        r = c.get(f"/dashboard?{query}")
    assert r.status_code == 422
    assert "canary.person" not in r.text and "[REDACTED:email]" in r.text


def test_browsers_get_the_live_page_api_clients_get_json() -> None:
    with api_client() as c:
        html = c.get("/dashboard", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        forced = c.get("/dashboard?format=html")
        api = c.get("/dashboard", headers={"Accept": "*/*"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "CUGAr golden signals" in html.text and "fetch(" in html.text
    assert "http://" not in html.text.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert forced.status_code == 200 and forced.headers["content-type"].startswith("text/html")
    assert api.status_code == 503 and api.headers["content-type"] == "application/json"


PROTECTED = ["/", "/health/ready", "/dashboard", "/metrics", "/runbooks", "/docs", "/redoc",
             "/openapi.json"]


@pytest.mark.parametrize("path", PROTECTED)
def test_api_key_required_everywhere_but_liveness(path: str) -> None:
    with api_client(api_key=KEY) as c:
        missing = c.get(path)
        wrong = c.get(path, headers={"X-API-Key": "nope"})
        right = c.get(path, headers={"X-API-Key": KEY})
    assert missing.status_code == 401 and "API key required" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert right.status_code not in (401, 403)


def test_liveness_is_open_but_hides_numbers_without_the_key() -> None:
    with api_client(api_key=KEY) as c:
        anonymous = c.get("/health")
        keyed = c.get("/health", headers={"X-API-Key": KEY})
    assert anonymous.status_code == 200 and "metrics" not in anonymous.json()
    assert keyed.status_code == 200 and "metrics" in keyed.json()


@pytest.mark.parametrize("headers", [
    {"X-API-Key": KEY},
    {"Authorization": f"Bearer {KEY}"},
    {"Authorization": "Basic " + base64.b64encode(f"anyone:{KEY}".encode()).decode()},
])
def test_key_accepted_as_header_bearer_or_basic_password(headers: dict[str, str]) -> None:
    with api_client(api_key=KEY) as c:
        assert c.get("/", headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Basic {KEY}"},                      # not base64 of user:password
    {"Authorization": f"Token {KEY}"},                      # unknown scheme
    {"X-API-Key": KEY[:-1]},                                # prefix of the key
    {"X-API-Key": KEY + "x"},
])
def test_near_misses_are_rejected(headers: dict[str, str]) -> None:
    with api_client(api_key=KEY) as c:
        assert c.get("/", headers=headers).status_code == 401


def test_without_a_configured_key_everything_is_open() -> None:
    with api_client() as c:
        for path in ["/", "/metrics", "/docs", "/redoc", "/openapi.json"]:
            assert c.get(path).status_code == 200, path


def test_metrics_exposition_counts_upstream_queries() -> None:
    with api_client() as c:
        c.get("/dashboard")
        text = c.get("/metrics").text
    assert "process_cpu_seconds_total" in text
    assert 'api_prometheus_queries_total{outcome="unavailable"}' in text


class _Broken:
    def collect(self):
        raise RuntimeError("collector bug")


def test_metrics_answers_500_not_200_when_collection_fails() -> None:
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    registry.register(_Broken())
    with api_client(metrics=metrics) as c:
        r = c.get("/metrics")
    assert r.status_code == 500
    assert "metrics collection failed: RuntimeError" in r.text


def test_requests_are_traced_except_health_and_metrics() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with api_client(tracer_provider=provider) as c:
        c.get("/health")
        c.get("/metrics")
        c.get("/dashboard?window=10m")
    routes = {s.attributes.get("http.route") for s in exporter.get_finished_spans()}
    assert "/dashboard" in routes
    assert "/health" not in routes and "/metrics" not in routes


def test_settings_reject_a_bad_port() -> None:
    with pytest.raises(ValueError, match="CUGAR_API_PORT"):
        Settings.from_env({"CUGAR_API_PORT": "eighty"})
    assert Settings.from_env({"CUGAR_API_PORT": "8123"}).port == 8123


def alert_names() -> set[str]:
    rules = Path(__file__).resolve().parents[1] / "monitoring" / "prometheus" / "rules"
    return {rule["alert"] for f in rules.glob("*.yml")
            for group in yaml.safe_load(f.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_runbooks_page_has_an_anchor_for_every_alert() -> None:
    with api_client() as c:
        r = c.get("/runbooks")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    anchors = set(re.findall(r'<h\d id="([^"]+)"', r.text))
    names = alert_names()
    assert len(names) >= 14
    assert {name.lower() for name in names} <= anchors
    assert "<script" not in r.text


def test_runbooks_missing_is_a_clear_404(tmp_path: Path) -> None:
    with api_client(runbooks_path=tmp_path / "nope.md") as c:
        r = c.get("/runbooks")
    assert r.status_code == 404 and "runbooks not found" in r.json()["detail"]
