"""End to end: the real pipeline's Alertmanager delivers its notifications to the API's
POST /alerts/<severity> (with the API key, from a credentials file as alertmanager.yml
documents), the API logs and counts every one of them, and /dashboard (JSON and the live page)
lists the alerts Prometheus has firing. Alert `for:` durations are shortened to 1s; a
high-error workload makes the pages fire."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from otel import catalogue
from services.stack.components import CHROMIUM
from services.stack.pipeline import Pipeline
from services.stack.process import ManagedProcess, free_port, wait_until
from services.stack.run import api_process
from tests.conftest import require_pipeline_components
from tests.support import require
from tests.support.exposition import samples
from tests.test_browser_dashboard import chromium

pytestmark = pytest.mark.integration

KEY = "alertmanager-to-api-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Stack:
    pipeline: Pipeline
    api: ManagedProcess
    api_url: str
    workdir: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_pipeline_components()
    work = tmp_path_factory.mktemp("api-alerts")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    pipeline = Pipeline(work / "pipeline", webhook_base_url=api_url, api_key=KEY,
                        rule_for_override="1s", alert_group_wait="1s")
    # The API is up before Alertmanager starts, so no delivery fails for want of a receiver.
    with api_process(work, port, pipeline.prometheus_url, pipeline.collector_health_url,
                     pipeline.agent_env(), api_key=KEY) as api, pipeline:
        yield Stack(pipeline, api, api_url, work)


def api_counts(stack: Stack) -> dict[tuple, float]:
    r = httpx.get(f"{stack.api_url}/metrics", headers=AUTH, timeout=10)
    r.raise_for_status()
    return samples(r.text, "api_alert_")


def alerts_counted(stack: Stack, severity: str, status: str = "firing") -> float:
    labels = (("severity", severity), ("status", status))
    return api_counts(stack)[("api_alert_notification_alerts_total", labels)]


def log_lines(stack: Stack, alertname: str) -> list[str]:
    return [line for line in stack.api.log_path.read_text(errors="replace").splitlines()
            if re.search(rf"\balert alertname={alertname} ", line)]


def dashboard(url: str, headers: dict[str, str] | None = None) -> dict:
    r = httpx.get(f"{url}/dashboard", params={"window": "5m"},
                  headers={"Accept": "application/json", **(headers or {})}, timeout=15)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_idle_pipeline_notifies_the_api_of_no_recent_executions(stack: Stack) -> None:
    wait_until(lambda: alerts_counted(stack, "info") >= 1, 60, interval=0.3,
               what="NoRecentExecutions counted by the API at /alerts/info")
    (line, *_) = log_lines(stack, "NoRecentExecutions")
    assert "INFO" in line and "severity=info status=firing" in line
    assert "runbook_url=docs/runbooks.md#norecentexecutions receiver=info-webhook" in line
    paged = {k: v for k, v in api_counts(stack).items()
             if k[0] == "api_alert_notification_alerts_total" and ("severity", "info") not in k[1]}
    assert not any(paged.values()), f"an idle service paged: {paged}"


def test_a_failing_workload_reaches_the_api_per_severity(
        stack: Stack, run_agent: Callable[..., dict]) -> None:
    fail_everything = [arg for domain in catalogue.DOMAINS for arg in ("--fail", f"{domain}=0.9")]
    truth = run_agent(stack.pipeline, "--executions", "80", "--processes", "2", "--seed", "5",
                      "--time-scale", "0", *fail_everything,
                      env={"OTEL_SERVICE_NAME": "cugar-failing"})
    assert truth["failed"] / truth["executions"] > 0.20, truth
    wait_until(lambda: bool(log_lines(stack, "HighErrorRate"))
               and bool(log_lines(stack, "CriticalSuccessRate")), 90, interval=0.3,
               what="HighErrorRate and CriticalSuccessRate delivered to the API")
    assert alerts_counted(stack, "warning") >= 1 and alerts_counted(stack, "critical") >= 1
    high = log_lines(stack, "HighErrorRate")[0]
    assert "WARNING" in high and "severity=warning status=firing" in high
    assert 'summary="CUGAr execution error rate above 10% (' in high
    assert "runbook_url=docs/runbooks.md#higherrorrate receiver=warning-webhook" in high
    critical = log_lines(stack, "CriticalSuccessRate")[0]
    assert "WARNING" in critical and "receiver=critical-webhook" in critical
    # Inhibited by CriticalSuccessRate (same family): Alertmanager never sends it.
    assert not log_lines(stack, "LowSuccessRate")


def _alertmanager_requests(stack: Stack) -> tuple[float, float]:
    """Webhook requests Alertmanager made and those that failed, over all receivers (its
    counters carry receiver_name)."""
    text = httpx.get(f"{stack.pipeline.alertmanager_url}/metrics", timeout=10).text
    s = samples(text, "alertmanager_notification_requests")

    def total(name: str) -> float:
        return sum(v for (n, labels), v in s.items()
                   if n == name and ("integration", "webhook") in labels)

    return (total("alertmanager_notification_requests_total"),
            total("alertmanager_notification_requests_failed_total"))


def test_every_delivery_alertmanager_made_was_accepted_and_counted(stack: Stack) -> None:
    """Alertmanager's own count of webhook requests equals the API's count of notifications:
    none failed (the key from the credentials file was accepted), none was lost."""
    seen: dict[str, object] = {}

    def agree() -> bool:
        sent, failed = _alertmanager_requests(stack)
        counts = api_counts(stack)
        received = sum(v for k, v in counts.items() if k[0] == "api_alert_notifications_total")
        rejected = sum(v for k, v in counts.items()
                       if k[0] == "api_alert_notifications_rejected_total")
        seen.update(sent=sent, failed=failed, received=received, rejected=rejected)
        return received == sent - failed

    wait_until(agree, 30, interval=0.3, what="the API's count to match Alertmanager's")
    assert seen["failed"] == 0 and seen["rejected"] == 0, seen
    assert seen["received"] >= 3, seen  # info, warning and critical at least


def _dashboard_view(items: list[dict]) -> dict[tuple, tuple[str, str | None]]:
    """(alert labels) -> (state, summary), from /dashboard's items."""
    return {tuple(sorted({**a["labels"], "alertname": a["alertname"],
                          **({"severity": a["severity"]} if a["severity"] else {})}.items())):
            (a["state"], a["summary"]) for a in items}


