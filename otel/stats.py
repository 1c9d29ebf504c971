"""Counted losses: what telemetry dropped or failed to send, visible via `tel.stats()` and logs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("otel")

COUNTERS = (
    "spans_exported",        # spans the exporter accepted
    "spans_dropped",         # spans discarded because the export queue was full or shut down
    "spans_export_failed",   # spans in batches the exporter could not deliver
    "span_exports_failed",   # failed span export calls
    "metric_exports",        # metric export calls that succeeded
    "metric_exports_failed", # failed metric export calls
    "internal_errors",       # telemetry bugs swallowed so agent code never sees them
    "invalid_input",         # bad values passed to the API (ignored, never raised)
)


class Stats:
    """Thread-safe loss counters plus a rate-limited WARNING log per kind of loss.

    `on_drop(reason, n)` is told of every discarded span (`loss(..., reason=...)`): the
    telemetry handle counts them in the catalogue's `cugar.telemetry.dropped`, so that what
    `snapshot()` shows reaches Prometheus too.
    """

    def __init__(self, warn_interval_s: float = 30.0,
                 on_drop: Callable[[str, int], None] | None = None) -> None:
        self.on_drop = on_drop
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._warn_interval_s = warn_interval_s
        self._last_warned: dict[str, float] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def loss(self, name: str, n: int, why: str, reason: str | None = None) -> None:
        """Count a loss and log it, at most once per interval per kind; a `reason`
        (catalogue.DROP_REASONS) marks discarded spans, also reported to `on_drop`."""
        if reason is not None and self.on_drop is not None:
            self.on_drop(reason, n)
        now = time.monotonic()
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n
            last = self._last_warned.get(name)
            if last is not None and now - last < self._warn_interval_s:
                return
            self._last_warned[name] = now
            total = self._counts[name]
        log.warning("telemetry loss: %s (+%d, %d so far): %s", name, n, total, why)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class RepeatFilter(logging.Filter):
    """Lets each distinct message template through at most once per interval.

    The OTLP exporters log every failed attempt; with the collector down that would be a
    line every few seconds forever. Our own loss counters already say what was lost.
    """

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.msg)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = now
        return True


EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


def quiet_exporter_logs() -> None:
    """Install one RepeatFilter on the OTLP exporters' loggers (idempotent)."""
    for name in EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())
