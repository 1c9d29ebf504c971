"""Lightweight spans for the agent API, emitted as ordinary OpenTelemetry SDK spans.

The SDK tracer costs ~20-40 us per span here (sampler, id generator, locks, bounded
attribute containers, internal self-metrics). The agent API knows its span shapes in
advance, so it builds the finished `ReadableSpan` directly (~2 us) and hands it to the same
span processor and exporters. Spans still join the ambient OpenTelemetry context: an
execution started inside a traced request becomes its child, and code running inside an
execution or tool call sees that span as current (W3C propagation works from there).

Timestamps come from one wall-clock anchor plus the monotonic clock, so durations stay
correct when the wall clock jumps.
"""

from __future__ import annotations

import os
import random
import time
from typing import Callable

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

_WALL_ANCHOR_NS = time.time_ns()
_MONO_ANCHOR_NS = time.perf_counter_ns()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_INTERNAL = SpanKind.INTERNAL

monotonic_ns = time.perf_counter_ns


def wall_ns(mono_ns: int) -> int:
    """Epoch nanoseconds for a monotonic reading."""
    return _WALL_ANCHOR_NS + (mono_ns - _MONO_ANCHOR_NS)


class FastSpan:
    """A span being recorded: plain fields, finished into a `ReadableSpan` by `end()`."""

    __slots__ = ("_tracer", "name", "context", "parent", "attributes", "events", "start_mono",
                 "status", "kind")

    def __init__(self, tracer: "FastTracer", name: str, context: SpanContext,
                 parent: SpanContext | None, attributes: dict, start_mono: int) -> None:
        self._tracer = tracer
        self.name = name
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.events: list[Event] = []
        self.start_mono = start_mono
        self.status = _UNSET
        self.kind = _INTERNAL  # CLIENT for LLM calls (set by the caller)

    def add_event(self, name: str, attributes: dict | None = None) -> None:
        self.events.append(Event(name, attributes, wall_ns(monotonic_ns())))

    def set_error(self, description: str | None) -> None:
        self.status = Status(StatusCode.ERROR, description)

    def child(self, name: str, attributes: dict, start_mono: int) -> "FastSpan":
        tracer = self._tracer
        ctx = SpanContext(self.context.trace_id, tracer.new_span_id(), False, _SAMPLED)
        return FastSpan(tracer, name, ctx, self.context, attributes, start_mono)

    def attach(self) -> object:
        """Make this span current in the OpenTelemetry context; returns the detach token."""
        return otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(self.context)))

    def end(self, end_mono: int) -> None:
        tracer = self._tracer
        tracer.ship(ReadableSpan(
            self.name, self.context, self.parent, tracer.resource, self.attributes, self.events,
            (), self.kind, None, self.status, wall_ns(self.start_mono), wall_ns(end_mono),
            tracer.scope))


def detach(token: object) -> None:
    otel_context.detach(token)


class FastTracer:
    """Starts `FastSpan`s: sampling decision at the local root, ids from a private RNG."""

    def __init__(self, resource: Resource, scope: InstrumentationScope, sampler: Sampler,
                 ship: Callable[[ReadableSpan], None]) -> None:
        self.resource = resource
        self.scope = scope
        self.ship = ship
        self._sampler = sampler
        # A private generator: agent code seeding `random` for determinism must not make
        # two processes produce the same trace ids. A forked child never uses this tracer:
        # the handle's fork hook (setup._abandon_in_forked_child) stops it recording and the
        # child builds its own handle (fresh seed).
        self._rng = random.Random(os.urandom(16))

    def new_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def start_root(self, name: str, attributes: dict, start_mono: int) -> FastSpan | None:
        """A span under the ambient OTel context (or a new trace); None when not sampled."""
        parent_ctx = otel_context.get_current()
        parent = trace.get_current_span(parent_ctx).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
        else:
            parent = None
            trace_id = self._rng.getrandbits(128) or 1
        result = self._sampler.should_sample(parent_ctx, trace_id, name, _INTERNAL, attributes)
        if not result.decision.is_sampled():
            return None
        ctx = SpanContext(trace_id, self.new_span_id(), False, _SAMPLED,
                          result.trace_state if result.trace_state else None)
        return FastSpan(self, name, ctx, parent, attributes, start_mono)
