"""Every Grafana panel query, with its variables expanded as Grafana would, returns data from the
real pipeline while a workload runs; the variable queries list the workload's labels."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from otel import catalogue
from services.stack.components import COLLECTOR, PROMETHEUS, REPO_ROOT
from services.stack.pipeline import Pipeline
from services.stack.process import wait_until
from services.stack.prometheus_api import value
from services.stack.run import AGENT_SERVICE_NAME, agent_argv
from tests.support import require
from tests.support.grafana import DASHBOARDS, GOLDEN, targets, variables
from tests.support.promql import label_values, query_range

pytestmark = pytest.mark.integration

# Grafana's $__rate_interval is at least 4 scrape intervals (1s here); $__range is the picker's.
BUILTINS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "5m"}
PANEL_DATA_TIMEOUT_S = 15


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require(COLLECTOR)
    require(PROMETHEUS)
    work = tmp_path_factory.mktemp("grafana-live")
    with Pipeline(work, alertmanager=False) as p, open(work / "agent.log", "w") as log:
        agent = subprocess.Popen(
            agent_argv(15, 60, 2, 0.05, ["--seed", "5", "--fail", "intelligence=0.3",
                                         "--approval-timeout-rate", "0.1"]),
            cwd=REPO_ROOT, env={**os.environ, **p.agent_env(),
                                "OTEL_SERVICE_NAME": AGENT_SERVICE_NAME},
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            # Enough traffic over several scrapes for rates over the shortest window.
            p.wait_for("sum(rate(cugar_executions_total[10s]))",
                       lambda r: bool(r) and value(r) > 0, 60)
            p.wait_for("sum(increase(cugar_approvals_total[10s]))",
                       lambda r: bool(r) and value(r) > 0, 60)
            p.wait_for("sum(rate(cugar_domain_errors_total[10s]))",
                       lambda r: bool(r) and value(r) > 0, 60)
            yield p
        finally:
            agent.terminate()
            agent.wait(timeout=60)


def variable_values(p: Pipeline, query: str) -> list[str]:
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
    return label_values(p.prometheus_url, metric, label)


def expand(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in values.items()}}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unexpanded variable in {expr!r}"
    return expr


def finite_values(p: Pipeline, expr: str, instant: bool) -> list[float]:
    if instant:
        points = [r["value"] for r in p.query(expr)]
    else:
        now = time.time()
        points = [v for r in query_range(p.prometheus_url, expr, now - 30, now, "2")
                  for v in r["values"]]
    return [float(v) for _, v in points if math.isfinite(float(v))]


def test_variable_queries_list_the_workloads_labels(live: Pipeline) -> None:
    vs = variables(GOLDEN)

    def query(name: str) -> str:  # the SDK writes the query as a string, older models as a dict
        q = vs[name]["query"]
        return q if isinstance(q, str) else q["query"]

    # The workload reaches every profile and domain within seconds; poll until it has.
    for name, expected in (("profile", catalogue.DEFAULT_PROFILES), ("domain", catalogue.DOMAINS)):
        try:
            wait_until(lambda: set(variable_values(live, query(name))) == set(expected),
                       PANEL_DATA_TIMEOUT_S, interval=0.5, what=f"every {name} in Prometheus")
        except TimeoutError:
            assert set(variable_values(live, query(name))) == set(expected)


def panel_targets() -> list[tuple[str, str, dict]]:
    return [(name, panel["title"], target) for name, d in DASHBOARDS.items()
            for panel, target in targets(d)]


@pytest.mark.parametrize("dashboard, title, target", panel_targets(),
                         ids=[f"{d}:{t}:{x['refId']}" for d, t, x in panel_targets()])
def test_every_panel_query_returns_data(live: Pipeline, dashboard: str, title: str,
                                        target: dict) -> None:
    # "All" (Grafana sends the allValue) and one concrete value of each variable.
    choices = [{"profile": ".*", "domain": ".*"}, {"profile": "smb", "domain": "intelligence"}]
    for values in choices:
        expr = expand(target["expr"], values)
        # Series of different scrape targets are born a scrape apart: a panel whose series
        # came up after the fixture's readiness queries gets a few scrapes to show data.
        try:
            wait_until(lambda: bool(finite_values(live, expr, target.get("instant", False))),
                       PANEL_DATA_TIMEOUT_S, interval=0.5, what=expr)
        except TimeoutError:
            pytest.fail(f"{dashboard} / {title} returned no data within "
                        f"{PANEL_DATA_TIMEOUT_S}s for {values}: {expr}", pytrace=False)
