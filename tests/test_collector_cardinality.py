"""The collector's cardinality guard (collector/cardinalityguard) against senders that are not
our SDK: plain OpenTelemetry SDK clients send a catalogue metric with 100,000 distinct tool
names, from one client and from ten instances of one service, through our collector build into
a real Prometheus.

Prometheus then holds at most the per-service bound of tool values (+ `other`), the totals are
exactly what was sent (the overflow is added into `other`), values outside a closed set are
`other`, the overflow is counted in the collector's self-metric as Prometheus scrapes it, and
CollectorCardinalityOverflow fires. The guard's configuration is generated from
otel/catalogue.py; a test here fails when otel-collector-config.yaml is stale, and the Go unit
tests run when Go is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator

from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource

from otel import catalogue
from services.monitoring import collector_guard
from services.monitoring.queries import CARDINALITY_OVERFLOW
from services.stack import components
from services.stack.collector import COLLECTOR_CONFIG
from services.stack.components import REPO_ROOT
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import value
from services.stack.process import wait_until
from tests.conftest import require_pipeline_components, run_agent_cli
from tests.support import require

METRIC = catalogue.TOOL_CALLS
SERIES = METRIC.prometheus_name
TOOL_BOUND = catalogue.OPEN_SET_LIMITS[catalogue.TOOL]
DISTINCT = 100_000
FLEET = 10
ALERT = "CollectorCardinalityOverflow"


# -- the configuration comes from the catalogue -----------------------------------------------

def _shipped() -> dict:
    return yaml.safe_load(COLLECTOR_CONFIG.read_text())


def test_guard_config_is_generated_from_the_catalogue() -> None:
    text = COLLECTOR_CONFIG.read_text()
    assert collector_guard.render(text) == text, "stale: run `python -m services.monitoring`"
    guard = _shipped()["processors"][collector_guard.NAME]
    assert guard == collector_guard.guard_config()
    assert {m["name"] for m in guard["metrics"]} == {m.name for m in catalogue.GUARDED_METRICS}
    calls = next(m for m in guard["metrics"] if m["name"] == METRIC.name)
    assert calls["open"] == {catalogue.TOOL: catalogue.TOOL}
    assert calls["closed"][catalogue.OUTCOME] == list(catalogue.TOOL_OUTCOMES)


def test_every_catalogue_attribute_is_closed_or_open() -> None:
    for m in catalogue.GUARDED_METRICS:
        for a in m.attributes:
            assert (catalogue.closed_values(m, a) is None) != (a not in catalogue.OPEN_SET_LIMITS), \
                f"{m.name}: {a} must be exactly one of closed (CLOSED_VALUES) or open (OPEN_SET_LIMITS)"


def test_a_stale_block_is_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    text = COLLECTOR_CONFIG.read_text()
    monkeypatch.setitem(catalogue.OPEN_SET_LIMITS, catalogue.TOOL, 7)
    fresh = collector_guard.render(text)
    assert fresh != text and "tool: 7" in fresh
    assert collector_guard.render(fresh) == fresh
    with pytest.raises(ValueError, match="BEGIN GENERATED"):
        collector_guard.render(text.replace(collector_guard.BEGIN, ""))


def test_guard_runs_last_in_the_metrics_pipeline() -> None:
    """After truncation and redaction: what it admits is what Prometheus stores (a redaction
    after it could map two admitted values onto one and create duplicate series)."""
    assert _shipped()["service"]["pipelines"]["metrics"]["processors"][-1] == collector_guard.NAME


def test_local_modules_reach_every_build() -> None:
    """Each manifest component with a local `path:` is a module of that name, copied into the
    collector image and part of collector/build.sh's cache key."""
    manifest = yaml.safe_load((REPO_ROOT / "collector" / "manifest.yaml").read_text())
    local = [c for kind in ("receivers", "processors", "exporters", "extensions")
             for c in manifest.get(kind) or [] if "path" in c]
    assert local, "the cardinality guard is built from its local module"
    dockerfile = (REPO_ROOT / "docker" / "collector.Dockerfile").read_text()
    build_sh = (REPO_ROOT / "collector" / "build.sh").read_text()
    for component in local:
        directory = Path(component["path"]).name
        go_mod = (REPO_ROOT / "collector" / directory / "go.mod").read_text()
        assert go_mod.startswith(f"module {component['gomod'].split()[0]}\n")
        assert f"COPY collector/{directory} ./{directory}" in dockerfile
        assert re.search(rf"find [^\n]*\b{directory}\b", build_sh), directory  # in the cache key


