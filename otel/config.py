"""Settings for the telemetry library, read from standard OTEL_* variables first.

`CUGAR_*` variables only cover what OpenTelemetry has no word for. A value the library cannot
use is a configuration error: `load_settings()` raises `ConfigError` naming every such
variable, its value and what is accepted, so it shows at start. Nothing raises after setup.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.trace import sampling

from otel import catalogue


DEFAULT_ENDPOINT = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
DEFAULT_SERVICE_NAME = "cugar-agent"
DEFAULT_CONTENT_MAX_CHARS = 1024
DEFAULT_METRIC_EXPORT_INTERVAL_MS = 60_000
DEFAULT_EXPORT_TIMEOUT_MS = 10_000
DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000
DEFAULT_BSP_MAX_QUEUE = 2048
DEFAULT_BSP_BATCH = 512
DEFAULT_BSP_DELAY_MS = 5_000


class ConfigError(ValueError):
    """Settings the library cannot use. One line per problem, each naming the variable, the
    bad value and what is accepted; `problems` holds those lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid telemetry settings: " + "; ".join(self.problems))


BOOLEANS = {"true": True, "false": False}
# What the official GenAI instrumentations accept: the boolean (openai-v2 and most others) and
# opentelemetry-util-genai's ContentCapturingMode names (case-insensitive in both). The value is
# the mode: where captured content goes (`true` = span attributes, as openai-v2 does).
NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT = (
    "no_content", "span_only", "event_only", "span_and_event")
CAPTURE_MODES = {"true": SPAN_ONLY, "false": NO_CONTENT, NO_CONTENT: NO_CONTENT,
                 SPAN_ONLY: SPAN_ONLY, EVENT_ONLY: EVENT_ONLY, SPAN_AND_EVENT: SPAN_AND_EVENT}
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
EXPORTERS = ("otlp", "none")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")  # the SDK's, trace_based default
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def is_http_url(raw: str) -> bool:
    """An http:// or https:// URL with a host and, if any, a valid port."""
    try:
        parsed = urlsplit(raw)
        return (parsed.scheme in ("http", "https") and bool(parsed.hostname)
                and (parsed.port is None or parsed.port > 0))
    except ValueError:  # e.g. a port that is not a number or beyond 65535
        return False


class _Env:
    """Reads variables from `env` and collects one problem line per bad value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str:
        return (self.env.get(name) or "").strip()

    def problem(self, line: str) -> None:
        # A variable read for two signals (the general endpoint, certificate) is one problem.
        if line not in self.problems:
            self.problems.append(line)

    def bad(self, name: str, raw: str, accepted: str) -> None:
        self.problem(f"{name}={raw!r}: expected {accepted}")

    def integer(self, name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        raw = self.raw(name)
        if not raw:
            return default
        value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f"..{maximum}" if maximum is not None else " or more"
            self.bad(name, raw, f"a whole number {minimum}{upper}")
            return default
        return value

    def choice(self, name: str, choices: Mapping[str, Any] | tuple[str, ...], default: str) -> Any:
        raw = self.raw(name)
        key = raw.lower() or default
        if key not in choices:
            self.bad(name, raw, "one of " + ", ".join(choices))
            key = default
        return choices[key] if isinstance(choices, Mapping) else key

    def url(self, name: str) -> str:
        raw = self.raw(name)
        if raw and not is_http_url(raw):
            self.bad(name, raw, "an http:// or https:// URL with a host, e.g. http://collector:4317")
        return raw

    def key_values(self, name: str, lower: bool = False, secret: bool = False) -> dict[str, str]:
        """Comma-separated key=value pairs, values percent-decoded (the OTel env var format)."""
        pairs: dict[str, str] = {}
        for item in self.raw(name).split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                # Header values are secrets (auth tokens): those are never echoed.
                shown = "(value not shown)" if secret else repr(item.strip())
                self.problem(f"{name} entry {shown}: expected comma-separated key=value pairs")
                continue
            pairs[key.lower() if lower else key] = unquote(value.strip())
        return pairs

    def readable_file(self, name: str) -> str | None:
        raw = self.raw(name)
        if raw and not (os.path.isfile(raw) and os.access(raw, os.R_OK)):
            self.bad(name, raw, "the path of a readable file (a PEM CA bundle)")
        return raw or None


def parse_resource_attributes(raw: str | None) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value pairs, values percent-decoded.

    Raises ConfigError naming a malformed entry."""
    reader = _Env({"OTEL_RESOURCE_ATTRIBUTES": raw or ""})
    attrs = reader.key_values("OTEL_RESOURCE_ATTRIBUTES")
    if reader.problems:
        raise ConfigError(reader.problems)
    return attrs


