"""Every Grafana panel query, with its variables expanded as Grafana would, returns data from the
real pipeline while a workload runs; the variable queries list the workload's labels."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otel import catalogue
from services.stack.components import COLLECTOR, PROMETHEUS
from services.stack.pipeline import Pipeline
from tests.support import require

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = {p.stem: json.loads(p.read_text())
              for p in sorted((REPO / "monitoring" / "grafana" / "dashboards").glob("*.json"))}
# Grafana's $__rate_interval is at least 4 scrape intervals (1s here); $__range is the picker's.
BUILTINS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "5m"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require(COLLECTOR)
    require(PROMETHEUS)
    work = tmp_path_factory.mktemp("grafana-live")
    with Pipeline(work, alertmanager=False) as p, open(work / "agent.log", "w") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "services.agent", "run", "--rate", "15", "--duration", "60",
             "--processes", "2", "--time-scale", "0.05", "--seed", "5",
             "--fail", "intelligence=0.3", "--approval-timeout-rate", "0.1"],
            cwd=REPO, env={**os.environ, **p.agent_env(), "OTEL_SERVICE_NAME": "cugar-sales"},
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            # Enough traffic over several scrapes for rates over the shortest window.
            p.wait_for("sum(rate(cugar_executions_total[10s]))",
                       lambda r: bool(r) and float(r[0]["value"][1]) > 0, 60)
            p.wait_for("sum(increase(cugar_approvals_total[10s]))",
                       lambda r: bool(r) and float(r[0]["value"][1]) > 0, 60)
            p.wait_for("sum(rate(cugar_domain_errors_total[10s]))",
                       lambda r: bool(r) and float(r[0]["value"][1]) > 0, 60)
            yield p
        finally:
            agent.terminate()
            agent.wait(timeout=60)


def label_values(p: Pipeline, query: str) -> list[str]:
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
    body = httpx.get(f"{p.prometheus_url}/api/v1/label/{label}/values",
                     params={"match[]": metric}, timeout=10).json()
    return body["data"]


def expand(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in values.items()}}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unexpanded variable in {expr!r}"
    return expr


def finite_values(p: Pipeline, expr: str, instant: bool) -> list[float]:
    if instant:
        params = {"query": expr}
        path = "/api/v1/query"
    else:
        now = time.time()
        params = {"query": expr, "start": f"{now - 30:.3f}", "end": f"{now:.3f}", "step": "2"}
        path = "/api/v1/query_range"
    body = httpx.get(p.prometheus_url + path, params=params, timeout=15).json()
    assert body["status"] == "success", f"{expr!r}: {body}"
    points = ([r["value"] for r in body["data"]["result"]] if instant else
              [v for r in body["data"]["result"] for v in r["values"]])
    return [float(v) for _, v in points if math.isfinite(float(v))]


def test_variable_queries_list_the_workloads_labels(live: Pipeline) -> None:
    variables = {v["name"]: v for v in DASHBOARDS["cugar-golden-signals"]["templating"]["list"]}
    assert set(label_values(live, variables["profile"]["query"]["query"])) == set(
        catalogue.DEFAULT_PROFILES)
    assert set(label_values(live, variables["domain"]["query"]["query"])) == set(catalogue.DOMAINS)


def panel_targets() -> list[tuple[str, str, dict]]:
    return [(name, panel["title"], target) for name, d in DASHBOARDS.items()
            for panel in d["panels"] if panel["type"] != "row" for target in panel["targets"]]


@pytest.mark.parametrize("dashboard, title, target", panel_targets(),
                         ids=[f"{d}:{t}:{x['refId']}" for d, t, x in panel_targets()])
def test_every_panel_query_returns_data(live: Pipeline, dashboard: str, title: str,
                                        target: dict) -> None:
    # "All" (Grafana sends the allValue) and one concrete value of each variable.
    choices = [{"profile": ".*", "domain": ".*"}, {"profile": "smb", "domain": "intelligence"}]
    for values in choices:
        expr = expand(target["expr"], values)
        assert finite_values(live, expr, target.get("instant", False)), (
            f"{dashboard} / {title} returned no data for {values}: {expr}")
