"""The API's own /metrics for Prometheus' `api` scrape job.

Per-process numbers about this process (runtime, upstream query health). The fleet-wide
CUGAr metrics live in Prometheus, fed by the collector; they are not re-exported here.
"""

from __future__ import annotations

import logging

from fastapi import Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, GCCollector,
                               Histogram, PlatformCollector, ProcessCollector, generate_latest)

log = logging.getLogger(__name__)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.queries = Counter("api_prometheus_queries", "PromQL queries the API sent, by outcome.",
                               ("outcome",), registry=self.registry)
        self.query_seconds = Histogram("api_prometheus_query_duration_seconds",
                                       "Round-trip time of one PromQL query.",
                                       registry=self.registry)

    def observe_query(self, outcome: str, seconds: float) -> None:
        self.queries.labels(outcome=outcome).inc()
        self.query_seconds.observe(seconds)

    def response(self) -> Response:
        """The exposition, or HTTP 500 when collecting fails: a scrape must see the failure
        (the seed answered 200 with an error text, which Prometheus stored as healthy)."""
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # noqa: BLE001 - any collector bug must become a 500
            log.exception("metrics collection failed")
            return Response(f"metrics collection failed: {type(exc).__name__}\n", status_code=500,
                            media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)
