"""From a number to its trace: the latency histograms' exemplars go from our SDK through the
collector (every processor, the cardinality guard included) into Prometheus' exemplar storage,
and the exemplar of the slowest execution, read back from /api/v1/query_exemplars, names a
trace Jaeger holds: that execution's own invoke_agent span. On both metrics paths: pushed
into the OTLP receiver (every exemplar arrives), and scraped from the collector's prometheus
exporter (only the exemplars of the point a scrape sees: the last one of each bucket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel import catalogue
from tests.conftest import require_pipeline_components
from services.stack.pipeline import METRICS_PATHS, Pipeline
from services.stack.process import wait_until
from tests.support.jaeger import hex_id

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SERVICE = "cugar-exemplars"
SLOW_S = (0.3, 0.6, 1.2)  # each in its own duration bucket: (0.25, 0.5], (0.5, 1], (1, 2]
BUCKETS = catalogue.EXECUTION_DURATION.series("_bucket")


@pytest.fixture(scope="module", params=METRICS_PATHS)
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp(f"exemplars-{request.param}"), alertmanager=False,
                  metrics_path=request.param) as p:
        yield p


@pytest.fixture(scope="module")
def run(pipeline: Pipeline) -> dict:
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.slow_agent", "--fast", "20",
         "--slow", ",".join(map(str, SLOW_S))],
        cwd=REPO, env={**os.environ, **pipeline.agent_env(), "OTEL_SERVICE_NAME": SERVICE},
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    truth = json.loads(proc.stdout.splitlines()[-1])
    truth["started"] = started
    return truth


def _exemplars(pipeline: Pipeline, since: float) -> list[dict]:
    """Every exemplar of our service's execution-duration buckets, with its series' labels."""
    out = []
    for series in pipeline.prometheus.exemplars(f'{BUCKETS}{{job="{SERVICE}"}}', since - 60,
                                                time.time() + 60):
        for ex in series["exemplars"]:
            out.append({**ex, "value": float(ex["value"]), "series": series["seriesLabels"]})
    return out


def test_the_slowest_executions_exemplar_leads_to_its_trace_in_jaeger(pipeline: Pipeline,
                                                                      run: dict) -> None:
    found: list[dict] = []

    def stored() -> bool:
        found[:] = _exemplars(pipeline, run["started"])
        return any(ex["value"] >= max(SLOW_S) for ex in found)

    wait_until(stored, 30, interval=0.5, what="the slowest execution's exemplar in Prometheus")
    slowest = max(found, key=lambda ex: ex["value"])
    truth = max(run["slow"], key=lambda s: s["seconds"])
    # The exemplar sits on the bucket series its value belongs to, and names the execution.
    assert float(slowest["series"]["le"]) >= slowest["value"] > max(
        (b for b in catalogue.EXECUTION_DURATION.buckets if b < slowest["value"]), default=0)
    assert slowest["labels"]["trace_id"] == truth["trace_id"]
    assert slowest["value"] == pytest.approx(truth["seconds"], abs=0.05)

    spans: list[dict] = []

    def in_jaeger() -> bool:
        spans[:] = pipeline.jaeger.trace(slowest["labels"]["trace_id"])
        return any(s["spanId"] for s in spans)

    wait_until(in_jaeger, 30, interval=0.5, what="the exemplar's trace in Jaeger")
    (execution,) = [s for s in spans if s["attrs"].get("gen_ai.operation.name") == "invoke_agent"]
    assert hex_id(execution["spanId"]) == slowest["labels"]["span_id"]
    assert execution["resource"]["service.name"] == SERVICE
    assert execution["attrs"].get("test.slow") is True
    duration_s = (int(execution["endTimeUnixNano"]) - int(execution["startTimeUnixNano"])) / 1e9
    assert duration_s == pytest.approx(slowest["value"], abs=0.005)


# Pushed only: a scrape sees one point per series, so exemplars exported between two scrapes
# are replaced by the next point's (docs/pipeline.md).
@pytest.mark.parametrize("pipeline", ["push"], indirect=True)
def test_every_slow_execution_has_its_own_exemplar(pipeline: Pipeline, run: dict) -> None:
    expected = {s["trace_id"] for s in run["slow"]}
    slow: set[str] = set()

    def stored() -> bool:
        slow.update(ex["labels"]["trace_id"] for ex in _exemplars(pipeline, run["started"])
                    if ex["value"] >= min(SLOW_S))
        return slow >= expected

    wait_until(stored, 30, interval=0.5, what="every slow execution's exemplar")
    assert slow == expected

