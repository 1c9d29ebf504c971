"""setup_telemetry(): env vars honoured, real OTLP export, sampling, disabled mode, failure paths."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.export import SpanExportResult

from otel.catalogue import (
    APPROVAL_WAIT, APPROVALS, BUDGET_USED, DROP_REASONS, EXECUTIONS, TELEMETRY_DROPPED, TOOL_CALLS,
)
from otel.config import ConfigError, load_settings
from otel.setup import create_telemetry
from otel.testing import (
    QUIET_EXPORT_ENV, CountingSpanExporter, InMemoryMetricExporter, OtlpReceiver,
    in_memory_telemetry, last_points, total,
)
from services.stack.process import free_port

ROOT = Path(__file__).resolve().parents[1]


def scripted(agent, n: int) -> None:
    for i in range(n):
        with agent.execution(profile="smb", agent_name="cugar-sales", budget_ceiling=10) as ex:
            with ex.tool_call("crm_lookup", domain="intelligence"):
                pass
            with ex.approval(tool="send") as ap:
                ap.approve()
            ex.spend(1)


def test_env_vars_are_honoured():
    s = load_settings({
        "OTEL_SERVICE_NAME": "sales-agent",
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=w-1,deployment.environment.name=staging,"
                                    "team=sales%20ops",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_METRIC_EXPORT_INTERVAL": "1500",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "CUGAR_MAX_TOOLS": "7", "CUGAR_PROFILES": "gold, silver", "CUGAR_CONTENT_MAX_CHARS": "99",
        "CUGAR_EMBEDDED_PROMETHEUS_PORT": "9464",
    }, service_name="code-default")
    assert s.service_name == "sales-agent"
    assert s.resource_attributes == {
        "service.name": "sales-agent", "service.instance.id": "w-1",
        "deployment.environment.name": "staging", "team": "sales ops"}
    assert s.protocol == "http/protobuf"
    assert s.traces_endpoint == "http://collector:4318/v1/traces"
    assert s.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert isinstance(s.sampler, sampling.ParentBased)
    assert "0.25" in s.sampler.get_description()
    assert s.metric_export_interval_s == 1.5
    assert s.capture_content and s.max_tools == 7 and s.content_max_chars == 99
    assert s.profiles == ("gold", "silver")
    assert s.embedded_prometheus_port == 9464


def test_defaults():
    s = load_settings({"OTEL_TRACES_SAMPLER": "", "CUGAR_MAX_TOOLS": " "}, service_name="agent-x")
    assert s.service_name == "agent-x"  # empty values count as unset
    uuid.UUID(s.resource_attributes["service.instance.id"])  # a fresh uuid4 by default
    assert s.protocol == "grpc" and s.traces_endpoint == "http://localhost:4317"
    assert s.metric_export_interval_s == 60
    assert not s.capture_content and not s.disabled and s.insecure
    other = load_settings({})
    assert other.service_instance_id != s.service_instance_id


@pytest.mark.parametrize("value,captured", [
    ("true", True), ("FALSE", False), ("no_content", False), ("SPAN_ONLY", True),
    ("event_only", True), ("span_and_event", True)])
def test_content_capture_takes_the_genai_instrumentation_values(value, captured):
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    assert load_settings(env).capture_content is captured


MISSING = "/nonexistent/ca.pem"
# One line per case: the variable, its bad value, a fragment of what the message says is accepted.
BAD_SETTINGS = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "grpc, http/protobuf"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "grpc, http/protobuf"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://", "with a host"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port", "URL"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces", "https://"),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "localhost", "URL"),
    ("OTEL_EXPORTER_OTLP_INSECURE", "yes", "true, false"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "authorization", "key=value"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "whole number 1 or more"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", MISSING, "readable file"),
    ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", MISSING, "readable file"),
    ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/", "readable file"),
    ("OTEL_TRACES_SAMPLER", "bogus", "parentbased_always_on"),
    ("OTEL_TRACES_EXPORTER", "console", "otlp, none"),
    ("OTEL_METRICS_EXPORTER", "prometheus", "otlp, none"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "whole number 1 or more"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "0", "whole number 1 or more"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "1.5", "whole number 1 or more"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "whole number 1 or more"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many", "whole number 1 or more"),
    ("OTEL_BSP_SCHEDULE_DELAY", "0", "whole number 1 or more"),
    ("OTEL_SDK_DISABLED", "1", "true, false"),
    ("OTEL_SDK_DISABLED", "off", "true, false"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team=sales,oops", "entry 'oops': expected"),
    ("OTEL_RESOURCE_ATTRIBUTES", "=nameless", "key=value"),
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "1", "span_and_event"),
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "all", "span_only"),
    ("CUGAR_CONTENT_MAX_CHARS", "8", "whole number 16 or more"),
    ("CUGAR_MAX_TOOLS", "0", "whole number 1 or more"),
    ("CUGAR_MAX_TOOLS", "lots", "whole number 1 or more"),
    ("CUGAR_MAX_ERROR_TYPES", "2.5", "whole number 1 or more"),
    ("CUGAR_PROFILES", ",", "profile names"),
    ("CUGAR_PROFILES", "smb,gold tier", "profile names"),
    ("CUGAR_PROFILES", "smb,other", "not 'other'"),
    ("CUGAR_SHUTDOWN_TIMEOUT_MS", "-5", "whole number 0 or more"),
    ("CUGAR_EMBEDDED_PROMETHEUS_PORT", "http", "whole number 0..65535"),
    ("CUGAR_EMBEDDED_PROMETHEUS_PORT", "70000", "whole number 0..65535"),
]
BAD_SAMPLER_ARGS = [
    ("traceidratio", "half"), ("traceidratio", "1.5"), ("parentbased_traceidratio", "-0.1"),
    ("parentbased_traceidratio", "nan"),
]


@pytest.mark.parametrize("name,value,accepted", BAD_SETTINGS,
                         ids=[f"{n}={v}" for n, v, _ in BAD_SETTINGS])
def test_bad_value_fails_at_setup_naming_variable_value_and_what_is_accepted(name, value,
                                                                              accepted):
    with pytest.raises(ConfigError) as raised:
        create_telemetry(env={name: value})
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert f"{name}={value!r}: expected" in message or f"{name} entry " in message
    assert accepted in message


def test_a_malformed_header_is_named_but_never_echoed():
    with pytest.raises(ConfigError) as raised:
        load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20ok,s3cr3t-t0k3n"})
    assert "OTEL_EXPORTER_OTLP_HEADERS entry (value not shown)" in str(raised.value)
    assert "s3cr3t" not in str(raised.value) and "Bearer" not in str(raised.value)


@pytest.mark.parametrize("sampler,arg", BAD_SAMPLER_ARGS)
def test_bad_sampler_ratio_fails_at_setup(sampler, arg):
    with pytest.raises(ConfigError, match=rf"OTEL_TRACES_SAMPLER_ARG='{arg}': expected a number "
                                          r"from 0 to 1"):
        load_settings({"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": arg})
    load_settings({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": arg})  # unused


def test_every_bad_variable_is_named_in_one_error():
    with pytest.raises(ConfigError) as raised:
        load_settings({"OTEL_TRACES_SAMPLER": "bogus", "CUGAR_MAX_TOOLS": "0"})
    assert [p.split("=")[0] for p in raised.value.problems] == [
        "OTEL_TRACES_SAMPLER", "CUGAR_MAX_TOOLS"]


@pytest.mark.parametrize("protocol,cls", [("grpc", GrpcSpans), ("http/protobuf", HttpSpans)])
def test_protocol_picks_the_exporter_and_data_arrives(protocol, cls):
    receiver = OtlpReceiver(protocol)
    try:
        tel = create_telemetry(env={
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "proto-test",
            "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=i-1,deployment.environment.name=ci"})
        assert isinstance(tel._span_shipper._exporter, cls)
        scripted(tel.agent, 3)
        assert tel.force_flush()
        tel.shutdown()
        names = [s.name for s in receiver.spans]
        assert names.count("invoke_agent cugar-sales") == 3
        assert names.count("execute_tool crm_lookup") == 3
        assert {EXECUTIONS.name, TOOL_CALLS.name, APPROVAL_WAIT.name} <= receiver.metric_names()
        resource = {kv.key: kv.value.string_value
                    for kv in receiver.trace_requests[0].resource_spans[0].resource.attributes}
        assert resource["service.name"] == "proto-test"
        assert resource["service.instance.id"] == "i-1"
        assert resource["deployment.environment.name"] == "ci"
        assert tel.stats()["span_exports_failed"] == 0
    finally:
        receiver.stop()


def test_sampling_keeps_metrics_exact():
    tel, spans, metrics = in_memory_telemetry(
        env={"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1",
             "OTEL_BSP_MAX_QUEUE_SIZE": "100000"})
    n = 2000
    scripted(tel.agent, n)
    tel.force_flush()
    tel.shutdown()
    p = last_points(metrics)
    assert total(p[EXECUTIONS.name]) == n
    assert total(p[TOOL_CALLS.name]) == n
    assert total(p[APPROVALS.name]) == n
    assert total(p[BUDGET_USED.name]) == n
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert 0.05 * n < len(roots) < 0.15 * n  # ~10% of traces kept...
    assert len(spans.get_finished_spans()) == 3 * len(roots)  # ...each one complete


def test_sdk_disabled_is_a_working_no_op():
    tel = create_telemetry(env={"OTEL_SDK_DISABLED": "true"}, embedded_prometheus_port=0)
    threads = threading.active_count()
    agent = tel.agent

    @agent.tool("t", domain="knowledge")
    def tool(x):
        return x + 1

    with agent.execution(profile="smb", agent_name="a", budget_ceiling=1) as ex:
        assert tool(1) == 2
        ex.spend(5)
        with ex.approval(tool="x") as ap:
            ap.approve()
        ex.plan_created(1)
    with pytest.raises(ZeroDivisionError):
        with agent.execution(profile="smb") as ex:
            with ex.tool_call("boom"):
                1 / 0
    assert threading.active_count() == threads
    assert tel.prometheus_url is None
    assert tel.force_flush() and tel.stats()["metric_series"] == 0
    tel.shutdown()


def test_collector_unreachable_never_raises_and_counts_drops():
    port = free_port()  # nothing listens here
    tel = create_telemetry(env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "500", "OTEL_BSP_MAX_QUEUE_SIZE": "512",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "128", "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "200", "CUGAR_SHUTDOWN_TIMEOUT_MS": "1000"})
    n = 5000
    start = time.perf_counter()
    scripted(tel.agent, n)
    per_execution_us = (time.perf_counter() - start) / n * 1e6
    assert per_execution_us < 2000, "agent slowed down by an unreachable collector"
    assert tel.stats()["spans_queued"] <= 512
    assert not tel.force_flush(timeout_millis=300)
    t0 = time.perf_counter()
    tel.shutdown()
    assert time.perf_counter() - t0 < 3.0, "shutdown not bounded with the collector down"
    s = tel.stats()
    lost = s["spans_dropped"] + s["spans_export_failed"]
    assert lost > 0 and s["spans_exported"] == 0
    assert lost + s["spans_queued"] <= 3 * n
    assert s["metric_exports_failed"] >= 1 and s["metric_exports"] == 0
    assert s["internal_errors"] == 0


def test_black_hole_collector_does_not_block_shutdown():
    """A collector that accepts connections and never answers (the 'slow' case)."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    try:
        tel = create_telemetry(env={
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "30000", "OTEL_BSP_SCHEDULE_DELAY": "50",
            "CUGAR_SHUTDOWN_TIMEOUT_MS": "1000"})
        start = time.perf_counter()
        scripted(tel.agent, 2000)
        assert (time.perf_counter() - start) / 2000 * 1e6 < 2000
        t0 = time.perf_counter()
        tel.shutdown()
        assert time.perf_counter() - t0 < 3.0
    finally:
        hole.close()


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> dict:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CUGAR_"))}
    full_env.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_setup_is_idempotent_global_and_exits_fast_with_collector_down():
    result = run_python("""
        import json, time
        from opentelemetry import trace, metrics
        from otel import setup_telemetry
        a = setup_telemetry(service_name="svc")
        b = setup_telemetry(service_name="ignored")
        with a.agent.execution(profile="smb") as ex:
            with ex.tool_call("t", domain="knowledge"):
                pass
        out = {
            "same": a is b,
            "global_tracer": trace.get_tracer_provider() is a.tracer_provider,
            "global_meter": metrics.get_meter_provider() is a.meter_provider,
            "service": a.resource.attributes["service.name"],
        }
        a.shutdown(); a.shutdown()  # idempotent
        c = setup_telemetry(service_name="svc")
        out["fresh_after_shutdown"] = c is not a
        print(json.dumps(out))
    """, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
          "CUGAR_SHUTDOWN_TIMEOUT_MS": "1000"})
    assert result == {"same": True, "global_tracer": True, "global_meter": True,
                      "service": "svc", "fresh_after_shutdown": True}


