"""W3C trace context crosses services: an agent's tool call that calls the api over
HTTP produces an api server span in the agent's trace, parented by the tool-call span.

The api runs as a real uvicorn process exporting OTLP to a real loopback receiver; the agent
side records into in-memory exporters in this process. Only the `traceparent` header links them.
"""

from __future__ import annotations

import httpx
from opentelemetry import propagate

from otel.testing import OtlpReceiver, in_memory_telemetry
from services.stack.process import free_port, wait_until
from services.stack.run import api_process


def test_agent_tool_call_propagates_its_trace_to_the_api(tmp_path):
    receiver = OtlpReceiver("grpc")
    api = api_process(tmp_path, free_port(), prometheus_url=f"http://127.0.0.1:{free_port()}",
                      collector_health_url=None,
                      telemetry_env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                     "OTEL_BSP_SCHEDULE_DELAY": "100",
                                     "OTEL_METRICS_EXPORTER": "none"})
    tel, agent_spans, _ = in_memory_telemetry()
    try:
        api.start(timeout=60)
        base = api.ready_url.removesuffix("/health")
        with tel.agent.execution(profile="demo", agent_name="cugar-sales") as ex:
            with ex.tool_call("dashboard_lookup", domain="intelligence",
                              side_effect="read-only"):
                headers: dict[str, str] = {}
                propagate.inject(headers)
                # Prometheus is a closed port: the api answers 503, and still traces it.
                status = httpx.get(f"{base}/dashboard", headers=headers, timeout=30).status_code
        tel.force_flush()
        assert status == 503
        assert headers.get("traceparent"), "no W3C traceparent was injected from the tool call"

        tool_span = next(s for s in agent_spans.get_finished_spans()
                         if s.name == "execute_tool dashboard_lookup")
        trace_id = tool_span.context.trace_id.to_bytes(16, "big")
        assert format(tool_span.context.trace_id, "032x") == ex.trace_id

        def api_span_in_agent_trace():
            return [s for s in receiver.spans if s.trace_id == trace_id]

        wait_until(lambda: api_span_in_agent_trace(), timeout=30,
                   what="the api's server span in the agent's trace at the OTLP receiver")
        server = [s for s in api_span_in_agent_trace() if s.parent_span_id ==
                  tool_span.context.span_id.to_bytes(8, "big")]
        assert server, ("api spans joined the trace but none is a child of the tool-call span: "
                        f"{[(s.name, s.parent_span_id.hex()) for s in api_span_in_agent_trace()]}")
        assert "/dashboard" in server[0].name
    finally:
        tel.shutdown()
        api.stop()
        receiver.stop()