@pytest.mark.parametrize("module", ["cardinalityguard", "sensitiveattributes"])
def test_go_unit_tests_pass(module: str) -> None:
    go = require(components.GO)
    module = REPO_ROOT / "collector" / module
    result = subprocess.run([str(go), "test", "-count=1", "./..."], cwd=module,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "GOTOOLCHAIN": "local"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# -- end to end: raw SDK clients, our collector build, real Prometheus ------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp("cardinality"), alertmanager=False, jaeger=False,
                  rule_for_override={ALERT: "0s"}) as p:
        yield p


def _client(p: Pipeline, service: str, instance: str) -> tuple[MeterProvider, object]:
    """A plain OpenTelemetry SDK client (not our library). Its View lifts the SDK's own limit
    of 2000 attribute sets per instrument, so the collector really sees every value; the OTLP
    exporter sends each collection in one request (the SDK's default)."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=p.otlp_grpc_endpoint, insecure=True, timeout=60),
        export_interval_millis=3_600_000, export_timeout_millis=60_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": instance}),
        metric_readers=[reader],
        views=[View(instrument_name=METRIC.name, aggregation_cardinality_limit=2 * DISTINCT)])
    return provider, provider.get_meter("raw-sender").create_counter(METRIC.name, unit=METRIC.unit)


def _flush(provider: MeterProvider) -> None:
    assert provider.force_flush(timeout_millis=60_000), "the raw client's export failed"


def _scalar(p: Pipeline, promql: str) -> float | None:
    result = p.query(promql)
    return value(result)


def _wait_value(p: Pipeline, promql: str, expected: float, timeout: float = 60) -> None:
    try:
        p.wait_for(promql, lambda r: bool(r) and value(r) == expected, timeout)
    except TimeoutError:
        pytest.fail(f"{promql} = {_scalar(p, promql)}, expected {expected}")


def _alert_firing(p: Pipeline, service: str) -> None:
    def firing() -> bool:
        return any(a["labels"].get("alertname") == ALERT and a["state"] == "firing"
                   and a["labels"].get("service") == service for a in p.alerts())
    wait_until(firing, 60, interval=0.5, what=f"{ALERT} firing for {service}")


@pytest.mark.integration
def test_one_client_with_100k_tool_names(pipeline: Pipeline) -> None:
    p, service = pipeline, "raw-single"
    provider, counter = _client(p, service, "single-1")
    started = time.monotonic()
    try:
        for i in range(DISTINCT):
            counter.add(1, {catalogue.TOOL: f"t{i:05d}", catalogue.OUTCOME: "success"})
        # Closed-set violations: a value no vocabulary has, and a label the catalogue lacks.
        counter.add(5, {catalogue.TOOL: "t00000", catalogue.OUTCOME: "exploded"})
        counter.add(7, {catalogue.TOOL: "t00001", catalogue.OUTCOME: "success", "user.id": "u-1"})
        _flush(provider)
        sel = f'{SERIES}{{job="{service}"}}'
        _wait_value(p, f"sum({sel})", DISTINCT + 5 + 7)  # nothing lost
        # Bounded: the first TOOL_BOUND tools, plus `other`.
        assert _scalar(p, f"count(count by (tool) ({sel}))") == TOOL_BOUND + 1
        assert _scalar(p, f"count({sel})") == TOOL_BOUND + 2  # + t00000 with outcome="other"
        assert _scalar(p, f'sum({SERIES}{{job="{service}", tool="other"}})') == DISTINCT - TOOL_BOUND
        assert _scalar(p, f'sum({SERIES}{{job="{service}", outcome="other"}})') == 5
        assert _scalar(p, f'sum({SERIES}{{job="{service}", tool="t00001"}})') == 1 + 7
        assert p.query(f'{SERIES}{{job="{service}", outcome="exploded"}}') == []
        assert p.query(f'{SERIES}{{job="{service}", user_id!=""}}') == []
    finally:
        # A second export of the same cumulative values: the same series, the same totals.
        provider.shutdown()
    # Counted per export (each re-sends every cumulative series): the flush and the shutdown's.
    exports = 2
    over = f'{CARDINALITY_OVERFLOW}{{job="otel-collector-telemetry", service="{service}"'
    _wait_value(p, f'sum({over}, metric="{METRIC.name}", attribute="tool"}})',
                exports * (DISTINCT - TOOL_BOUND))
    assert _scalar(p, f'sum({over}, attribute="outcome"}})') == exports
    assert _scalar(p, f'sum({over}, attribute="(unlisted)"}})') == exports
    _wait_value(p, f"sum({SERIES}{{job=\"{service}\"}})", DISTINCT + 12)
    assert _scalar(p, f'count({SERIES}{{job="{service}"}})') == TOOL_BOUND + 2
    _alert_firing(p, service)
    print(f"one client: {DISTINCT} tool names -> {TOOL_BOUND + 1} tool values in Prometheus, "
          f"{time.monotonic() - started:.1f}s")


@pytest.mark.integration
def test_ten_instances_of_one_service_share_its_bound(pipeline: Pipeline) -> None:
    p, service = pipeline, "raw-fleet"
    per_client = DISTINCT // FLEET
    clients = [_client(p, service, f"fleet-{n}") for n in range(FLEET)]
    try:
        for n, (_, counter) in enumerate(clients):
            for i in range(per_client):  # 100,000 distinct names over the fleet
                counter.add(1, {catalogue.TOOL: f"f{n}-{i:05d}", catalogue.OUTCOME: "error"})
        for provider, _ in clients:
            _flush(provider)
    finally:
        for provider, _ in clients:
            provider.shutdown()
    sel = f'{SERIES}{{job="{service}"}}'
    _wait_value(p, f"sum({sel})", DISTINCT)
    _wait_value(p, f"count(count by (instance) ({sel}))", FLEET)
    # One bound for the service, across all its instances.
    assert _scalar(p, f"count(count by (tool) ({sel}))") == TOOL_BOUND + 1
    assert _scalar(p, f'sum({SERIES}{{job="{service}", tool="other"}})') == DISTINCT - TOOL_BOUND
    # The first instance's first TOOL_BOUND names and `other`; every other instance: `other`.
    assert _scalar(p, f"count({sel})") == TOOL_BOUND + FLEET
    _alert_firing(p, service)


@pytest.mark.integration
def test_our_sdk_never_overflows_the_guard(pipeline: Pipeline) -> None:
    """Our library's labels are the catalogue's: the guard passes them untouched."""
    service = "guarded-agent"
    summary = run_agent_cli(pipeline, "--executions", "40", "--seed", "3", "--time-scale", "0",
                            "--fail", "governance=0.4", "--approval-timeout-rate", "0.2",
                            env={"OTEL_SERVICE_NAME": service})
    assert summary["tool_errors"] > 0, "the workload must exercise the error labels"
    _wait_value(pipeline, f'sum(cugar_executions_total{{job="{service}"}})', 40)
    _wait_value(pipeline, f'sum({SERIES}{{job="{service}"}})', summary["tool_calls"])
    assert pipeline.query(f'{CARDINALITY_OVERFLOW}{{service="{service}"}}') == []
    assert pipeline.query(f'{SERIES}{{job="{service}", tool="other"}}') == []
