"""End to end, on the real Prometheus and Alertmanager: a page is not lost when Alertmanager goes
down while it fires, and a receiver that keeps failing is counted and alerted on through a
receiver of its own (and on /dashboard), so the page never silently vanishes.

The webhook receiver is a loopback HTTP server in the test; every Alertmanager receiver points
at it and the test chooses which receivers it answers with HTTP 500. Alert `for:` durations are
shortened to 1s (the promtool tests cover the real ones); the expressions are the repository's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from otel import catalogue
from services.monitoring import queries, tunables
from services.stack.pipeline import Pipeline
from services.stack.process import free_port, wait_until
from services.stack.run import api_process
from tests.conftest import require_pipeline_components
from tests.support.exposition import samples
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

DELIVERY_RECEIVER = "alert-delivery-webhook"
PAGING_RECEIVERS = {"default-webhook", "critical-webhook", "warning-webhook", "info-webhook"}


def _total(p: Pipeline, promql: str) -> float:
    return sum(float(r["value"][1]) for r in p.query(promql))


def _firing_in_prometheus(p: Pipeline, name: str) -> list[dict]:
    return [a for a in p.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    """Starts out answering 500 to every paging receiver (the first test); the delivery
    receiver always gets 200."""
    with WebhookReceiver() as receiver:
        receiver.failing = set(PAGING_RECEIVERS)
        yield receiver


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory,
             webhook: WebhookReceiver) -> Iterator[Pipeline]:
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp("alert-delivery"), webhook_url=webhook.url,
                  rule_for_override="1s", alert_group_wait="1s", jaeger=False) as p:
        yield p


# --- a receiver that keeps failing ----------------------------------------------------------

def test_a_receiver_that_keeps_failing_is_counted_and_alerted_on(
        pipeline: Pipeline, webhook: WebhookReceiver,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every paging receiver answers 500: the idle pipeline's NoRecentExecutions notice never
    gets through to info-webhook. Alertmanager counts the failures, Prometheus scrapes them,
    AlertmanagerFailedToSendNotifications fires naming the receiver and reaches the delivery
    receiver; /dashboard lists it."""
    p = pipeline
    name = "AlertmanagerFailedToSendNotifications"
    info = f'{tunables.ALERTMANAGER_SELECTOR}, receiver_name="info-webhook"'
    failed = queries.select_name(queries.AM_NOTIFICATIONS_FAILED, info)
    p.wait_for(f"sum({failed})", lambda r: bool(r) and float(r[0]["value"][1]) > 0, 60)
    assert _total(p, queries.select_name(queries.AM_REQUESTS_FAILED, info)) > 0
    assert webhook.refused["info-webhook"] > 0

    wait_until(lambda: bool(webhook.firing(name)), 90, interval=0.2,
               what=f"{name} at the {DELIVERY_RECEIVER} receiver")
    receiver, alert = webhook.firing(name)[0]
    assert receiver == DELIVERY_RECEIVER
    labels = alert["labels"]
    assert (labels["receiver_name"], labels["integration"], labels["reason"]) == (
        "info-webhook", "webhook", "serverError")
    assert (labels["severity"], labels["family"]) == ("critical", tunables.ALERT_DELIVERY_FAMILY)
    assert alert["annotations"]["summary"].startswith(
        "Alertmanager cannot deliver to receiver info-webhook (webhook, ")
    # The page itself never got out: nothing but the delivery receiver's alerts was accepted.
    assert {r for r, _ in webhook.alerts()} == {DELIVERY_RECEIVER}
    assert not webhook.firing("NoRecentExecutions")

    # /dashboard reads Prometheus, not Alertmanager: the failing receiver cannot hide it.
    port = free_port()
    with api_process(tmp_path_factory.mktemp("failing-receiver-api"), port, p.prometheus_url,
                     p.collector_health_url, {}):
        r = httpx.get(f"http://127.0.0.1:{port}/dashboard", params={"window": "5m"},
                      headers={"Accept": "application/json"}, timeout=15)
    assert r.status_code == 200, r.text
    items = {a["alertname"]: a for a in r.json()["alerts"]["items"] if a["state"] == "firing"}
    assert {name, "NoRecentExecutions"} <= set(items), sorted(items)
    shown = items[name]
    assert shown["severity"] == "critical"
    assert shown["labels"]["receiver_name"] == "info-webhook"
    assert shown["runbook_url"] == f"/runbooks#{name.lower()}"


