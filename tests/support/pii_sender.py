"""Sends every canary of tests/support/canaries.py into a collector, in one of two ways:

    python -m tests.support.pii_sender library   # our library (OTEL_* settings from the env)
    python -m tests.support.pii_sender plain     # the OpenTelemetry SDK alone, OTLP/gRPC

`library` puts them in goals, agent and tool names, tool arguments and results, error
messages and types, execution attributes, approval tools, events and spans of other
instrumentation; content capture follows OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
resource attributes come from OTEL_RESOURCE_ATTRIBUTES (the test fills them with canaries).
`plain` puts them in span names, attributes (strings, an int card number, arrays), events,
status messages, the resource, the instrumentation scope, metric descriptions and
metric data point attributes; its `cugar.domain.errors` points (domain = a canary) make the
DomainErrors alert fire, so the alert's labels and annotations are built from them.
Both log at DEBUG to stderr: the test searches that log too. Prints one JSON line when done.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from tests.support.canaries import BY_KEY_ONLY, CANARIES, text_with

SECRET_KEYS = ("password", "x-api-key", "sessionToken", "client_secret")


def _library() -> dict:
    from otel import setup_telemetry

    tel = setup_telemetry()
    agent = tel.agent
    everything = text_with()
    for canary in CANARIES:
        value = canary.value
        with agent.execution(profile=value, agent_name=f"agent {value}", goal=f"goal {value}",
                             budget_ceiling=1) as ex:
            ex.route_decision(domain=value)
            ex.set_attribute("customer.note", f"note {value}")
            ex.set_attribute(SECRET_KEYS[len(value) % len(SECRET_KEYS)], BY_KEY_ONLY)
            ex.spend(2)
            with ex.tool_call(f"lookup {value}", domain=value, side_effect=value,
                              arguments={"query": value, "password": BY_KEY_ONLY,
                                         "nested": {"api_key": BY_KEY_ONLY, "list": [value]}}
                              ) as call:
                call.set_result({"contact": value, "token": BY_KEY_ONLY})
            with ex.tool_call("send", domain="engagement") as call:
                call.error(value)
            try:
                with ex.tool_call("charge", domain="governance"):
                    raise ValueError(f"charge failed for {value}")
            except ValueError:
                pass
            with ex.approval(tool=value) as approval:
                approval.approve()
            ex.fail(f"failed because of {value}", error_type=value)
    # Spans of other instrumentation (an HTTP server, say) go through the same redaction.
    tracer = tel.tracer_provider.get_tracer("web")
    with tracer.start_as_current_span(f"GET /contact/{CANARIES[0].value}", attributes={
            "http.request.header.authorization": f"Bearer {BY_KEY_ONLY}",
            "url.query": f"q={everything}", "note": everything}) as span:
        span.add_event(f"handled {CANARIES[1].value}", {"message": everything})
        span.set_status(_error_status(f"failed for {everything}"))
    tel.force_flush()
    stats = tel.stats()
    tel.shutdown()
    return {"sender": "library", "stats": stats}


def _error_status(description: str):
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


def _plain() -> dict:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link

    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    everything = text_with()
    resource = Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME", "pii-plain"),
        **{f"canary.{i}": c.value for i, c in enumerate(CANARIES)},
        **{key: BY_KEY_ONLY for key in SECRET_KEYS},
    })
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint,
                                                                           insecure=True)))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=500)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

    tracer = tracer_provider.get_tracer(f"scope {CANARIES[0].value}", f"1.0 {CANARIES[2].value}")
    meter = meter_provider.get_meter(f"meter {CANARIES[0].value}", f"1.0 {CANARIES[2].value}")
    errors = meter.create_counter("cugar.domain.errors", unit="{call}",
                                  description=f"Tool call errors {CANARIES[0].value}")
    usage = meter.create_counter("cugar.domain.usage", unit="{call}")
    calls = meter.create_counter("pii.plain.calls", unit="{call}",
                                 description=f"calls of {everything}")
    with tracer.start_as_current_span("pii-root") as root:
        root_context = root.get_span_context()
    for i, canary in enumerate(CANARIES):
        value = canary.value
        digits = "".join(ch for ch in value if ch.isdigit())
        attributes = {"case": str(i), "note": f"note {value}", "values": [value, "x"],
                      **{key: BY_KEY_ONLY for key in SECRET_KEYS}}
        if canary.kind == "card":
            attributes["card.as.int"] = int(digits)
        # Link attributes are left out: no collector processor reads them (docs/privacy.md).
        with tracer.start_as_current_span(f"span {value}", attributes=attributes,
                                          links=[Link(root_context, {"case": str(i)})]) as span:
            span.add_event(f"event {value}", {"detail": value, "case": str(i)})
            span.set_status(_error_status(f"failed for {value}"))
        labels = {"case": str(i), "domain": value, "tool": f"tool {value}",
                  "error.type": value, **{key: BY_KEY_ONLY for key in SECRET_KEYS}}
        errors.add(10, labels)
        usage.add(10, labels)
        calls.add(1, {"case": str(i), "note": value})
    tracer_provider.force_flush()
    meter_provider.force_flush()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return {"sender": "plain", "spans": len(CANARIES) + 1}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    which = argv[0] if argv else "library"
    result = _library() if which == "library" else _plain()
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
