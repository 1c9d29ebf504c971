"""POST /alerts/{severity} without a pipeline: Alertmanager's webhook payload is accepted,
logged once per alert and counted in /metrics; bad severities and payloads are a clear 422 and
count nothing else; the API key is required when set. Payloads follow Alertmanager's webhook
format (version 4) as its notifier sends it."""

from __future__ import annotations

import copy
import logging

import pytest
from fastapi.testclient import TestClient

from services.api.active_alerts import runbook_link
from services.api.alerts import SEVERITIES
from services.api.main import log_config
from tests.support import exposition
from tests.support.api import api_client, notification

KEY = "alert-receiver-key"


def samples(c: TestClient, headers: dict[str, str] | None = None) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value of the api_alert_ samples in the API's /metrics."""
    return exposition.samples(c.get("/metrics", headers=headers or {}).text, "api_alert_")


def counted(before: dict, after: dict) -> dict[tuple, float]:
    """Samples that changed, by how much."""
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


@pytest.mark.parametrize("severity", SEVERITIES)
def test_a_notification_is_accepted_and_counted(severity: str) -> None:
    with api_client() as c:
        before = samples(c)
        r = c.post(f"/alerts/{severity}", json=notification())
        after = samples(c)
    assert r.status_code == 200, r.text
    assert r.json() == {"severity": severity, "status": "firing", "alerts": 1}
    labels = (("severity", severity), ("status", "firing"))
    assert counted(before, after) == {("api_alert_notifications_total", labels): 1.0,
                                      ("api_alert_notification_alerts_total", labels): 1.0}


def test_every_alert_of_a_grouped_notification_is_counted_by_its_status() -> None:
    body = notification("resolved")
    firing = copy.deepcopy(notification("firing", domain="intelligence")["alerts"][0])
    body["alerts"] += [firing, copy.deepcopy(firing)]
    with api_client() as c:
        before = samples(c)
        assert c.post("/alerts/critical", json=body).status_code == 200
        after = samples(c)
    crit = ("severity", "critical")
    assert counted(before, after) == {
        ("api_alert_notifications_total", (crit, ("status", "resolved"))): 1.0,
        ("api_alert_notification_alerts_total", (crit, ("status", "resolved"))): 1.0,
        ("api_alert_notification_alerts_total", (crit, ("status", "firing"))): 2.0,
    }


def test_label_values_are_bounded_and_present_from_the_start() -> None:
    with api_client() as c:
        exposed = samples(c)
    series = set(exposed)
    assert series == (
        {(name, (("severity", s), ("status", st)))
         for name in ("api_alert_notifications_total", "api_alert_notification_alerts_total")
         for s in SEVERITIES for st in ("firing", "resolved")}
        | {("api_alert_notifications_rejected_total", (("reason", r),))
           for r in ("unknown_severity", "invalid_payload")})
    assert all(exposed[k] == 0 for k in series)


def test_each_alert_is_logged_once_as_a_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    body = notification()
    body["alerts"][0]["annotations"]["summary"] = 'rate "45%"\ninjected=line'
    resolved = notification("resolved", alertname="NoRecentExecutions", severity="info")
    with api_client() as c, caplog.at_level(logging.INFO, logger="services.api.alerts"):
        c.post("/alerts/warning", json=body)
        c.post("/alerts/info", json=resolved)
    records = [r for r in caplog.records if r.name == "services.api.alerts"]
    assert len(records) == 2
    firing, quiet = records
    assert firing.levelno == logging.WARNING and quiet.levelno == logging.INFO
    assert firing.alert == {
        "alertname": "HighErrorRate", "severity": "warning", "status": "firing",
        "summary": 'rate "45%"\ninjected=line', "runbook_url": "docs/runbooks.md#higherrorrate",
        "receiver": "warning-webhook", "starts_at": "2026-01-05T12:00:00.123456+00:00",
        "fingerprint": "4f2b9f4b3c1a2e7d"}
    line = firing.getMessage()
    assert "\n" not in line  # a hostile annotation cannot forge log lines
    assert line.startswith("alert alertname=HighErrorRate severity=warning status=firing ")
    assert 'summary="rate \\"45%\\"\\ninjected=line"' in line
    assert "runbook_url=docs/runbooks.md#higherrorrate" in line
    assert quiet.alert["status"] == "resolved" and quiet.alert["severity"] == "info"


@pytest.mark.parametrize("path", ["/alerts/page", "/alerts/CRITICAL", "/alerts/warning%20"])
def test_unknown_severity_is_a_clear_422(path: str) -> None:
    with api_client() as c:
        before = samples(c)
        r = c.post(path, json=notification())
        after = samples(c)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("unknown alert severity") and "default, critical, warning, info" in detail
    assert counted(before, after) == {
        ("api_alert_notifications_rejected_total", (("reason", "unknown_severity"),)): 1.0}


