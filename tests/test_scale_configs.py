"""The scale-out topology's shipped configs (deploy/scale/, docs/scaling.md) are valid for the
programs that run them, and say what the design needs: agent-side collectors routed by service,
Prometheus agents that add no label, a gateway telemetry scraper with one `instance` per gateway,
three-way replication, and Thanos query and rule that take the repository's rules unchanged (the
`anchored` counting included).

The whole topology under load is tests/test_scale_topology.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from otel.catalogue import EXECUTIONS
from services.monitoring.tunables import COLLECTOR_TELEMETRY_JOB
from services.stack import components
from services.stack.components import PROMETHEUS_DIR, REPO_ROOT
from services.stack.pipeline import write_rules
from services.stack.prometheus_api import QueryError, get_json, instant_query
from services.stack.process import ManagedProcess, free_port
from services.stack.scale import (AGENT_COLLECTOR_CONFIG, EXTENDED_RANGE_SELECTORS,
                                  GATEWAY_SCRAPER_CONFIG, HASHRINGS, PROMETHEUS_AGENT_CONFIG,
                                  REPLICATION_FACTOR, PrometheusAgent, ThanosQuery, ThanosRule,
                                  render_gateway_scraper_config, render_prometheus_agent_config)
from tests.support import require
from tests.support.deployment import env_default
from tests.support.otlp_raw import push_counter

ANCHORED = "sum(increase(cugar_executions_total[5m] anchored))"


def _agent_collector() -> dict:
    return yaml.safe_load(AGENT_COLLECTOR_CONFIG.read_text())


def _validate(config: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUGAR_COLLECTOR_")}
    return subprocess.run([str(require(components.COLLECTOR)), "validate", "--config", str(config)],
                          capture_output=True, text=True, timeout=60,
                          env={**clean, "CUGAR_COLLECTOR_QUEUE_DIR": str(tmp_path), **env})


def test_the_agent_side_collector_config_validates(tmp_path: Path) -> None:
    result = _validate(AGENT_COLLECTOR_CONFIG, tmp_path)
    assert result.returncode == 0, result.stderr
    result = _validate(AGENT_COLLECTOR_CONFIG, tmp_path,
                       CUGAR_COLLECTOR_GATEWAY_ENDPOINTS="[127.0.0.1:14317, 127.0.0.1:24317]")
    assert result.returncode == 0, result.stderr


def test_the_agent_side_collector_routes_everything_by_service() -> None:
    """The gateways keep per-service state (cardinality guard, signal_to_metrics/genai with
    delta_to_cumulative): each service must always reach the same gateway."""
    config = _agent_collector()
    exporter = config["exporters"]["load_balancing"]
    # (not `routing_key: service`, which keys spans and metrics differently: see the config)
    assert (exporter["routing_key"], exporter["routing_attributes"]) == ("attributes",
                                                                         ["service.name"])
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["exporters"] == ["load_balancing"], name
    assert set(config["service"]["pipelines"]) == {"metrics", "traces"}
    # what a gateway being down holds back waits in a queue (and the outer one is on disk)
    assert exporter["sending_queue"]["storage"] == "file_storage"
    assert exporter["protocol"]["otlp"]["sending_queue"]["enabled"] is True


def test_the_prometheus_agent_config_is_valid_and_adds_no_label(tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_AGENT_CONFIG.read_text())
    # A label added here would make a service re-routed to another gateway a second series.
    assert "external_labels" not in config.get("global", {})
    assert not config.get("scrape_configs")
    # The same OTLP translation settings as the single Prometheus.
    single = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["otlp"] == single["otlp"]
    assert config["storage"]["tsdb"] == {
        "out_of_order_time_window": single["storage"]["tsdb"]["out_of_order_time_window"]}
    rendered = tmp_path / "agent.yml"
    rendered.write_text(yaml.safe_dump(render_prometheus_agent_config(
        config, "http://127.0.0.1:19291/api/v1/receive")))
    result = subprocess.run([str(require(components.PROMTOOL)), "check", "config", "--agent",
                             str(rendered)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _promtool_check_agent(config: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([str(require(components.PROMTOOL)), "check", "config", "--agent",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_telemetry_scraper_scrapes_each_gateway_as_its_own_instance(
        tmp_path: Path) -> None:
    """The single Prometheus' collector-telemetry job, one target per gateway of the agent-side
    collectors' list, on the gateways' telemetry port, `instance` the gateway's name; the same
    intervals as the single Prometheus; the same store as the Prometheus agents; no label of
    its own."""
    config = yaml.safe_load(GATEWAY_SCRAPER_CONFIG.read_text())
    assert "external_labels" not in config["global"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == COLLECTOR_TELEMETRY_JOB
    assert set(job) == {"job_name", "static_configs"}  # no relabelling, no interval of its own
    gateways = [e.rsplit(":", 1)[0] for e in yaml.safe_load(env_default(
        AGENT_COLLECTOR_CONFIG, "CUGAR_COLLECTOR_GATEWAY_ENDPOINTS"))]
    port = env_default(REPO_ROOT / "otel-collector-config.yaml", "CUGAR_COLLECTOR_TELEMETRY_PORT")
    assert [(s["targets"], s["labels"]) for s in job["static_configs"]] == [
        ([f"{g}:{port}"], {"instance": g}) for g in gateways]
    single = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (single_job,) = [j for j in single["scrape_configs"] if j["job_name"] == COLLECTOR_TELEMETRY_JOB]
    for key in ("scrape_interval", "scrape_timeout"):
        assert single_job.get(key, single["global"][key]) == config["global"][key], key
    agent = yaml.safe_load(PROMETHEUS_AGENT_CONFIG.read_text())
    assert config["remote_write"] == agent["remote_write"]
    _promtool_check_agent(config, tmp_path / "shipped.yml")


def test_the_gateway_telemetry_scraper_is_rendered_with_loopback_targets(tmp_path: Path) -> None:
    config = yaml.safe_load(GATEWAY_SCRAPER_CONFIG.read_text())
    loopback = {"gateway-0": "127.0.0.1:18888", "gateway-1": "127.0.0.1:28888"}
    rendered = render_gateway_scraper_config(config, "http://127.0.0.1:19291/api/v1/receive",
                                             loopback, scrape_interval="1s")
    statics = rendered["scrape_configs"][0]["static_configs"]
    assert [(s["targets"], s["labels"]["instance"]) for s in statics] == [
        (["127.0.0.1:18888"], "gateway-0"), (["127.0.0.1:28888"], "gateway-1")]
    assert rendered["global"]["scrape_timeout"] == "1s"
    _promtool_check_agent(rendered, tmp_path / "rendered.yml")
    with pytest.raises(ValueError, match="gateway-1"):
        render_gateway_scraper_config(config, "http://127.0.0.1:1/", {"gateway-0": "127.0.0.1:1"})
    with pytest.raises(ValueError, match="gateway-2"):
        render_gateway_scraper_config(config, "http://127.0.0.1:1/",
                                      {**loopback, "gateway-2": "127.0.0.1:1"})


def test_the_hashring_replicates_each_series_to_every_ingestor() -> None:
    rings = json.loads(HASHRINGS.read_text())
    assert len(rings) == 1 and rings[0]["algorithm"] == "ketama"
    assert len(rings[0]["endpoints"]) == REPLICATION_FACTOR == 3


def test_thanos_is_the_pinned_release() -> None:
    out = subprocess.run([str(require(components.THANOS)), "--version"], capture_output=True,
                         text=True, timeout=30)
    version = components.pinned_versions()["THANOS_VERSION"]
    assert re.search(rf"version {re.escape(version)}\b", out.stdout + out.stderr)


@pytest.fixture
def thanos_query(tmp_path: Path):
    require(components.THANOS)
    query = ThanosQuery(tmp_path / "query", endpoints=[])
    with query:
        yield query


def test_thanos_query_takes_anchored_ranges(thanos_query: ThanosQuery) -> None:
    result, _ = instant_query(thanos_query.url, ANCHORED)
    assert result == []  # no store: nothing, but parsed and evaluated


def test_thanos_query_takes_the_apis_experimental_functions(thanos_query: ThanosQuery) -> None:
    """/dashboard's freshness verdicts use ts_of_first_over_time: Grafana and the api can point
    at Thanos query instead of Prometheus."""
    result, _ = instant_query(thanos_query.url, "ts_of_first_over_time(up[5m])")
    assert result == []


def test_without_the_switch_thanos_query_refuses_anchored(tmp_path: Path) -> None:
    """What components/patches/thanos-extended-range-selectors.patch is for."""
    port = free_port()
    binary = require(components.THANOS)
    with ManagedProcess("thanos-query-plain", [
            binary, "query", f"--http-address=127.0.0.1:{port}",
            f"--grpc-address=127.0.0.1:{free_port()}"], tmp_path / "plain.log",
            ready_url=f"http://127.0.0.1:{port}/-/ready"):
        with pytest.raises(QueryError, match="anchored modifier is experimental and not enabled"):
            instant_query(f"http://127.0.0.1:{port}", ANCHORED)


def test_thanos_rule_loads_every_rule_of_the_repository_unchanged(tmp_path: Path,
                                                                   thanos_query: ThanosQuery) -> None:
    rules_glob = write_rules(tmp_path / "rules")
    rule = ThanosRule(tmp_path / "rule", thanos_query.url, rules_glob, alertmanager_url=None)
    with rule:
        assert EXTENDED_RANGE_SELECTORS in rule.process.argv
        groups = get_json(f"{rule.url}/api/v1/rules")["data"]["groups"]
    loaded = {(g["name"], r["name"]) for g in groups for r in g["rules"]}
    shipped = set()
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            shipped |= {(group["name"], r.get("record") or r["alert"]) for r in group["rules"]}
    assert loaded == shipped


def test_the_prometheus_agent_takes_a_late_point(tmp_path: Path) -> None:
    """A gateway replaying its queue after a restart sends points older than ones the agent
    already holds for the series (they came the other way meanwhile): taken, as the single
    Prometheus takes them, not refused with HTTP 400."""
    require(components.PROMETHEUS)
    with PrometheusAgent(tmp_path, f"http://127.0.0.1:{free_port()}/api/v1/receive") as agent:
        now = time.time()
        newer, late = push_counter(agent.otlp_url, "cugar-sales", "late-1", EXECUTIONS.name,
                                   EXECUTIONS.unit, [(now, 5), (now - 60, 3)], now - 120)
    assert newer.status_code == 200, newer.text
    assert late.status_code == 200, late.text
