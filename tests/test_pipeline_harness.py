"""The Pipeline harness: renders the repository's configs, brings the real
processes up, carries data end to end for any plain OTLP sender, and fails loudly, naming the
component and showing its log tail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.stack.pipeline import (
    API_JOB, PROMETHEUS_DIR, Pipeline, PipelineError, ProcessFailed, render_prometheus_config,
    render_rules, value)
from services.stack.probe import Sample, parse_exposition, sdk_sender
from tests.conftest import require_pipeline_components

pytestmark = pytest.mark.integration


def test_plain_otlp_senders_reach_prometheus(pipeline: Pipeline) -> None:
    for protocol, endpoint, count in (("grpc", pipeline.otlp_grpc_endpoint, 4),
                                      ("http/protobuf", pipeline.otlp_http_endpoint, 6)):
        resource = {"service.name": "harness-probe", "service.instance.id": f"probe-{protocol}"}
        with sdk_sender(endpoint, resource, protocol) as sender:
            counter = sender.meter_provider.get_meter("probe").create_counter(
                "cugar.executions", unit="{execution}")
            counter.add(count, {"outcome": "success", "profile": "demo"})
    result = pipeline.wait_for('cugar_executions_total{job="harness-probe"}',
                               lambda r: len(r) == 2, timeout=30)
    by_instance = {r["metric"]["instance"]: float(r["value"][1]) for r in result}
    assert by_instance == {"probe-grpc": 4.0, "probe-http/protobuf": 6.0}
    # The golden signal follows from a workload of new series (counted from zero).
    rate = pipeline.wait_for("cugar_success_rate", lambda r: bool(r), timeout=30)
    assert value(rate) == 1.0


def test_agent_env_points_at_this_collector(pipeline: Pipeline) -> None:
    env = pipeline.agent_env()
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == pipeline.otlp_grpc_endpoint
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    http = pipeline.agent_env(protocol="http/protobuf")
    assert http["OTEL_EXPORTER_OTLP_ENDPOINT"] == pipeline.otlp_http_endpoint


def test_all_targets_are_scraped_and_alertmanager_is_connected(pipeline: Pipeline) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in pipeline.query("up")}
    assert up == {"otel-collector-telemetry": "1", "jaeger": "1", "prometheus": "1",
                  "alertmanager": "1"}
    rendered = yaml.safe_load((pipeline.workdir / "prometheus.yml").read_text())
    assert rendered["global"]["scrape_interval"] == "1s"
    assert rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        pipeline.alertmanager_url.removeprefix("http://")]
    assert pipeline.alertmanager_alerts() is not None


def test_collector_failure_names_the_component_with_its_log_tail(tmp_path: Path) -> None:
    require_pipeline_components()
    broken = Pipeline(tmp_path, alertmanager=False, start_timeout=20,
                      collector_env={"CUGAR_COLLECTOR_MEMORY_LIMIT_MIB": "not-a-number"})
    with pytest.raises(ProcessFailed) as failure:
        broken.start()
    message = str(failure.value)
    assert message.startswith("collector ")
    assert "log tail" in message and "limit_mib" in message
    assert not broken.collector.process.running()


def test_scrape_failure_names_the_target(tmp_path: Path) -> None:
    require_pipeline_components()
    # On the scrape path, the collector's exporter is moved away from where Prometheus scrapes it.
    moved = Pipeline(tmp_path, alertmanager=False, start_timeout=8, metrics_path="scrape",
                     collector_env={"CUGAR_COLLECTOR_PROMETHEUS_ENDPOINT": "127.0.0.1:0"})
    with pytest.raises(PipelineError) as failure:
        moved.start()
    message = str(failure.value)
    assert "target otel-collector " in message and "down" in message
    assert "--- prometheus log tail ---" in message
    assert not moved.collector.process.running()


def test_an_unknown_metrics_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="metrics_path"):
        Pipeline(tmp_path, metrics_path="carrier-pigeon")


def test_rule_for_override_rewrites_only_alert_durations() -> None:
    text = (PROMETHEUS_DIR / "rules" / "cugar_alerts.yml").read_text()
    everything = yaml.safe_load(render_rules(text, "1s"))
    alerts = [r for g in everything["groups"] for r in g["rules"]]
    assert {r["for"] for r in alerts} == {"1s"}
    only_one = yaml.safe_load(render_rules(text, {"HighErrorRate": "2s"}))
    durations = {r["alert"]: r.get("for") for g in only_one["groups"] for r in g["rules"]}
    assert durations["HighErrorRate"] == "2s" and durations["LowSuccessRate"] == "5m"
    delivery = yaml.safe_load(render_rules(
        (PROMETHEUS_DIR / "rules" / "alert_delivery_alerts.yml").read_text(), "1s"))
    durations = {r["alert"]: r.get("for") for g in delivery["groups"] for r in g["rules"]}
    assert durations.pop("PrometheusNotConnectedToAlertmanagers") == "10m"  # a startup alert
    assert set(durations.values()) == {"1s"}
    recording = (PROMETHEUS_DIR / "rules" / "cugar_recording.yml").read_text()
    assert yaml.safe_load(render_rules(recording, "1s")) == yaml.safe_load(recording)


def test_prometheus_config_rendering() -> None:
    base = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {"jaeger": None, "otel-collector-telemetry": "127.0.0.1:2",
               "prometheus": "127.0.0.1:3", "alertmanager": None, API_JOB: None}
    config = render_prometheus_config(base, scrape_interval="2s", evaluation_interval="3s",
                                      targets=targets, alertmanager=None, rules_glob="/r/*.yml",
                                      metrics_targets=["127.0.0.1:1"])
    assert "alerting" not in config
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "3s",
                                "scrape_timeout": "2s"}
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"otel-collector", "otel-collector-telemetry", "prometheus"}
    assert jobs["otel-collector"]["honor_labels"] is True
    with pytest.raises(PipelineError, match="unknown-job"):
        base["scrape_configs"].append({"job_name": "unknown-job", "static_configs": []})
        render_prometheus_config(base, scrape_interval="1s", evaluation_interval="1s",
                                 targets=targets, alertmanager=None, rules_glob="x")


def test_exposition_label_values_are_unescaped() -> None:
    text = ('# HELP m a metric\n'
            'm{a="x\\"y",b="back\\\\slash",c="two\\nlines",d="}"} 1.5\n'
            'plain 2\n')
    assert parse_exposition(text) == [
        Sample("m", {"a": 'x"y', "b": "back\\slash", "c": "two\nlines", "d": "}"}, 1.5),
        Sample("plain", {}, 2.0)]


def test_short_lived_processes_born_inside_the_window_count_exactly(
        pipeline: Pipeline, run_agent) -> None:
    """Two agent processes that live a moment and count 7 and 3: Prometheus stores a 0 at each
    series' start (created-timestamp-zero-ingestion), so the anchored window count is exactly
    10, where plain increase() extrapolates past it."""
    for n in (7, 3):
        run_agent(pipeline, "--executions", str(n), "--time-scale", "0", "--seed", str(n),
                  env={"OTEL_SERVICE_NAME": "short-lived"})
    selector = 'cugar_executions_total{job="short-lived"}'
    pipeline.wait_for(f"sum({selector})", lambda r: value(r) == 10, timeout=30)
    assert value(pipeline.query(f"sum(increase({selector}[5m] anchored))")) == 10
    assert value(pipeline.query(f"sum(increase({selector}[5m]))")) != 10
