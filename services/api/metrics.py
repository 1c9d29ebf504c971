"""The API's own /metrics for Prometheus' `cugar-api` scrape job.

Numbers about the API itself (upstream query health, alert notifications received, requests
refused by the rate limiter). The
fleet-wide CUGAr metrics live in Prometheus, fed by the collector; they are not re-exported here.

With several uvicorn workers (PROMETHEUS_MULTIPROC_DIR set, see worker_metrics) every worker
writes its values to that directory and /metrics sums all workers', so each scrape sees the
whole API whichever worker answers. The process/platform/GC collectors describe one process
and have no multiprocess form: they are exposed only in single-process mode.
"""

from __future__ import annotations

import logging
import os

from fastapi import Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, GCCollector,
                               Histogram, PlatformCollector, ProcessCollector, generate_latest,
                               values)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .alerts import REJECT_REASONS, SEVERITIES, STATUSES
from .worker_metrics import ENV_VAR, multiprocess_dir

log = logging.getLogger(__name__)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # prometheus_client chose per-process or file-backed values when it was imported.
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is None:
            self._exposed = self.registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        else:
            if values.ValueClass is values.MutexValue:
                raise RuntimeError(f"{ENV_VAR} was set after prometheus_client was imported: "
                                   f"this process's values would be missing from /metrics")
            # Scrapes read every worker's files; self.registry alone is this worker's share.
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=self.multiprocess_dir)
        self.queries = Counter("api_prometheus_queries", "PromQL queries the API sent, by outcome.",
                               ("outcome",), registry=self.registry)
        self.query_seconds = Histogram("api_prometheus_query_duration_seconds",
                                       "Round-trip time of one PromQL query.",
                                       registry=self.registry)
        # Alertmanager webhook notifications received at POST /alerts/{severity}. Label values
        # come from fixed sets (alerts.SEVERITIES x firing|resolved), pre-created at 0.
        self.alert_notifications = Counter(
            "api_alert_notifications", "Alertmanager webhook notifications accepted, by the "
            "receiver's severity and the notification's status.", ("severity", "status"),
            registry=self.registry)
        self.alert_notification_alerts = Counter(
            "api_alert_notification_alerts", "Alerts carried by accepted Alertmanager "
            "notifications, by the receiver's severity and the alert's status.",
            ("severity", "status"), registry=self.registry)
        self.alert_notifications_rejected = Counter(
            "api_alert_notifications_rejected", "Webhook notifications rejected with HTTP 422, "
            "by reason (unknown_severity, invalid_payload).", ("reason",),
            registry=self.registry)
        # Requests answered 429 by the rate limiter (ratelimit.py), by route template (e.g.
        # /dashboard, /alerts/{severity}): each client's budget is CUGAR_API_RATE_LIMIT per second
        # with bursts of CUGAR_API_RATE_BURST, per worker.
        self.rate_limited = Counter(
            "api_rate_limited_requests", "Requests refused with HTTP 429 because the client (its "
            "API key, else its address) exceeded its rate limit, by route template.", ("route",),
            registry=self.registry)
        for severity in SEVERITIES:
            for status in STATUSES:
                self.alert_notifications.labels(severity=severity, status=status)
                self.alert_notification_alerts.labels(severity=severity, status=status)
        for reason in REJECT_REASONS:
            self.alert_notifications_rejected.labels(reason=reason)

    def observe_query(self, outcome: str, seconds: float) -> None:
        self.queries.labels(outcome=outcome).inc()
        self.query_seconds.observe(seconds)

    def observe_alert_notification(self, severity: str, status: str,
                                   alert_statuses: list[str]) -> None:
        self.alert_notifications.labels(severity=severity, status=status).inc()
        for alert_status in alert_statuses:
            self.alert_notification_alerts.labels(severity=severity, status=alert_status).inc()

    def observe_rejected_notification(self, reason: str) -> None:
        self.alert_notifications_rejected.labels(reason=reason).inc()

    def observe_rate_limited(self, route: str) -> None:
        self.rate_limited.labels(route=route).inc()

    def worker_exiting(self) -> None:
        """Multiprocess bookkeeping for this worker's exit: drops its files of `live*` gauges
        (there are none yet; a gauge here must pick its multiprocess_mode). Its counter and
        histogram files stay in the sums: what it counted happened."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def response(self) -> Response:
        """The exposition, or HTTP 500 when collecting fails: a scrape must see the failure
        (the earlier system answered 200 with an error text, which Prometheus stored as healthy)."""
        try:
            if self.multiprocess_dir is not None and not os.path.isdir(self.multiprocess_dir):
                # The sums would silently be empty: every counter would seem to reset.
                raise FileNotFoundError(f"{self.multiprocess_dir} is gone")
            body = generate_latest(self._exposed)
        except Exception as exc:  # noqa: BLE001 - any collector bug must become a 500
            log.exception("metrics collection failed")
            return Response(f"metrics collection failed: {type(exc).__name__}\n", status_code=500,
                            media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)
