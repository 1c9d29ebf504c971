"""The API on the real pipeline: after a known multi-process workload, /dashboard equals the
agent's own ground truth; several API workers and replicas give identical answers; the API is
scraped by Prometheus and its own telemetry travels through the collector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.stack.components import ALERTMANAGER, COLLECTOR, PROMETHEUS
from services.stack.pipeline import Pipeline, value
from services.stack.process import free_port, wait_until
from services.stack.run import AGENT_SERVICE_NAME, api_process
from tests.conftest import AgentRunner
from tests.support import require
from tests.support.processes import descendants
from tests.support.promql import total

pytestmark = pytest.mark.integration

AGENT_ARGS = ["--executions", "300", "--processes", "3", "--time-scale", "0", "--seed", "11",
              "--fail", "intelligence=0.3", "--approval-timeout-rate", "0.1",
              "--approval-reject-rate", "0.1"]


@dataclass
class Stack:
    pipeline: Pipeline
    api_url: str
    replica_url: str
    api_pid: int
    truth: dict


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, run_agent: AgentRunner) -> Iterator[Stack]:
    for component in (COLLECTOR, PROMETHEUS, ALERTMANAGER):
        require(component)
    work = tmp_path_factory.mktemp("api-pipeline")
    port, replica_port = free_port(), free_port()
    with Pipeline(work / "pipeline", api_target=f"127.0.0.1:{port}", alertmanager=False) as p:
        telemetry = p.agent_env()
        api = api_process(work, port, p.prometheus_url, p.collector_health_url, telemetry,
                          workers=2, trace_backend_url=p.jaeger_url)
        replica = api_process(work, replica_port, p.prometheus_url, p.collector_health_url,
                              telemetry, workers=1, name="api-replica")
        with api, replica:
            truth = run_agent(p, *AGENT_ARGS, env={"OTEL_SERVICE_NAME": AGENT_SERVICE_NAME},
                              timeout=180)
            # Prometheus holds the final values (raw sums, independent of the API's PromQL).
            for promql, expected in [
                ("cugar_executions_total", truth["executions"]),
                ("cugar_tool_calls_total", truth["tool_calls"]),
                ("cugar_approvals_total", sum(truth["approvals"].values())),
                ("cugar_execution_steps_count", truth["executions"]),
                ("cugar_budget_exceeded_total", truth["budget_exceeded"]),
            ]:
                wait_until(lambda: total(p.query(promql)) == expected, 30,
                           what=f"{promql} to reach {expected} in Prometheus")
            yield Stack(p, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{replica_port}",
                        api.pid, truth)


def get(url: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(url + path, params=params, headers={"Accept": "application/json"},
                     timeout=15)


def test_dashboard_numbers_equal_the_agents_ground_truth(stack: Stack) -> None:
    t = stack.truth
    r = get(stack.api_url, "/dashboard", window="10m")
    assert r.status_code == 200, r.text
    d = r.json()
    e = d["executions"]
    assert (e["total"], e["successful"], e["failed"]) == (t["executions"], t["successful"],
                                                          t["failed"])
    assert e["failed"] > 0 and e["steps"] == t["steps"]
    assert {p: (v["total"], v["successful"], v["failed"]) for p, v in e["by_profile"].items()} == {
        p: (v["executions"], v["successful"], v["failed"]) for p, v in t["by_profile"].items()}
    assert (d["tools"]["calls"], d["tools"]["errors"]) == (t["tool_calls"], t["tool_errors"])
    assert d["tools"]["by_tool"] == t["by_tool"]
    assert d["tools"]["errors_by_type"] == t["error_types"]
    assert d["domains"] == {dom: {**v, "error_rate": (v["errors"] / v["calls"]) if v["calls"]
                                  else None} for dom, v in t["by_domain"].items()}
    a = d["approvals"]
    assert {k: a[k] for k in ("approved", "rejected", "timeout")} == t["approvals"]
    assert a["timeout"] > 0 and a["rejected"] > 0
    b = d["budget"]
    assert b["used"] == pytest.approx(t["budget_used"], rel=1e-9)
    assert (b["exceeded"], b["warnings"]) == (t["budget_exceeded"], t["budget_warnings"])
    for profile, v in t["by_profile"].items():
        assert b["used_by_profile"][profile] == pytest.approx(v["budget_used"], rel=1e-9)
    g = d["golden_signals"]
    assert g["success_rate"] == t["successful"] / t["executions"]
    assert g["error_rate"] == t["failed"] / t["executions"]
    assert g["tool_error_rate"] == t["tool_errors"] / t["tool_calls"]
    assert g["steps_per_execution"] == pytest.approx(t["steps"] / t["executions"])
    assert 0 < g["budget_utilization"] < 2 and g["approval_wait_time_ms"] >= 0
    assert all(g["latency_ms"][p] is not None for p in ("p50", "p95", "p99"))
    assert g["latency_ms"]["p50"] <= g["latency_ms"]["p95"] <= g["latency_ms"]["p99"]


def test_history_is_null_while_idle_and_exact_over_the_workload(stack: Stack) -> None:
    """The workload ran within seconds: a point whose range covers it all has the ground
    truth's success rate exactly; points before it (the pipeline was not even up) are null,
    never 0."""
    t = stack.truth
    r = get(stack.api_url, "/dashboard", window="10m", history="true")
    assert r.status_code == 200, r.text
    h = r.json()["history"]
    assert (h["step_s"], h["range_s"], len(h["points"]), h["partial"]) == (5, 60, 120, False)
    points = h["points"]
    assert points[0]["success_rate"] is None and points[0]["latency_p95_ms"] is None
    rates = [p["success_rate"] for p in points if p["success_rate"] is not None]
    assert t["successful"] / t["executions"] in rates
    for p in points:
        if p["success_rate"] is None:
            assert p["error_rate"] is None and p["latency_p95_ms"] is None
        else:
            assert p["success_rate"] + p["error_rate"] == pytest.approx(1)
            assert p["latency_p95_ms"] > 0
    assert "history" not in get(stack.api_url, "/dashboard", window="10m").json()


def test_dashboard_llm_section_equals_the_agents_ground_truth(stack: Stack) -> None:
    llm, t = get(stack.api_url, "/dashboard", window="10m").json()["llm"], stack.truth["llm"]
    for key in ("calls", "errors", "input_tokens", "output_tokens", "unpriced_calls"):
        assert llm[key] == t[key], key
    assert llm["cost_usd"] == pytest.approx(t["cost_usd"], rel=1e-9)
    assert llm["error_rate"] == pytest.approx(t["errors"] / t["calls"])
    truth = {(p, m): v for p, models in t["by_model"].items() for m, v in models.items()}
    assert {(e["provider"], e["model"]) for e in llm["by_model"]} == set(truth)
    for entry in llm["by_model"]:
        want = truth[entry["provider"], entry["model"]]
        assert {k: entry[k] for k in want} == pytest.approx(want, rel=1e-9), entry["model"]
    costs = [e["cost_usd"] for e in llm["by_model"]]
    assert costs == sorted(costs, reverse=True)


def test_workers_and_replicas_give_identical_answers(stack: Stack) -> None:
    workers = [cmd for cmd in descendants(stack.api_pid).values() if "spawn_main" in cmd]
    assert len(workers) == 2, f"expected two uvicorn workers, found {workers}"
    end = f"{time.time():.3f}"
    bodies = [get(url, "/dashboard", window="10m", end=end).json()
              for url in [stack.api_url] * 8 + [stack.replica_url] * 4]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["executions"]["total"] == stack.truth["executions"]


def test_health_and_readiness_with_everything_up(stack: Stack) -> None:
    ready = get(stack.api_url, "/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["checks"]["trace_backend"] == {"url": stack.pipeline.jaeger_url, "ok": True}
    health = get(stack.api_url, "/health").json()
    assert health["metrics"]["total_executions"] == stack.truth["executions"]
    assert health["metrics"]["success_rate"] == stack.truth["successful"] / stack.truth["executions"]


def test_prometheus_scrapes_the_api_metrics(stack: Stack) -> None:
    get(stack.api_url, "/dashboard")
    stack.pipeline.wait_for('up{job="cugar-api"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)
    stack.pipeline.wait_for('api_prometheus_queries_total{job="cugar-api", outcome="success"}',
                            lambda r: bool(r), 30)


def test_the_apis_own_telemetry_goes_through_the_collector(stack: Stack) -> None:
    get(stack.api_url, "/dashboard", window="7m")
    # The FastAPI instrumentation's HTTP server histogram under its conventional name: OTel's
    # http.server.request.duration in seconds, translated by Prometheus with unit and suffixes.
    stack.pipeline.wait_for(
        'sum(http_server_request_duration_seconds_count{job="cugar-api", http_route="/dashboard"})',
        lambda r: bool(r) and value(r) >= 1, 60)
    stack.pipeline.wait_for('http_server_request_duration_seconds_bucket{job="cugar-api"}',
                            lambda r: bool(r), 10)

    def spans() -> list[dict]:
        return stack.pipeline.spans("cugar-api")

    wait_until(lambda: any(s["name"].startswith("GET /dashboard") for s in spans()), 30,
               interval=0.5, what="a GET /dashboard span from the API in Jaeger")
    assert not any("/health" in s["name"] or "/metrics" in s["name"] for s in spans())


def test_with_an_api_key_prometheus_still_scrapes_the_api(tmp_path: Path) -> None:
    require(COLLECTOR)
    require(PROMETHEUS)
    key = "pipeline-test-key"
    port = free_port()
    with Pipeline(tmp_path / "pipeline", api_target=f"127.0.0.1:{port}", alertmanager=False,
                  api_key=key) as p:
        with api_process(tmp_path, port, p.prometheus_url, p.collector_health_url, p.agent_env(),
                         api_key=key):
            url = f"http://127.0.0.1:{port}"
            assert get(url, "/metrics").status_code == 401
            assert get(url, "/health").status_code == 200
            p.wait_for('up{job="cugar-api"}', lambda r: bool(r) and r[0]["value"][1] == "1", 30)
            r = httpx.get(f"{url}/dashboard", headers={"X-API-Key": key}, timeout=15)
            assert r.status_code == 200 and r.json()["executions"]["total"] == 0
