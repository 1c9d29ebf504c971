"""Every Grafana panel query of every dashboard, with its variables expanded as Grafana would,
returns data from the real pipeline while a workload runs; the variable queries list the
workload's labels.

The workload: the simulated agent (our library: executions, tools, LLM calls and their cost)
and two real third-party agents run against a local fake OpenAI server, again and again
(PydanticAI with its native instrumentation, the OpenAI Agents SDK with the official
instrumentation; tests/support/genai_emitters.py), whose spans the collector turns into the
cugar_genai_* series of the GenAI agents dashboard.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from otel import catalogue
from services.agent.llm import MODELS
from services.stack.components import COLLECTOR, PROMETHEUS, REPO_ROOT
from services.stack.pipeline import Pipeline
from services.stack.process import wait_until
from services.stack.prometheus_api import value
from services.stack.run import AGENT_SERVICE_NAME, agent_argv
from tests.support import genai_emitters, require, require_module
from tests.support.fake_openai import FakeOpenAI
from tests.support.grafana import DASHBOARDS, targets, variables
from tests.support.promql import label_values, query_range

pytestmark = pytest.mark.integration

# Grafana's $__rate_interval is at least 4 scrape intervals (1s here); $__range is the picker's.
BUILTINS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "5m"}
PANEL_DATA_TIMEOUT_S = 15
WORKLOAD_S = 300  # bounds the workload; the module's tests end long before
# Third-party agents, one process each: service name -> (emitter, the runs of one round).
THIRD_PARTY = {
    "live-pydantic-ai": ("pydantic-ai", {"runs": 1, "failing_tool_runs": 1,
                                         "failing_model_runs": 1}),
    "live-openai-agents": ("openai-agents", {"runs": 1, "failing_model_runs": 1}),
}
# The value each variable takes besides "All" (Grafana sends the allValue, .*): one at a time,
# the others on All.
CONCRETE = {"profile": "smb", "domain": "intelligence", "model": "claude-sonnet-4-5",
            "service": "live-openai-agents", "agent": genai_emitters.AGENT_NAME}
# (dashboard, variable) -> the values its query must list once the workload ran, and whether
# exactly those (senders of the GenAI client metrics other than ours may add models).
VARIABLE_VALUES = {
    ("cugar-golden-signals", "profile"): (catalogue.DEFAULT_PROFILES, True),
    ("cugar-golden-signals", "domain"): (catalogue.DOMAINS, True),
    ("cugar-llm", "model"): (tuple(MODELS), False),
    ("cugar-llm", "profile"): (catalogue.DEFAULT_PROFILES, True),
    ("cugar-genai-agents", "service"): (tuple(THIRD_PARTY), True),
    ("cugar-genai-agents", "agent"): ((genai_emitters.AGENT_NAME,), True),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require(COLLECTOR)
    require(PROMETHEUS)
    for module in ("pydantic_ai", "agents", "opentelemetry.instrumentation.genai.openai_agents"):
        require_module(module)
    work = tmp_path_factory.mktemp("grafana-live")
    with Pipeline(work, alertmanager=False) as p, ExitStack() as stack:
        log = stack.enter_context(open(work / "workload.log", "w"))
        procs = [subprocess.Popen(
            agent_argv(15, WORKLOAD_S, 2, 0.05, ["--seed", "5", "--fail", "intelligence=0.3",
                                                 "--approval-timeout-rate", "0.1"]),
            cwd=REPO_ROOT, env={**os.environ, **p.agent_env(),
                                "OTEL_SERVICE_NAME": AGENT_SERVICE_NAME},
            stdout=subprocess.DEVNULL, stderr=log)]
        for service, (emitter, runs) in THIRD_PARTY.items():
            llm = stack.enter_context(FakeOpenAI())
            procs.append(subprocess.Popen(
                genai_emitters.command(emitter, llm.base_url, **runs, repeat_for=WORKLOAD_S),
                cwd=REPO_ROOT, env=genai_emitters.environment(p.agent_env(), emitter, service),
                stdout=subprocess.DEVNULL, stderr=log))
        try:
            # Enough traffic over several scrapes for rates over the shortest window.
            for expr in ("sum(rate(cugar_executions_total[10s]))",
                         "sum(increase(cugar_approvals_total[10s]))",
                         "sum(rate(cugar_domain_errors_total[10s]))",
                         "sum(rate(cugar_llm_cost_total[10s]))",
                         "sum(rate(cugar_genai_tool_errors_total[10s]))"):
                p.wait_for(expr, lambda r: bool(r) and value(r) > 0, 60)
            p.wait_for("count by (job) (rate(cugar_genai_inference_errors_total[10s]) > 0)",
                       lambda r: len(r) == len(THIRD_PARTY), 60)
            yield p
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)


def variable_values(p: Pipeline, query: str) -> list[str]:
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
    return label_values(p.prometheus_url, metric, label)


def label_variables(dashboard: dict) -> dict[str, str]:
    """name -> label_values query of each query variable (the SDK writes the query as a
    string, older models as a dict)."""
    return {name: v["query"] if isinstance(v["query"], str) else v["query"]["query"]
            for name, v in variables(dashboard).items() if v["type"] == "query"}


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


def test_every_variable_has_an_expectation() -> None:
    assert {(d, v) for d, board in DASHBOARDS.items() for v in label_variables(board)} \
        == set(VARIABLE_VALUES)
    assert {v for _, v in VARIABLE_VALUES} == set(CONCRETE)


@pytest.mark.parametrize("dashboard, name", sorted(VARIABLE_VALUES),
                         ids=[f"{d}:{v}" for d, v in sorted(VARIABLE_VALUES)])
def test_variable_queries_list_the_workloads_labels(live: Pipeline, dashboard: str,
                                                    name: str) -> None:
    query = label_variables(DASHBOARDS[dashboard])[name]
    expected, exact = VARIABLE_VALUES[(dashboard, name)]

    def listed() -> bool:
        got = set(variable_values(live, query))
        return got == set(expected) if exact else got >= set(expected)

    # The workload reaches every value within seconds; poll until it has.
    try:
        wait_until(listed, PANEL_DATA_TIMEOUT_S, interval=0.5, what=f"every {name} in Prometheus")
    except TimeoutError:
        got = set(variable_values(live, query))
        assert got == set(expected) if exact else got >= set(expected)
    assert CONCRETE[name] in variable_values(live, query)


def panel_targets() -> list[tuple[str, str, dict]]:
    return [(name, panel["title"], target) for name, d in DASHBOARDS.items()
            for panel, target in targets(d)]


def choices(dashboard: str) -> list[dict[str, str]]:
    """"All" for every variable, then each variable on its concrete value (the others All)."""
    every = dict.fromkeys(label_variables(DASHBOARDS[dashboard]), ".*")
    return [every, *({**every, name: CONCRETE[name]} for name in every)]


@pytest.mark.parametrize("dashboard, title, target", panel_targets(),
                         ids=[f"{d}:{t}:{x['refId']}" for d, t, x in panel_targets()])
def test_every_panel_query_returns_data(live: Pipeline, dashboard: str, title: str,
                                        target: dict) -> None:
    for values in choices(dashboard):
        expr = expand(target["expr"], values)
        # Series of different scrape targets are born a scrape apart: a panel whose series
        # came up after the fixture's readiness queries gets a few scrapes to show data.
        try:
            wait_until(lambda: bool(finite_values(live, expr, target.get("instant", False))),
                       PANEL_DATA_TIMEOUT_S, interval=0.5, what=expr)
        except TimeoutError:
            pytest.fail(f"{dashboard} / {title} returned no data within "
                        f"{PANEL_DATA_TIMEOUT_S}s for {values}: {expr}", pytrace=False)
