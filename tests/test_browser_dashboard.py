"""Headless Chromium on the API's live /dashboard page while a workload runs: the page's own
JavaScript polls the JSON and renders numbers that move with the workload and, once it has
finished, equal the agent's ground truth. Saves a screenshot (docs/dashboard.png when
CUGAR_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from otel import catalogue
from services.stack.components import CHROMIUM, COLLECTOR, PROMETHEUS
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import value
from services.stack.process import free_port, wait_until
from services.stack.run import AGENT_SERVICE_NAME, agent_argv, api_process
from tests.support import require

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "dashboard.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars", "--mute-audio"]
# Virtual time lets the page's timers run without real waiting: two polls of the JSON.
VIRTUAL_TIME_MS = "8000"


@dataclass
class Live:
    pipeline: Pipeline
    page_url: str
    agent: subprocess.Popen[str]
    workdir: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    for component in (COLLECTOR, PROMETHEUS, CHROMIUM):
        require(component)
    work = tmp_path_factory.mktemp("browser")
    port = free_port()
    with Pipeline(work / "pipeline", alertmanager=False) as p:
        with api_process(work, port, p.prometheus_url, p.collector_health_url, p.agent_env()):
            agent = subprocess.Popen(
                agent_argv(10, 12, 2, 0.1, ["--seed", "23", "--fail", "intelligence=0.2"]),
                cwd=REPO, env={**os.environ, **p.agent_env(),
                               "OTEL_SERVICE_NAME": AGENT_SERVICE_NAME},
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                p.wait_for("sum(cugar_executions_total)",
                           lambda r: bool(r) and value(r) >= 10, 60)
                yield Live(p, f"http://127.0.0.1:{port}/dashboard?window=10m", agent, work)
            finally:
                agent.terminate()
                agent.wait(timeout=60)


def chromium(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = work / f"chrome-{free_port()}"  # a fresh profile per run
    result = subprocess.run([str(require(CHROMIUM)), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args],
                            capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class Values(HTMLParser):
    """Rendered numbers: every element with an id and a data-value, plus the body's state."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.bar_labels: set[str] = set()
        self.ids: set[str] = set()
        self.degraded: dict[str, str] = {}  # the banner's components -> since (RFC 3339)
        self.segments: dict[str, str] = {}  # history lines -> their number of drawn stretches

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if "id" in a:
            self.ids.add(a["id"])
        if "id" in a and "data-value" in a:
            self.values[a["id"]] = a["data-value"]
        if "data-label" in a:
            self.bar_labels.add(a["data-label"])
        if "data-component" in a:
            self.degraded[a["data-component"]] = a.get("data-since", "")
        if "id" in a and "data-segments" in a:
            self.segments[a["id"]] = a["data-segments"]


def render(live: Live) -> Values:
    dom = chromium(live.workdir, "--dump-dom", live.page_url).stdout
    page = Values()
    page.feed(dom)
    assert page.body.get("data-state") == "live", f"page did not render live data:\n{dom[-3000:]}"
    assert int(page.body["data-polls"]) >= 2
    return page


def test_live_numbers_render_and_move_with_the_workload(live: Live) -> None:
    first = render(live)
    executions = int(first.values["executions-total"])
    assert executions >= 10
    assert 0.0 <= float(first.values["success-rate"]) <= 1.0
    assert float(first.values["error-rate"]) == pytest.approx(1 - float(first.values["success-rate"]))
    assert float(first.values["latency-p95"]) > 0
    assert 0 < float(first.values["budget-utilization"]) < 2
    assert set(catalogue.DOMAINS) <= first.bar_labels
    # The alerts area rendered: a count of listed alerts, or the "no alerts firing" line.
    assert (int(first.values["alerts-list"]) == 0) == ("alerts-none" in first.ids)
    live.pipeline.wait_for("sum(cugar_executions_total)",
                           lambda r: bool(r) and value(r) > executions + 10, 60)
    second = render(live)
    assert int(second.values["executions-total"]) > executions


