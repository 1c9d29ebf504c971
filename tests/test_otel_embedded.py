"""Embedded mode serves at /metrics exactly the names and labels Prometheus stores via OTLP."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

import pytest

from otel import catalogue
from otel.setup import create_telemetry
from services.stack import components
from services.stack.pipeline import prometheus_process
from services.stack.probe import parse_exposition
from services.stack.process import free_port
from services.stack.prometheus_api import PrometheusClient, value
from tests.support import require


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def raw_sample_names(text: str) -> set[str]:
    """Sample names exactly as written (what Prometheus stores)."""
    return {s.name for s in parse_exposition(text)}


def samples(text: str) -> dict[str, list]:
    """Parsed samples keyed by their name as written in the text."""
    out: dict[str, list] = {}
    for s in parse_exposition(text):
        out.setdefault(s.name, []).append(s)
    return out


@pytest.fixture
def tel():
    t = create_telemetry(env={
        "OTEL_SERVICE_NAME": "laptop-agent", "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=laptop-1,deployment.environment.name=dev",
    }, embedded_prometheus_port=0)
    yield t
    t.shutdown()


def record_some(agent) -> None:
    for outcome in ("ok", "ok", "fail"):
        with agent.execution(profile="smb", agent_name="a", budget_ceiling=4) as ex:
            with ex.tool_call("crm_lookup", domain="intelligence") as call:
                if outcome == "fail":
                    call.error("Timeout")
            with ex.approval(tool="send") as ap:
                if outcome == "ok":
                    ap.approve()
            ex.spend(5 if outcome == "fail" else 1)
            with ex.llm_call("openai", "gpt-4o-mini" if outcome == "ok" else "in-house",
                             stream=True) as llm:
                llm.first_chunk()
                llm.record(input_tokens=100, output_tokens=20)
            if outcome == "fail":
                ex.fail("bad")


def test_scrape_has_prometheus_otlp_names_and_identity(tel):
    record_some(tel.agent)
    ctype, text = scrape(tel.prometheus_url)
    assert ctype.startswith("text/plain; version=0.0.4")
    got = samples(text)
    expected = {n for m in catalogue.METRICS for n in m.series_names()}
    assert raw_sample_names(text) == expected, "exactly the names Prometheus stores via OTLP"
    assert set(got) == expected
    identity = {"job": "laptop-agent", "instance": "laptop-1",
                "deployment_environment_name": "dev"}
    assert set(identity) == set(catalogue.RESOURCE_LABELS.values())
    for spec in catalogue.METRICS:
        for name in spec.series_names():
            for s in got[name]:
                extra = {"le"} if name.endswith("_bucket") else set()
                # error_type only on the series of failed LLM calls (none recorded here)
                own = set(spec.labels) - ({"error_type"} if name.startswith("gen_ai") else set())
                assert set(s.labels) == set(identity) | own | extra, name
                assert {k: s.labels[k] for k in identity} == identity

    def value(name, **labels):
        return sum(s.value for s in got[name]
                   if all(s.labels.get(k) == v for k, v in labels.items()))

    assert value("cugar_executions_total", outcome="success", profile="smb") == 2
    assert value("cugar_executions_total", outcome="failure", profile="smb") == 1
    assert value("cugar_tool_errors_total", error_type="Timeout") == 1
    assert value("cugar_budget_used_total") == 7
    assert value("cugar_budget_exceeded_total") == 1 and value("cugar_budget_warnings_total") == 1
    assert value("cugar_approvals_total", decision="approved") == 2
    assert value("cugar_approval_timeouts_total") == 1
    assert value("cugar_execution_steps_count") == 3 and value("cugar_execution_steps_sum") == 3
    buckets: dict[float, float] = {}
    for s in got["cugar_execution_steps_bucket"]:
        buckets[float(s.labels["le"])] = buckets.get(float(s.labels["le"]), 0) + s.value
    assert list(buckets) == [float(b) for b in catalogue.STEPS_BUCKETS] + [float("inf")]
    assert buckets[0.0 + catalogue.STEPS_BUCKETS[0]] == 3 and buckets[float("inf")] == 3


def test_exposition_passes_promtool_and_types_each_family(tel):
    record_some(tel.agent)
    _, text = scrape(tel.prometheus_url)
    for spec in catalogue.METRICS:  # counters' families keep `_total` in text format 0.0.4
        assert f"# TYPE {spec.prometheus_name} {spec.kind.value}\n" in text, spec.name
        assert f"# HELP {spec.prometheus_name} {spec.description}\n" in text, spec.name
    promtool = require(components.PROMTOOL)
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_unknown_path_is_404_and_render_errors_are_500(tel, monkeypatch):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tel.prometheus_url.replace("/metrics", "/nope"), timeout=5)
    assert err.value.code == 404

    def broken(*_a, **_k):
        raise RuntimeError("store corrupted")

    monkeypatch.setattr("otel.embedded.render", broken)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tel.prometheus_url, timeout=5)
    assert err.value.code == 500, "/metrics must not answer 200 on internal errors"


def test_port_in_use_keeps_the_rest_working(tel):
    port = int(tel.prometheus_url.rsplit(":", 1)[1].split("/")[0])
    other = create_telemetry(env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
                             embedded_prometheus_port=port)
    try:
        assert other.prometheus_url is None
        with other.agent.execution(profile="demo"):
            pass
        assert other.stats()["metric_series"] > 0
    finally:
        other.shutdown()


def test_openmetrics_exposition_parses_and_carries_created_timestamps(tel):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    record_some(tel.agent)
    request = urllib.request.Request(tel.embedded.url,
                                     headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # strict parser
    executions = families["cugar_executions"]
    assert executions.type == "counter"
    names = {s.name for s in executions.samples}
    assert names == {"cugar_executions_total", "cugar_executions_created"}
    assert families["cugar_execution_duration_seconds"].unit == "seconds"
    created = {s.value for f in families.values() for s in f.samples if s.name.endswith("_created")}
    assert len(created) == 1 and 0 < time.time() - created.pop() < 600


@pytest.mark.integration
def test_prometheus_counts_a_series_born_before_its_first_scrape(tel, tmp_path):
    """The whole point of `_created`: Prometheus' first sample of a series that already
    counted 3 is 3, so without a start timestamp increase(x[5m] anchored) would say 0."""
    record_some(tel.agent)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = tel.embedded.url.removeprefix("http://").removesuffix("/metrics")
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n"
                      f"  - job_name: embedded\n    honor_labels: true\n"
                      f"    static_configs:\n      - targets: ['{target}']\n")
    with prometheus_process(tmp_path, port, config):
        prometheus = PrometheusClient(f"http://127.0.0.1:{port}")
        window = 'sum(increase(cugar_executions_total{job="laptop-agent"}[5m] anchored))'
        result = prometheus.wait_for(window, lambda r: bool(r) and value(r) > 0, timeout=30)
        assert value(result) == 3
