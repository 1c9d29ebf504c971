"""The shipped collector config on our real build: redaction as a second line of defence,
self-metrics the pipeline alerts rely on, and switching the metrics backend by collector config
only (the prometheus exporter of collector/backends/prometheus-scrape.yaml and remote write give
the names and resource identity Prometheus' own OTLP receiver gives: tests/test_pipeline_*)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from otel import catalogue
from services.stack import components
from services.stack.collector import COLLECTOR_SELF_METRICS, TRACES_TO_FILE, Collector
from services.stack.pipeline import PROMETHEUS_SCRAPE_BACKEND, prometheus_process
from services.stack.probe import read_spans, scrape, sdk_sender
from services.stack.process import free_port, wait_until
from services.stack.prometheus_api import PrometheusClient, value
from tests.support import require

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]

EMAIL = "jane.canary@example.org"
CARD = "4111 1111 1111 1111"
BEARER = "Bearer eyCANARYtoken.abc123"
SECRET = "s3cr3t-canary-value"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory):
    require(components.COLLECTOR)
    with Collector(tmp_path_factory.mktemp("collector"),
                   overrides=(TRACES_TO_FILE, PROMETHEUS_SCRAPE_BACKEND)) as c:
        yield c


def _send_workload(endpoint: str, instance: str, protocol: str = "grpc") -> None:
    resource = {"service.name": "probe-svc", "service.instance.id": instance,
                "deployment.environment.name": "staging", "host.name": "probe-host"}
    with sdk_sender(endpoint, resource, protocol) as sender:
        meter = sender.meter_provider.get_meter("probe")
        executions = meter.create_counter("cugar.executions", unit="{execution}")
        executions.add(3, {"outcome": "success", "profile": "smb", "contact": EMAIL})
        meter.create_counter("probe.requests.total", unit="{request}").add(3, {"contact": EMAIL})
        duration = meter.create_histogram("cugar.execution.duration", unit="s")
        duration.record(0.12, {"outcome": "success", "profile": "smb"})


def test_scrape_backend_names_and_resource_identity(collector: Collector) -> None:
    _send_workload(collector.otlp_grpc_endpoint, "probe-1")
    _send_workload(collector.otlp_http_endpoint, "probe-2", protocol="http/protobuf")

    def both_instances() -> bool:
        return {s.labels.get("instance") for s in scrape(collector.exporter_url)
                if s.name == "cugar_executions_total"} == {"probe-1", "probe-2"}

    wait_until(both_instances, 20, what="both probe instances at the exporter")
    samples = [s for s in scrape(collector.exporter_url) if s.labels.get("job") == "probe-svc"]
    names = {s.name for s in samples}
    assert {"cugar_executions_total", "probe_requests_total",
            "cugar_execution_duration_seconds_bucket",
            "cugar_execution_duration_seconds_sum",
            "cugar_execution_duration_seconds_count"} <= names
    assert not any(n.endswith(("_total_total", "_seconds_seconds")) for n in names)
    for sample in samples:
        if sample.name == "target_info":
            continue
        assert sample.labels["deployment_environment_name"] == "staging", sample
        assert not {"host_name", "otel_scope_name", "service_name"} & sample.labels.keys(), sample
    counts = {s.labels["instance"]: s.value for s in samples if s.name == "cugar_executions_total"}
    assert counts == {"probe-1": 3.0, "probe-2": 3.0}


def test_metric_attribute_values_are_redacted(collector: Collector) -> None:
    _send_workload(collector.otlp_grpc_endpoint, "probe-3")
    wait_until(lambda: any(s.labels.get("instance") == "probe-3"
                           for s in scrape(collector.exporter_url)), 20, what="probe-3 series")
    samples = scrape(collector.exporter_url)
    contacts = {s.labels.get("contact") for s in samples if s.name == "probe_requests_total"}
    assert contacts == {"****"}
    # On a catalogue metric the label does not exist: the cardinality guard removes it.
    assert {s.labels.get("contact") for s in samples if s.name == "cugar_executions_total"} == {None}


def test_span_attributes_are_redacted(collector: Collector) -> None:
    resource = {"service.name": "probe-traces", "service.instance.id": "probe-t1"}
    with sdk_sender(collector.otlp_grpc_endpoint, resource) as sender:
        tracer = sender.tracer_provider.get_tracer("probe")
        with tracer.start_as_current_span("execute_tool crm_lookup") as span:
            span.set_attribute("gen_ai.tool.name", "crm_lookup")
            span.set_attribute("gen_ai.tool.call.arguments",
                               f'{{"to": "{EMAIL}", "card": "{CARD}", "auth": "{BEARER}"}}')
            span.set_attribute("crm.api_key", SECRET)
            span.add_event("tool_call_error", {"message": f"failed for {EMAIL}"})

    def exported() -> list[dict]:
        return [s for s in read_spans(collector.traces_file)
                if s["resource"].get("service.name") == "probe-traces"]

    wait_until(lambda: bool(exported()), 20, what="the probe span in the trace file")
    text = collector.traces_file.read_text()
    for canary in (EMAIL, CARD, "4111111111111111", "eyCANARYtoken", SECRET):
        assert canary not in text, f"{canary!r} reached the trace backend"
    span = exported()[0]
    assert span["attrs"]["gen_ai.tool.name"] == "crm_lookup"  # what is safe stays intact
    assert span["attrs"]["crm.api_key"] == "****"
    assert "****" in span["attrs"]["gen_ai.tool.call.arguments"]


def test_self_metrics_used_by_alerts_exist(tmp_path: Path) -> None:
    """Every otelcol_* series the pipeline alerts read is exposed by our build, by that name."""
    require(components.COLLECTOR)
    no_retry = tmp_path / "no-retry.yaml"
    no_retry.write_text("exporters:\n  otlp_http/vendor:\n    retry_on_failure:\n"
                        "      enabled: false\n    sending_queue:\n      batch:\n"
                        "        flush_timeout: 100ms\n")
    dead_backend = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails
    with Collector(tmp_path, overrides=[ROOT / "collector/backends/otlp-vendor.yaml", no_retry],
                   env={"CUGAR_VENDOR_OTLP_ENDPOINT": dead_backend}) as c:
        resource = {"service.name": "probe-self", "service.instance.id": "probe-s1"}
        with sdk_sender(c.otlp_grpc_endpoint, resource) as sender:
            sender.meter_provider.get_meter("probe").create_counter("cugar_probe").add(1)
            with sender.tracer_provider.get_tracer("probe").start_as_current_span("probe"):
                pass

        def exposed() -> set[str]:
            return {s.name for s in scrape(c.telemetry_url)}

        try:
            wait_until(lambda: COLLECTOR_SELF_METRICS <= exposed(), 30,
                       what="the collector self-metrics used by the pipeline alerts")
        except TimeoutError:
            pytest.fail(f"self-metrics missing: {sorted(COLLECTOR_SELF_METRICS - exposed())}")


def test_remote_write_backend_is_a_config_switch(tmp_path: Path) -> None:
    """collector/backends/remote-write.yaml sends the same series to a remote-write receiver."""
    require(components.PROMETHEUS)
    require(components.COLLECTOR)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    receiver = prometheus_process(tmp_path, port, config, "--web.enable-remote-write-receiver",
                                  name="prometheus (remote-write receiver)")
    overrides = [TRACES_TO_FILE, ROOT / "collector/backends/remote-write.yaml"]
    env = {"CUGAR_REMOTE_WRITE_URL": f"http://127.0.0.1:{port}/api/v1/write"}
    with receiver, Collector(tmp_path, overrides=overrides, env=env) as c:
        _send_workload(c.otlp_grpc_endpoint, "probe-rw")
        query = PrometheusClient(f"http://127.0.0.1:{port}")
        result = query.wait_for('cugar_executions_total{job="probe-svc"}', lambda r: bool(r), 30)
        assert [r["metric"]["instance"] for r in result] == ["probe-rw"]
        assert value(result) == 3.0
        assert result[0]["metric"]["deployment_environment_name"] == "staging"
        buckets = query.query('count(cugar_execution_duration_seconds_bucket{job="probe-svc"})')
        assert buckets and value(buckets) > 1


def test_promtool_finds_nothing_to_fix_in_what_the_pipeline_exports(tmp_path: Path) -> None:
    """`promtool check metrics` (Prometheus' naming and unit lint) over every CUGAr family a real
    agent workload produces, as the collector's prometheus exporter writes it with HELP, TYPE
    and UNIT: counters end in _total, durations are in seconds with the unit suffix."""
    promtool = require(components.PROMTOOL)
    require(components.COLLECTOR)
    with Collector(tmp_path, overrides=(TRACES_TO_FILE, PROMETHEUS_SCRAPE_BACKEND)) as collector:
        _lint_an_agent_workload(collector, promtool)


def _lint_an_agent_workload(collector: Collector, promtool: Path) -> None:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "promtool-probe"}
    subprocess.run([sys.executable, "-m", "services.agent", "run", "--executions", "40",
                    "--time-scale", "0", "--seed", "3", "--fail", "governance=0.5",
                    "--approval-timeout-rate", "0.3"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    wanted = {s for m in catalogue.METRICS for s in m.series_names()}

    def exported() -> set[str]:
        return {s.name for s in scrape(collector.exporter_url)
                if s.labels.get("job") == "promtool-probe"}

    wait_until(lambda: wanted <= exported(), 20, what="every catalogue series at the exporter")
    with urllib.request.urlopen(collector.exporter_url, timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    families = "\n".join(block for block in re.split(r"\n(?=# HELP )", text)
                         if block.startswith(("# HELP cugar_", "# HELP gen_ai_client_"))) + "\n"
    assert families.count("# HELP ") == len(catalogue.METRICS)
    lint = subprocess.run([promtool, "check", "metrics"], input=families, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