def _history(live: Live) -> dict:
    api = live.page_url.split("/dashboard")[0]
    return httpx.get(f"{api}/dashboard", params={"window": "10m", "history": "true"},
                     headers={"Accept": "application/json"}, timeout=15).json()["history"]


def _drawn(history: dict) -> int:
    return sum(p["success_rate"] is not None for p in history["points"])


def test_the_chart_shows_the_windows_history_from_before_the_page_was_opened(live: Live) -> None:
    """The page opens on data made before it: its chart is the window's history from
    Prometheus (one point per 5 s over 10m), not just the page's own two polls; the time
    before the workload is a gap, not a line at 0."""
    wait_until(lambda: _drawn(_history(live)) >= 4, 60, interval=1,
               what="20 s of workload in the history")
    before = _drawn(_history(live))
    page = render(live)
    after = _drawn(_history(live))
    assert page.values["history"] == "120"
    drawn = int(page.values["history-success"])
    assert before - 1 <= drawn <= after + 1, (before, drawn, after)
    assert drawn > int(page.body["data-polls"])
    assert page.segments["history-success"] == "1"  # null before the workload: not drawn
    assert int(page.values["history-p95"]) == drawn


def test_screenshot(live: Live) -> None:
    shot = live.workdir / "dashboard.png"
    chromium(live.workdir, "--window-size=1280,1250", f"--screenshot={shot}", live.page_url)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1250)
    assert len(data) > 50_000  # a rendered page, not a blank canvas
    if os.environ.get("CUGAR_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_after_the_workload_the_page_shows_the_ground_truth(live: Live) -> None:
    out, _ = live.agent.communicate(timeout=120)
    assert live.agent.returncode == 0
    truth = json.loads(out)
    live.pipeline.wait_for("sum(cugar_executions_total)",
                           lambda r: bool(r) and value(r) == truth["executions"], 60)
    page = render(live)
    assert int(page.values["executions-total"]) == truth["executions"]
    assert float(page.values["success-rate"]) == truth["successful"] / truth["executions"]
    assert float(page.values["tool-success-rate"]) == pytest.approx(
        1 - truth["tool_errors"] / truth["tool_calls"])
    assert int(page.values["llm-calls"]) == truth["llm"]["calls"]
    assert float(page.values["llm-cost"]) == pytest.approx(truth["llm"]["cost_usd"], rel=1e-9)


def test_a_stopped_collector_is_named_in_a_banner_and_the_numbers_marked_partial(
        live: Live) -> None:
    """Runs after the ground-truth test (the workload is over); leaves the collector stopped."""
    ok = render(live)
    assert ok.body["data-status"] == "ok" and ok.body["data-partial"] == "false"
    assert ok.degraded == {}
    live.pipeline.process("collector").stop()
    api = live.page_url.split("/dashboard")[0]

    body: dict = {}

    def degraded() -> bool:
        body.update(httpx.get(f"{api}/dashboard", params={"window": "10m"},
                              headers={"Accept": "application/json"}, timeout=15).json())
        return body["status"] == "degraded"

    wait_until(degraded, 60, interval=0.5, what="/dashboard to say degraded")
    since = {d["component"]: d["since"] for d in body["degraded"]}
    page = render(live)
    assert page.body["data-status"] == "degraded" and page.body["data-partial"] == "true"
    assert page.degraded["collector"] == since["collector"]
    assert page.values["success-rate"] == "" and page.values["latency-p95"] == ""
    assert int(page.values["executions-total"]) == int(ok.values["executions-total"])
    if os.environ.get("CUGAR_DEGRADED_SCREENSHOT"):
        chromium(live.workdir, "--window-size=1280,1250",
                 f"--screenshot={os.environ['CUGAR_DEGRADED_SCREENSHOT']}", live.page_url)


def test_values_parser() -> None:
    page = Values()
    page.feed('<body data-state="live" data-polls="2"><div id="x" data-value="0.5">50%</div>'
              '<text data-label="territory">3</text></body>')
    assert page.values == {"x": "0.5"} and page.bar_labels == {"territory"}
    assert re.fullmatch(r"\d+", page.body["data-polls"])
