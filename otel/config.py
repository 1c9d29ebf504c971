"""Settings for the telemetry library, read from standard OTEL_* variables first.

`CUGAR_*` variables only cover what OpenTelemetry has no word for. Bad values never raise:
they fall back to the default and are logged once (telemetry must not break the agent).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote

from opentelemetry.sdk.trace import sampling

from otel import catalogue

log = logging.getLogger("otel.config")

DEFAULT_ENDPOINT = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
DEFAULT_SERVICE_NAME = "cugar-agent"
DEFAULT_CONTENT_MAX_CHARS = 1024
DEFAULT_METRIC_EXPORT_INTERVAL_MS = 60_000
DEFAULT_EXPORT_TIMEOUT_MS = 10_000
DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000
DEFAULT_BSP_MAX_QUEUE = 2048
DEFAULT_BSP_BATCH = 512
DEFAULT_BSP_DELAY_MS = 5_000


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        return default
    if value < minimum:
        log.warning("%s=%r is below %s; using %s", name, raw, minimum, default)
        return default
    return value


def _key_values(raw: str | None, what: str | None = None, lower: bool = False) -> dict[str, str]:
    """Comma-separated key=value pairs, values percent-decoded (the OTel env var format).

    Malformed entries are skipped; with `what` (the variable's name) each one is logged.
    """
    pairs: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            if what is not None:
                log.warning("ignoring malformed %s entry %r", what, item)
            continue
        pairs[key.lower() if lower else key] = unquote(value.strip())
    return pairs


def parse_resource_attributes(raw: str | None) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value pairs, values percent-decoded."""
    return _key_values(raw, "OTEL_RESOURCE_ATTRIBUTES")


def parse_sampler(name: str | None, arg: str | None) -> sampling.Sampler:
    """OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, as the OTel SDK defines them."""
    name = (name or "parentbased_always_on").strip().lower()
    ratio = 1.0
    if name in ("traceidratio", "parentbased_traceidratio"):
        try:
            ratio = float(arg) if arg not in (None, "") else 1.0
        except ValueError:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a number; using 1.0", arg)
        if not 0.0 <= ratio <= 1.0:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%r outside [0, 1]; using 1.0", arg)
            ratio = 1.0
    samplers = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        log.warning("unknown OTEL_TRACES_SAMPLER=%r; using parentbased_always_on", name)
        name = "parentbased_always_on"
    return samplers[name]()


@dataclass
class Settings:
    service_name: str = DEFAULT_SERVICE_NAME
    service_version: str | None = None
    resource_attributes: dict[str, str] = field(default_factory=dict)
    disabled: bool = False
    protocol: str = "grpc"
    traces_endpoint: str | None = None  # full URL for the trace exporter
    metrics_endpoint: str | None = None  # full URL for the metric exporter
    insecure: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    traces_certificate: str | None = None  # CA bundle (PEM) that verifies the collector's TLS
    metrics_certificate: str | None = None
    export_timeout_s: float = DEFAULT_EXPORT_TIMEOUT_MS / 1000
    sampler: sampling.Sampler = field(default_factory=lambda: sampling.ParentBased(sampling.ALWAYS_ON))
    traces_enabled: bool = True  # OTEL_TRACES_EXPORTER=none turns tracing off (metrics-only)
    metrics_enabled: bool = True
    metric_export_interval_s: float = DEFAULT_METRIC_EXPORT_INTERVAL_MS / 1000
    span_queue_size: int = DEFAULT_BSP_MAX_QUEUE
    span_batch_size: int = DEFAULT_BSP_BATCH
    span_schedule_delay_s: float = DEFAULT_BSP_DELAY_MS / 1000
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000
    capture_content: bool = False
    content_max_chars: int = DEFAULT_CONTENT_MAX_CHARS
    max_tools: int = catalogue.DEFAULT_MAX_TOOLS
    max_error_types: int = catalogue.DEFAULT_MAX_ERROR_TYPES
    profiles: tuple[str, ...] = catalogue.DEFAULT_PROFILES
    embedded_prometheus_port: int | None = None
    embedded_prometheus_host: str = "127.0.0.1"

    @property
    def service_instance_id(self) -> str:
        return self.resource_attributes["service.instance.id"]


def _endpoint(env: Mapping[str, str], protocol: str, signal: str) -> str:
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    if specific:
        return specific  # used as-is, per the OTLP exporter spec
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT[protocol]
    if protocol == "grpc":
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _certificate(env: Mapping[str, str], signal: str) -> str | None:
    """OTEL_EXPORTER_OTLP_{SIGNAL}_CERTIFICATE, else OTEL_EXPORTER_OTLP_CERTIFICATE (a path)."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_CERTIFICATE",
                 "OTEL_EXPORTER_OTLP_CERTIFICATE"):
        path = env.get(name, "").strip()
        if path:
            return path
    return None


def load_settings(
    env: Mapping[str, str] | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    embedded_prometheus_port: int | None = None,
) -> Settings:
    """Build settings from `env` (default: os.environ); arguments are defaults env can override."""
    env = os.environ if env is None else env
    s = Settings()
    s.disabled = _truthy(env.get("OTEL_SDK_DISABLED"))

    attrs = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES"))
    # Operator configuration (env) wins over the defaults agent code passes in.
    name = env.get("OTEL_SERVICE_NAME", "").strip() or attrs.get("service.name") or service_name
    s.service_name = name or DEFAULT_SERVICE_NAME
    attrs["service.name"] = s.service_name
    version = attrs.get("service.version") or service_version
    if version:
        attrs["service.version"] = version
        s.service_version = version
    attrs.setdefault("service.instance.id", str(uuid.uuid4()))
    if "deployment.environment" in attrs and "deployment.environment.name" not in attrs:
        attrs["deployment.environment.name"] = attrs["deployment.environment"]
    s.resource_attributes = attrs

    protocol = (env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "") or "grpc").strip().lower()
    if protocol == "http/json":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=http/json is not supported; using http/protobuf")
        protocol = "http/protobuf"
    if protocol not in DEFAULT_ENDPOINT:
        log.warning("unknown OTEL_EXPORTER_OTLP_PROTOCOL=%r; using grpc", protocol)
        protocol = "grpc"
    s.protocol = protocol
    s.traces_endpoint = _endpoint(env, protocol, "traces")
    s.metrics_endpoint = _endpoint(env, protocol, "metrics")
    insecure = env.get("OTEL_EXPORTER_OTLP_INSECURE")
    s.insecure = _truthy(insecure) if insecure else not s.traces_endpoint.startswith("https://")
    s.headers = _key_values(env.get("OTEL_EXPORTER_OTLP_HEADERS"), lower=True)
    s.traces_certificate = _certificate(env, "traces")
    s.metrics_certificate = _certificate(env, "metrics")
    s.export_timeout_s = _number(env, "OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_MS, 1) / 1000

    s.sampler = parse_sampler(env.get("OTEL_TRACES_SAMPLER"), env.get("OTEL_TRACES_SAMPLER_ARG"))
    s.traces_enabled = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"
    s.metrics_enabled = env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none"
    s.metric_export_interval_s = _number(
        env, "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_METRIC_EXPORT_INTERVAL_MS, 1) / 1000
    s.span_queue_size = int(_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_BSP_MAX_QUEUE, 1))
    s.span_batch_size = min(
        s.span_queue_size, int(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BSP_BATCH, 1)))
    s.span_schedule_delay_s = _number(env, "OTEL_BSP_SCHEDULE_DELAY", DEFAULT_BSP_DELAY_MS, 1) / 1000

    s.capture_content = _truthy(env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"))
    s.content_max_chars = int(
        _number(env, "CUGAR_CONTENT_MAX_CHARS", DEFAULT_CONTENT_MAX_CHARS, 16))
    s.max_tools = int(_number(env, "CUGAR_MAX_TOOLS", catalogue.DEFAULT_MAX_TOOLS, 1))
    s.max_error_types = int(
        _number(env, "CUGAR_MAX_ERROR_TYPES", catalogue.DEFAULT_MAX_ERROR_TYPES, 1))
    profiles = tuple(p.strip() for p in env.get("CUGAR_PROFILES", "").split(",") if p.strip())
    s.profiles = profiles or catalogue.DEFAULT_PROFILES
    s.shutdown_timeout_s = _number(
        env, "CUGAR_SHUTDOWN_TIMEOUT_MS", DEFAULT_SHUTDOWN_TIMEOUT_MS, 0) / 1000

    port_raw = env.get("CUGAR_EMBEDDED_PROMETHEUS_PORT", "").strip()
    if embedded_prometheus_port is None and port_raw:
        port = int(_number(env, "CUGAR_EMBEDDED_PROMETHEUS_PORT", -1, 0))
        embedded_prometheus_port = port if 0 <= port <= 65535 else None
    s.embedded_prometheus_port = embedded_prometheus_port
    s.embedded_prometheus_host = (
        env.get("CUGAR_EMBEDDED_PROMETHEUS_HOST", "").strip() or "127.0.0.1")
    return s