def _without(key: str) -> dict:
    body = notification()
    del body[key]
    return body


def _alert_with(**fields: object) -> dict:
    body = notification()
    body["alerts"][0].update(fields)
    return body


@pytest.mark.parametrize("kwargs, fragment", [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}},
     "not valid JSON"),
    ({"content": b"", "headers": {"Content-Type": "application/json"}}, "an empty body"),
    ({"content": b"alert!", "headers": {"Content-Type": "text/plain"}},
     "a body of another content type"),
    ({"json": [notification()]}, "a JSON list"),
    ({"json": {**notification(), "version": "3"}}, "version: Input should be '4'"),
    ({"json": _without("receiver")}, "receiver: Field required"),
    ({"json": {**notification(), "alerts": []}}, "alerts: List should have at least 1 item"),
    ({"json": _alert_with(status="burning")}, "alerts.0.status: Input should be 'firing' or "
                                              "'resolved'"),
    ({"json": _alert_with(labels={"severity": "warning"})}, "needs an alertname label"),
    ({"json": _alert_with(startsAt="yesterday")}, "alerts.0.startsAt"),
    ({"json": _alert_with(labels={"alertname": "X", "n": 1})}, "alerts.0.labels.n"),
])
def test_malformed_payload_is_a_clear_422_that_counts_nothing_else(kwargs: dict,
                                                                   fragment: str) -> None:
    with api_client() as c:
        before = samples(c)
        r = c.post("/alerts/warning", **kwargs)
        after = samples(c)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"], r.json()["detail"]
    assert counted(before, after) == {
        ("api_alert_notifications_rejected_total", (("reason", "invalid_payload"),)): 1.0}


def test_unknown_fields_from_newer_alertmanagers_are_ignored() -> None:
    body = notification()
    body["someFutureField"] = {"x": 1}
    body["alerts"][0]["silencedBy"] = []
    with api_client() as c:
        assert c.post("/alerts/warning", json=body).status_code == 200


def test_the_api_key_is_required_when_set() -> None:
    with api_client(api_key=KEY) as c:
        missing = c.post("/alerts/critical", json=notification())
        wrong = c.post("/alerts/critical", json=notification(),
                       headers={"Authorization": "Bearer nope"})
        # Authentication comes before validation: no hint about valid paths without the key.
        unknown = c.post("/alerts/page", json=notification())
        right = c.post("/alerts/critical", json=notification(),
                       headers={"Authorization": f"Bearer {KEY}"})
        after = samples(c, {"X-API-Key": KEY})
    assert missing.status_code == 401 and "API key required" in missing.json()["detail"]
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert unknown.status_code == 401
    assert right.status_code == 200
    firing = (("severity", "critical"), ("status", "firing"))
    assert after[("api_alert_notifications_total", firing)] == 1.0
    assert after[("api_alert_notifications_rejected_total", (("reason", "unknown_severity"),))] == 0


def test_openapi_documents_the_receiver() -> None:
    with api_client() as c:
        schema = c.get("/openapi.json").json()
        index = c.get("/").json()
    op = schema["paths"]["/alerts/{severity}"]["post"]
    assert op["parameters"][0]["schema"]["enum"] == list(SEVERITIES)
    body = schema["components"]["schemas"]["WebhookNotification"]
    assert {"version", "status", "receiver", "alerts"} <= set(body["required"])
    assert "groupKey" in body["properties"]  # the wire names, not Python's
    assert "POST /alerts/{severity}" in index["endpoints"]


def test_uvicorn_logging_keeps_the_alert_lines() -> None:
    """uvicorn configures only its own loggers; ours are added so INFO lines are not lost."""
    config = log_config()
    assert config["loggers"]["services.api"]["level"] == "INFO"
    assert config["loggers"]["services.api"]["handlers"] == ["default"]
    assert "uvicorn.error" in config["loggers"]


@pytest.mark.parametrize("annotation, link", [
    ("docs/runbooks.md#higherrorrate", "/runbooks#higherrorrate"),
    ("../docs/runbooks.md#scrapetargetdown", "/runbooks#scrapetargetdown"),
    ("docs/runbooks.md", "/runbooks"),
    ("https://wiki.example/runbooks/x", "https://wiki.example/runbooks/x"),
    ("", None),
    (None, None),
])
def test_runbook_links_point_at_the_apis_runbooks_page(annotation: str | None,
                                                       link: str | None) -> None:
    assert runbook_link(annotation) == link