def _sampler(env: _Env) -> sampling.Sampler:
    """OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, as the OTel SDK defines them."""
    name = env.choice("OTEL_TRACES_SAMPLER", SAMPLERS, "parentbased_always_on")
    ratio = 1.0
    arg = env.raw("OTEL_TRACES_SAMPLER_ARG")
    if name in RATIO_SAMPLERS and arg:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = math.nan
        if not 0.0 <= ratio <= 1.0:
            env.bad("OTEL_TRACES_SAMPLER_ARG", arg, f"a number from 0 to 1 (the ratio {name} keeps)")
            ratio = 1.0
    samplers = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return samplers[name]()


def parse_sampler(name: str | None, arg: str | None) -> sampling.Sampler:
    """The sampler OTEL_TRACES_SAMPLER / _ARG describe; raises ConfigError for bad values."""
    env = _Env({"OTEL_TRACES_SAMPLER": name or "", "OTEL_TRACES_SAMPLER_ARG": arg or ""})
    sampler = _sampler(env)
    if env.problems:
        raise ConfigError(env.problems)
    return sampler


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
    exemplar_filter: str = "trace_based"  # OTEL_METRICS_EXEMPLAR_FILTER
    span_queue_size: int = DEFAULT_BSP_MAX_QUEUE
    span_batch_size: int = DEFAULT_BSP_BATCH
    span_schedule_delay_s: float = DEFAULT_BSP_DELAY_MS / 1000
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000
    capture_content: bool = False  # any mode but no_content
    capture_mode: str = NO_CONTENT  # where LLM call content goes (span, event or both)
    llm_prices: dict = field(default_factory=dict)  # CUGAR_LLM_PRICES, (provider, model) -> Price
    max_models: int = catalogue.DEFAULT_MAX_MODELS
    content_max_chars: int = DEFAULT_CONTENT_MAX_CHARS
    max_tools: int = catalogue.DEFAULT_MAX_TOOLS
    max_error_types: int = catalogue.DEFAULT_MAX_ERROR_TYPES
    profiles: tuple[str, ...] = catalogue.DEFAULT_PROFILES
    embedded_prometheus_port: int | None = None
    embedded_prometheus_host: str = "127.0.0.1"

    @property
    def service_instance_id(self) -> str:
        return self.resource_attributes["service.instance.id"]


