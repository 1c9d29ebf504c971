"""What the agent API records into: metric store, label guards, tracer, privacy settings."""

from __future__ import annotations

import json
import logging
from typing import Any

from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
)

from otel import catalogue, pricing, privacy
from otel.cardinality import BoundedSet, ClosedSet
from otel.config import Settings
from otel.metrics import AgentMetrics
from otel.spans import FastSpan, FastTracer
from otel.stats import Stats

log = logging.getLogger("otel")

_MAX_DESCRIPTION_CHARS = 256


class Core:
    def __init__(self, settings: Settings, metrics: AgentMetrics, tracer: FastTracer | None,
                 stats: Stats) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.stats = stats
        self.capture_content = settings.capture_content
        self.capture_mode = settings.capture_mode
        self.content_max_chars = settings.content_max_chars
        self.clean_text = privacy.TextRedactor()
        self.profiles = ClosedSet(settings.profiles)
        self.domains = ClosedSet(catalogue.DOMAINS)
        self.side_effects = ClosedSet(catalogue.SIDE_EFFECTS)
        self.tools = BoundedSet(settings.max_tools, self.clean_text)
        self.error_types = BoundedSet(settings.max_error_types, self.clean_text)
        self.llm_operations = ClosedSet(catalogue.LLM_OPERATIONS)
        self.providers = ClosedSet(catalogue.LLM_PROVIDERS)
        self.models = BoundedSet(settings.max_models, self.clean_text)
        self.prices = pricing.PriceTable(settings.llm_prices)

    # -- privacy helpers ------------------------------------------------------------------------
    def name(self, value: Any) -> str:
        """A name as it may appear in a span (redacted), or "unknown" when not a string."""
        return self.clean_text(value) if isinstance(value, str) and value else "unknown"

    def redact(self, attributes: dict[str, Any]) -> dict[str, Any]:
        return privacy.redact_attributes(attributes)

    def capture(self, value: Any) -> str:
        return privacy.capture(value, self.content_max_chars)

    def capture_messages(self, goal: Any) -> str:
        """The goal as GenAI input messages (JSON), redacted and truncated."""
        text = privacy.capture(goal, self.content_max_chars)
        return json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}],
                          ensure_ascii=False)

    def record_exception(self, span: FastSpan, exc: BaseException) -> None:
        """An `exception` event plus the error status "Type: message" (redacted once)."""
        kind = type(exc).__name__
        message = privacy.redact_text(str(exc))
        span.add_event("exception", {
            EXCEPTION_TYPE: kind,
            EXCEPTION_MESSAGE: privacy.truncate(message, _MAX_DESCRIPTION_CHARS),
        })
        span.set_error(privacy.truncate(f"{kind}: {message}", _MAX_DESCRIPTION_CHARS))

    # -- problems never reach agent code ------------------------------------------------------
    def internal_error(self, where: str) -> None:
        self.stats.loss("internal_errors", 1, f"telemetry error in {where} (see debug log)")
        log.debug("telemetry error in %s", where, exc_info=True)

    def invalid_input(self, message: str) -> None:
        self.stats.loss("invalid_input", 1, message)