def test_setup_telemetry_raises_a_bad_value_instead_of_disabling_telemetry():
    result = run_python("""
        import json
        from otel import ConfigError, setup_telemetry
        try:
            setup_telemetry(service_name="svc")
            out = {"raised": None}
        except ConfigError as exc:
            out = {"raised": str(exc)}
        print(json.dumps(out))
    """, {"OTEL_METRIC_EXPORT_INTERVAL": "soon"})
    assert result == {"raised": "invalid telemetry settings: OTEL_METRIC_EXPORT_INTERVAL='soon': "
                                "expected a whole number 1 or more"}


def test_process_exit_flushes_via_atexit():
    receiver = OtlpReceiver("grpc")
    try:
        run_python("""
            from otel import setup_telemetry
            tel = setup_telemetry(service_name="exit-test")
            with tel.agent.execution(profile="demo", agent_name="bye"):
                pass
            print("{}")
        """, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert [s.name for s in receiver.spans] == ["invoke_agent bye"]
        assert EXECUTIONS.name in receiver.metric_names()
    finally:
        receiver.stop()


def test_sdk_instruments_ride_along_with_catalogue_metrics():
    tel, _, metrics = in_memory_telemetry()
    tel.meter_provider.get_meter("fastapi").create_counter("http_requests").add(2)
    scripted(tel.agent, 1)
    tel.force_flush()
    tel.shutdown()
    p = last_points(metrics)
    assert total(p["http_requests"]) == 2 and total(p[EXECUTIONS.name]) == 1
    assert isinstance(metrics, InMemoryMetricExporter)


def test_forked_child_does_not_re_export_the_parents_data():
    # HTTP: gRPC itself does not survive fork() once its threads run (use spawn with gRPC).
    receiver = OtlpReceiver("http/protobuf")
    try:
        result = run_python("""
            import json, os
            from otel import setup_telemetry
            parent = setup_telemetry(service_name="forker")
            with parent.agent.execution(profile="demo", agent_name="parent-run"):
                pass
            pid = os.fork()
            if pid == 0:  # child: the inherited handle is inert; a new setup is its own
                parent.shutdown()
                child = setup_telemetry(service_name="forker")
                with child.agent.execution(profile="demo", agent_name="child-run"):
                    pass
                child.shutdown()
                os._exit(0 if child is not parent else 1)
            _, status = os.waitpid(pid, 0)
            parent.shutdown()
            print(json.dumps({"child_status": status}))
        """, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
              "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, timeout=30)
        assert result == {"child_status": 0}
        names = sorted(s.name for s in receiver.spans)
        assert names == ["invoke_agent child-run", "invoke_agent parent-run"]
        instances = {kv.value.string_value for r in receiver.metric_requests
                     for rm in r.resource_metrics for kv in rm.resource.attributes
                     if kv.key == "service.instance.id"}
        assert len(instances) == 2  # the child never speaks with the parent's identity
    finally:
        receiver.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_certificate_and_bearer_header_come_from_the_settings_env(protocol, monkeypatch,
                                                                      tmp_path):
    """OTEL_EXPORTER_OTLP_CERTIFICATE (a signal's own variable first) and _HEADERS reach both
    exporters from the env given to load_settings, not from the process environment."""
    import grpc

    from otel import exporting

    ca, traces_ca = tmp_path / "ca.pem", tmp_path / "traces-ca.pem"
    for path in (ca, traces_ca):
        path.write_bytes(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/process-env-ca.pem")
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317",
                       "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                       "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca),
                       "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(traces_ca),
                       "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20t0k3n"})
    assert not s.insecure
    assert (s.traces_certificate, s.metrics_certificate) == (str(traces_ca), str(ca))
    assert s.headers == {"authorization": "Bearer t0k3n"}
    assert load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer t0k3n"}
                         ).headers == {"authorization": "Bearer t0k3n"}  # a raw space works too

    built: dict[str, dict] = {}
    package = "opentelemetry.exporter.otlp.proto." + ("grpc" if protocol == "grpc" else "http")
    for signal, module_name, name in (("traces", "trace_exporter", "OTLPSpanExporter"),
                                      ("metrics", "metric_exporter", "OTLPMetricExporter")):
        module = importlib.import_module(f"{package}.{module_name}")
        monkeypatch.setattr(module, name, lambda signal=signal, **kw: built.setdefault(signal, kw))
    exporting.build_span_exporter(s)
    exporting.build_metric_exporter(s)
    for signal in ("traces", "metrics"):
        assert built[signal]["headers"] == {"authorization": "Bearer t0k3n"}
        if protocol == "grpc":
            assert built[signal]["insecure"] is False
            assert isinstance(built[signal]["credentials"], grpc.ChannelCredentials)
        else:
            certificate = getattr(s, f"{signal}_certificate")
            assert built[signal]["certificate_file"] == certificate
            # requests would let REQUESTS_CA_BUNDLE replace the session's CA: it must not
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
            session = built[signal]["session"]
            session.verify = certificate  # what the SDK's transport does with certificate_file
            merged = session.merge_environment_settings(
                "https://collector:4318/v1/traces", {}, False, None, None)
            assert merged["verify"] == certificate
    if protocol == "grpc":  # plain http:// endpoints keep insecure channels, no credentials
        plain = load_settings({"OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca)})
        assert exporting._grpc_credentials(plain, plain.traces_certificate) is None


class _RefusingSpanExporter(CountingSpanExporter):
    """Fails every export (a collector that gave up on each batch)."""

    def export(self, spans):  # noqa: ANN001
        super().export(spans)
        return SpanExportResult.FAILURE


def test_discarded_spans_are_the_dropped_metric_by_reason():
    """Every span tel.stats() counts as lost is in cugar.telemetry.dropped, under its reason;
    the three reasons start at 0 (the metric exists before anything is lost)."""
    metrics = InMemoryMetricExporter()
    tel = create_telemetry(env={**QUIET_EXPORT_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "10",
                                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10"},
                           span_exporter=_RefusingSpanExporter(), metric_exporter=metrics)
    assert tel.force_flush()
    assert last_points(metrics)[TELEMETRY_DROPPED.name] == {
        frozenset({"signal": "traces", "reason": r}.items()): 0 for r in DROP_REASONS}
    for _ in range(20):  # 40 spans into a queue of 10 whose every export fails
        with tel.agent.execution(profile="smb", agent_name="a") as ex:
            with ex.tool_call("t", domain="knowledge"):
                pass
    tel.force_flush()
    s = tel.stats()
    by_reason = {dict(k)["reason"]: v for k, v in last_points(metrics)[TELEMETRY_DROPPED.name].items()}
    assert by_reason == {"queue_full": s["spans_dropped"], "export_failed": s["spans_export_failed"],
                         "shutdown": 0}, (by_reason, s)
    assert by_reason["queue_full"] > 0 and by_reason["export_failed"] >= 10
    assert sum(by_reason.values()) == 40
    tel.shutdown()
    with tel.agent.execution(profile="smb", agent_name="a"):  # 1 span, after shutdown
        pass
    assert tel.stats()["spans_dropped"] == s["spans_dropped"] + 1
    assert tel.metrics.counters[TELEMETRY_DROPPED.name][("traces", "shutdown")] == 1