def _endpoint(env: _Env, protocol: str, signal: str) -> str:
    specific = env.url(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific  # used as-is, per the OTLP exporter spec
    base = env.url("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT[protocol]
    if protocol == "grpc":
        return base
    return base.rstrip("/") + f"/v1/{signal}"


def _certificate(env: _Env, signal: str) -> str | None:
    """OTEL_EXPORTER_OTLP_{SIGNAL}_CERTIFICATE, else OTEL_EXPORTER_OTLP_CERTIFICATE (a path)."""
    return (env.readable_file(f"OTEL_EXPORTER_OTLP_{signal.upper()}_CERTIFICATE")
            or env.readable_file("OTEL_EXPORTER_OTLP_CERTIFICATE"))


def _profiles(env: _Env) -> tuple[str, ...]:
    raw = env.raw("CUGAR_PROFILES")
    profiles = tuple(p.strip() for p in raw.split(",") if p.strip())
    bad = [p for p in profiles if not _PROFILE.match(p) or p == catalogue.OTHER]
    if (raw and not profiles) or bad:
        env.bad("CUGAR_PROFILES", raw, "comma-separated profile names (letters, digits, _ . -; "
                                       f"not {catalogue.OTHER!r})")
        return catalogue.DEFAULT_PROFILES
    return profiles or catalogue.DEFAULT_PROFILES


def _llm_prices(env: _Env) -> dict:
    """CUGAR_LLM_PRICES: the path of a JSON price table (otel/pricing.py says its shape)."""
    from otel import pricing

    raw = env.raw("CUGAR_LLM_PRICES")
    if not raw:
        return {}
    try:
        with open(raw, encoding="utf-8") as f:
            return pricing.parse_table(f.read())
    except OSError as exc:
        env.bad("CUGAR_LLM_PRICES", raw, f"the path of a readable JSON price table ({exc.strerror})")
    except ValueError as exc:
        env.bad("CUGAR_LLM_PRICES", raw, f"a JSON price table in USD per million tokens: {exc}")
    return {}


def load_settings(
    env: Mapping[str, str] | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    embedded_prometheus_port: int | None = None,
) -> Settings:
    """Build settings from `env` (default: os.environ); arguments are defaults env can override.

    Raises ConfigError listing every variable with a value it cannot use."""
    env = _Env(os.environ if env is None else env)
    s = Settings()
    s.disabled = env.choice("OTEL_SDK_DISABLED", BOOLEANS, "false")

    attrs = env.key_values("OTEL_RESOURCE_ATTRIBUTES")
    # Operator configuration (env) wins over the defaults agent code passes in.
    name = env.raw("OTEL_SERVICE_NAME") or attrs.get("service.name") or service_name
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

    s.protocol = env.choice("OTEL_EXPORTER_OTLP_PROTOCOL", tuple(DEFAULT_ENDPOINT), "grpc")
    s.traces_endpoint = _endpoint(env, s.protocol, "traces")
    s.metrics_endpoint = _endpoint(env, s.protocol, "metrics")
    s.insecure = env.choice("OTEL_EXPORTER_OTLP_INSECURE", BOOLEANS,
                            "false" if s.traces_endpoint.startswith("https://") else "true")
    s.headers = env.key_values("OTEL_EXPORTER_OTLP_HEADERS", lower=True, secret=True)
    s.traces_certificate = _certificate(env, "traces")
    s.metrics_certificate = _certificate(env, "metrics")
    s.export_timeout_s = env.integer("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_MS) / 1000

    s.sampler = _sampler(env)
    s.traces_enabled = env.choice("OTEL_TRACES_EXPORTER", EXPORTERS, "otlp") != "none"
    s.metrics_enabled = env.choice("OTEL_METRICS_EXPORTER", EXPORTERS, "otlp") != "none"
    s.metric_export_interval_s = env.integer(
        "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_METRIC_EXPORT_INTERVAL_MS) / 1000
    s.exemplar_filter = env.choice("OTEL_METRICS_EXEMPLAR_FILTER", EXEMPLAR_FILTERS,
                                   "trace_based")
    s.span_queue_size = env.integer("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_BSP_MAX_QUEUE)
    s.span_batch_size = min(
        s.span_queue_size, env.integer("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BSP_BATCH))
    s.span_schedule_delay_s = env.integer("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_BSP_DELAY_MS) / 1000

    s.capture_mode = env.choice(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", CAPTURE_MODES, "false")
    s.capture_content = s.capture_mode != NO_CONTENT
    s.llm_prices = _llm_prices(env)
    s.max_models = env.integer("CUGAR_MAX_MODELS", catalogue.DEFAULT_MAX_MODELS)
    s.content_max_chars = env.integer("CUGAR_CONTENT_MAX_CHARS", DEFAULT_CONTENT_MAX_CHARS, 16)
    s.max_tools = env.integer("CUGAR_MAX_TOOLS", catalogue.DEFAULT_MAX_TOOLS)
    s.max_error_types = env.integer("CUGAR_MAX_ERROR_TYPES", catalogue.DEFAULT_MAX_ERROR_TYPES)
    s.profiles = _profiles(env)
    s.shutdown_timeout_s = env.integer(
        "CUGAR_SHUTDOWN_TIMEOUT_MS", DEFAULT_SHUTDOWN_TIMEOUT_MS, 0) / 1000

    port = env.integer("CUGAR_EMBEDDED_PROMETHEUS_PORT", -1, 0, 65535)
    if embedded_prometheus_port is None and port >= 0:
        embedded_prometheus_port = port
    s.embedded_prometheus_port = embedded_prometheus_port
    s.embedded_prometheus_host = env.raw("CUGAR_EMBEDDED_PROMETHEUS_HOST") or "127.0.0.1"
    if env.problems:
        raise ConfigError(env.problems)
    return s
