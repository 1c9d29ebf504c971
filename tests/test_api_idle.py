"""The API against a real, empty Prometheus: every query parses, and an idle fleet has no
golden signals (None), never a fake 0."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.settings import Settings
from services.stack.components import PROMETHEUS
from services.stack.pipeline import prometheus_process
from services.stack.process import free_port
from tests.support import require

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(PROMETHEUS)
    work: Path = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    port = free_port()
    with prometheus_process(work, port, work / "prometheus.yml"):
        yield f"http://127.0.0.1:{port}"


def api(prometheus_url: str) -> TestClient:
    settings = dataclasses.replace(Settings(), telemetry=False, prometheus_url=prometheus_url,
                                   collector_health_url=f"http://127.0.0.1:{free_port()}/")
    return TestClient(create_app(settings))


def test_idle_dashboard_has_no_golden_signals_and_zero_counts(empty_prometheus: str) -> None:
    with api(empty_prometheus) as c:
        r = c.get("/dashboard?window=15m&end=1767614400")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["time_range"] == {"window": "15m", "seconds": 900, "start": "2026-01-05T11:45:00Z",
                               "end": "2026-01-05T12:00:00Z"}
    g = d["golden_signals"]
    assert g["success_rate"] is None and g["error_rate"] is None
    assert g["latency_ms"] == {"p50": None, "p95": None, "p99": None, "mean": None}
    assert g["approval_wait_time_ms"] is None and g["tool_error_rate"] is None
    assert g["budget_utilization"] is None and g["steps_per_execution"] is None
    assert d["executions"]["total"] == 0 and d["executions"]["by_profile"] == {}
    assert d["tools"]["calls"] == 0 and d["tools"]["success_rate"] is None
    assert d["domains"] == {} and d["approvals"]["total"] == 0
    assert d["budget"]["used"] == 0 and d["budget"]["utilization"] is None


def test_idle_history_is_all_gaps(empty_prometheus: str) -> None:
    with api(empty_prometheus) as c:
        r = c.get("/dashboard?window=15m&end=1767614400&history=true")
    assert r.status_code == 200, r.text
    h = r.json()["history"]
    assert (h["start"], h["end"], h["step_s"]) == ("2026-01-05T11:45:00Z", "2026-01-05T12:00:00Z",
                                                   10)
    assert len(h["points"]) == 90 and h["points"][-1]["time"] == "2026-01-05T12:00:00Z"
    assert all(p[k] is None for p in h["points"]
               for k in ("success_rate", "error_rate", "latency_p95_ms"))


def test_idle_health_summary_and_readiness(empty_prometheus: str) -> None:
    with api(empty_prometheus) as c:
        health = c.get("/health").json()
        ready = c.get("/health/ready")
    assert health["metrics"] == {"window": "5m", "total_executions": 0, "success_rate": None,
                                 "error_rate": None, "latency_p95_ms": None}
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["prometheus"]["ok"] is True and checks["collector"]["ok"] is False