# --- Alertmanager down while an alert fires, then back -------------------------------------

def test_a_page_that_fires_while_alertmanager_is_down_arrives_once_it_is_back(
        pipeline: Pipeline, webhook: WebhookReceiver, run_agent: Callable[..., dict]) -> None:
    """Runs after the test above: the receivers answer again, Alertmanager delivers the
    NoRecentExecutions notice it kept retrying; then it is stopped while HighErrorRate starts
    firing, and started again."""
    p = pipeline
    webhook.failing.clear()
    wait_until(lambda: bool(webhook.firing("NoRecentExecutions")), 60, interval=0.2,
               what="NoRecentExecutions at the webhook once its receiver answers")
    alertmanager = p.process("alertmanager")
    alertmanager.stop()

    fail_everything = [a for d in catalogue.DOMAINS for a in ("--fail", f"{d}=0.9")]
    truth = run_agent(p, "--executions", "60", "--processes", "1", "--seed", "8",
                      "--time-scale", "0", *fail_everything,
                      env={"OTEL_SERVICE_NAME": "cugar-failing"})
    assert truth["failed"] / truth["executions"] > 0.10, truth
    wait_until(lambda: bool(_firing_in_prometheus(p, "HighErrorRate")), 60, interval=0.2,
               what="HighErrorRate firing in Prometheus while Alertmanager is down")
    # Prometheus counts every alert it could not hand over (no retry: each resend is a new try).
    errors = f"sum({queries.prometheus(queries.PROM_NOTIFICATIONS_ERRORS)})"
    p.wait_for(errors, lambda r: bool(r) and float(r[0]["value"][1]) > 0, 30)
    p.wait_for(f"sum({queries.prometheus(queries.PROM_NOTIFICATIONS_DROPPED)})",
               lambda r: bool(r) and float(r[0]["value"][1]) > 0, 30)
    # ... and its alert about it fires (it cannot be delivered now; /dashboard shows it).
    wait_until(lambda: bool(_firing_in_prometheus(
        p, "PrometheusErrorSendingAlertsToAnyAlertmanager")), 60, interval=0.2,
        what="PrometheusErrorSendingAlertsToAnyAlertmanager firing in Prometheus")
    assert not webhook.firing("HighErrorRate")

    back = time.monotonic()
    alertmanager.start()  # the same storage directory, as compose's volume keeps it
    wait_until(lambda: bool(webhook.firing("HighErrorRate")), 60, interval=0.1,
               what="HighErrorRate at the webhook after Alertmanager came back")
    print(f"HighErrorRate delivered {time.monotonic() - back:.1f}s after Alertmanager's restart "
          f"(resend delay {p.evaluation_interval}, group_wait 1s)")
    receiver, alert = webhook.firing("HighErrorRate")[0]
    assert receiver == "warning-webhook" and alert["labels"]["severity"] == "warning"
    # The alert about the outage reaches the delivery receiver once there is one to reach.
    wait_until(lambda: bool(webhook.firing("PrometheusErrorSendingAlertsToAnyAlertmanager")),
               60, interval=0.2, what="PrometheusErrorSendingAlertsToAnyAlertmanager delivered")
    assert {r for r, _ in webhook.firing("PrometheusErrorSendingAlertsToAnyAlertmanager")} == {
        DELIVERY_RECEIVER}


def test_the_alert_delivery_metrics_are_exposed(pipeline: Pipeline) -> None:
    """The series the alert-delivery rules read exist in the running programs."""
    p = pipeline
    for job, names in queries.ALERT_DELIVERY_METRICS.items():
        url = p.alertmanager_url if job == tunables.ALERTMANAGER_JOB else p.prometheus_url
        exposed = {name for name, _ in samples(httpx.get(f"{url}/metrics", timeout=10).text)}
        assert names <= exposed, f"{job} does not expose {sorted(names - exposed)}"
