"""End to end: alerts travel from the rules through Prometheus and Alertmanager to a
webhook receiver (a tiny HTTP server in this test). `for:` durations are shortened to 1s here;
the real durations are covered by the promtool tests.

An idle pipeline sends only the NoRecentExecutions notice; a high-error workload makes
HighErrorRate reach the receiver, and the critical success-rate alert inhibits the warning one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel import catalogue
from services.stack.pipeline import Pipeline
from services.stack.prometheus_api import value
from services.stack.process import wait_until
from tests.conftest import require_pipeline_components
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

PAGES = {"LowSuccessRate", "CriticalSuccessRate", "HighErrorRate", "HighToolErrorRate",
         "DomainErrors", "HighLatencyP95", "HighLatencyP99"}


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def alerting_pipeline(tmp_path_factory: pytest.TempPathFactory,
                      webhook: WebhookReceiver) -> Iterator[Pipeline]:
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp("alerting"), webhook_url=webhook.url,
                  rule_for_override="1s", alert_group_wait="1s") as p:
        yield p


def test_idle_pipeline_only_sends_the_no_recent_executions_notice(
        alerting_pipeline: Pipeline, webhook: WebhookReceiver) -> None:
    wait_until(lambda: bool(webhook.firing("NoRecentExecutions")), 30,
               what="NoRecentExecutions at the webhook receiver")
    receiver, alert = webhook.firing("NoRecentExecutions")[0]
    assert receiver == "info-webhook"
    assert alert["labels"]["severity"] == "info"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#norecentexecutions"
    delivered = {a["labels"]["alertname"] for _, a in webhook.alerts()}
    assert not delivered & PAGES, f"an idle service paged: {delivered & PAGES}"


def test_high_error_workload_reaches_the_webhook(
        alerting_pipeline: Pipeline, webhook: WebhookReceiver,
        run_agent: Callable[..., dict]) -> None:
    fail_everything = [arg for domain in catalogue.DOMAINS for arg in ("--fail", f"{domain}=0.9")]
    truth = run_agent(alerting_pipeline, "--executions", "80", "--processes", "2", "--seed", "3",
                      "--time-scale", "0", *fail_everything,
                      env={"OTEL_SERVICE_NAME": "cugar-failing"})
    assert truth["failed"] / truth["executions"] > 0.10, truth["failed"]
    wait_until(lambda: bool(webhook.firing("HighErrorRate")), 60, interval=0.2,
               what="HighErrorRate at the webhook receiver")
    receiver, alert = webhook.firing("HighErrorRate")[0]
    assert receiver == "warning-webhook"
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#higherrorrate"
    assert "error rate above 10%" in alert["annotations"]["summary"]
    # Prometheus computed it from the workload: the error rate it alerted on is the real one.
    error_rate = alerting_pipeline.query("cugar_error_rate")
    assert value(error_rate) == pytest.approx(truth["failed"] / truth["executions"])


def test_critical_success_rate_inhibits_the_warning(
        alerting_pipeline: Pipeline, webhook: WebhookReceiver) -> None:
    """Runs after the failing workload above: both success-rate alerts fire in Prometheus,
    Alertmanager delivers the critical one and holds back the warning of the same family."""
    wait_until(lambda: bool(webhook.firing("CriticalSuccessRate")), 60, interval=0.2,
               what="CriticalSuccessRate at the webhook receiver")
    assert webhook.firing("CriticalSuccessRate")[0][0] == "critical-webhook"

    def low_is_inhibited() -> bool:
        held = [a for a in alerting_pipeline.alertmanager_alerts()
                if a["labels"]["alertname"] == "LowSuccessRate"]
        return bool(held) and all(a["status"]["inhibitedBy"] for a in held)

    wait_until(low_is_inhibited, 30, what="LowSuccessRate inhibited in Alertmanager")
    firing = {a["labels"]["alertname"] for a in alerting_pipeline.alerts()
              if a["state"] == "firing"}
    assert {"LowSuccessRate", "CriticalSuccessRate", "HighErrorRate"} <= firing


def test_rendered_alert_rules_keep_everything_but_the_duration(alerting_pipeline: Pipeline) -> None:
    rendered = (Path(alerting_pipeline.workdir) / "rules" / "cugar_alerts.yml").read_text()
    assert "for: 1s" in rendered and "for: 5m" not in rendered
    assert "runbook_url: docs/runbooks.md#higherrorrate" in rendered