def _prometheus_view(alerts: list[dict]) -> dict[tuple, tuple[str, str | None]]:
    """The same from Prometheus' /api/v1/alerts (annotations rendered by Prometheus)."""
    return {tuple(sorted(a["labels"].items())): (a["state"], a["annotations"].get("summary"))
            for a in alerts}


def test_dashboard_lists_the_alerts_prometheus_has_active(stack: Stack) -> None:
    """Same alerts, states and summary texts as Prometheus' own view (the API renders the
    annotations itself, at `end`; after the workload the values stand still, so they agree)."""
    state: dict[str, object] = {}

    def consistent() -> bool:
        state["prometheus"] = prometheus = _prometheus_view(stack.pipeline.alerts())
        state["dashboard"] = d = dashboard(stack.api_url, AUTH)
        return _dashboard_view(d["alerts"]["items"]) == prometheus

    try:
        wait_until(consistent, 30, interval=0.5, what="/dashboard alerts to match Prometheus")
    except TimeoutError:
        pytest.fail(f"dashboard {_dashboard_view(state['dashboard']['alerts']['items'])}\n"
                    f"Prometheus {state['prometheus']}")
    alerts = state["dashboard"]["alerts"]
    firing = [a for a in alerts["items"] if a["state"] == "firing"]
    items = {a["alertname"]: a for a in firing}
    assert {"HighErrorRate", "CriticalSuccessRate", "LowSuccessRate"} <= set(items)
    assert alerts["firing"] == len(firing)
    assert alerts["pending"] == len(alerts["items"]) - len(firing)
    # One entry per alert: DomainErrors fires once per failing domain, told apart by label.
    domains = {a["labels"]["domain"] for a in firing if a["alertname"] == "DomainErrors"}
    assert len(domains) == sum(a["alertname"] == "DomainErrors" for a in firing)
    high = items["HighErrorRate"]
    assert high["severity"] == "warning" and high["labels"] == {"family": "error_rate"}
    assert high["runbook_url"] == "/runbooks#higherrorrate"
    assert high["summary"].startswith("CUGAr execution error rate above 10% (")
    end = datetime.fromisoformat(state["dashboard"]["time_range"]["end"])
    assert datetime.fromisoformat(high["since"]) <= end
    # Sorted for reading: firing before pending, critical before warning.
    order = [(a["state"], a["severity"]) for a in alerts["items"]]
    assert order.index(("firing", "critical")) < order.index(("firing", "warning"))


def test_dashboard_alerts_at_an_end_before_the_workload(stack: Stack) -> None:
    """`end` applies to the alerts too: before the failing workload nothing paged."""
    first_page = min(datetime.fromisoformat(a["since"]).timestamp()
                     for a in dashboard(stack.api_url, AUTH)["alerts"]["items"]
                     if a["severity"] in ("warning", "critical"))
    r = httpx.get(f"{stack.api_url}/dashboard",
                  params={"window": "5m", "end": f"{first_page - 1:.3f}"},
                  headers={"Accept": "application/json", **AUTH}, timeout=15)
    assert r.status_code == 200, r.text
    before = r.json()["alerts"]
    assert all(a["severity"] == "info" for a in before["items"]), before


class AlertItems(HTMLParser):
    """The rendered alerts list: each <li data-alertname> with the links inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict] = []
        self.count: str | None = None
        self._current: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if a.get("id") == "alerts-list":
            self.count = a.get("data-value")
        if tag == "li" and "data-alertname" in a:
            self._current = {**a, "links": []}
            self.items.append(self._current)
        elif tag == "a" and self._current is not None:
            self._current["links"].append(a.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._current = None


def test_the_live_page_shows_the_alerts_with_runbook_links(stack: Stack) -> None:
    require(CHROMIUM)
    port = free_port()
    p = stack.pipeline
    # A second API without a key: headless Chromium cannot answer the Basic auth prompt.
    with api_process(stack.workdir, port, p.prometheus_url, p.collector_health_url, {},
                     name="api-open"):
        url = f"http://127.0.0.1:{port}"
        expected = dashboard(url)["alerts"]
        page = AlertItems()
        page.feed(chromium(stack.workdir, "--dump-dom", f"{url}/dashboard?window=5m").stdout)
        runbooks = httpx.get(f"{url}/runbooks", timeout=10).text
    assert page.count is not None and int(page.count) == len(page.items) >= 1
    shown = {item["data-alertname"]: item for item in page.items}
    assert {a["alertname"] for a in expected["items"] if a["state"] == "firing"} <= set(shown)
    high = shown["HighErrorRate"]
    assert (high["data-state"], high["data-severity"]) == ("firing", "warning")
    assert high["links"] == ["/runbooks#higherrorrate"]
    assert shown["CriticalSuccessRate"]["data-severity"] == "critical"
    assert 'id="higherrorrate"' in runbooks
