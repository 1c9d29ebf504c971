"""The API under test in-process, and the Alertmanager notification the alert tests send."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.metrics import ApiMetrics
from services.api.settings import Settings
from services.stack.process import free_port


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def api_client(*, metrics: ApiMetrics | None = None, tracer_provider: Any = None,
               clock: Callable[[], float] = time.monotonic, **overrides: Any) -> TestClient:
    """The API without telemetry, Prometheus a closed port and no collector or trace backend to
    check, unless
    `overrides` (Settings fields) say otherwise. `clock` drives the rate limiter."""
    fields = {"telemetry": False, "prometheus_url": closed_url(), "collector_health_url": None,
              "trace_backend_url": None, **overrides}
    settings = dataclasses.replace(Settings(), **fields)
    return TestClient(create_app(settings, metrics=metrics, tracer_provider=tracer_provider,
                                 clock=clock))


def notification(status: str = "firing", **alert_labels: str) -> dict:
    """An Alertmanager webhook notification (version 4) of one alert, as its notifier sends it."""
    labels = {"alertname": "HighErrorRate", "severity": "warning", "family": "error_rate",
              **alert_labels}
    return {
        "version": "4", "groupKey": '{}/{severity="warning"}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0, "status": status, "receiver": "warning-webhook",
        "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels,
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status, "labels": labels,
            "annotations": {"summary": "CUGAr execution error rate above 10% (45%)",
                            "description": "45% of agent executions failed",
                            "runbook_url": "docs/runbooks.md#higherrorrate"},
            "startsAt": "2026-01-05T12:00:00.123456789Z",
            "endsAt": ("0001-01-01T00:00:00Z" if status == "firing"
                       else "2026-01-05T12:10:00Z"),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=cugar_error_rate",
            "fingerprint": "4f2b9f4b3c1a2e7d",
        }],
    }
