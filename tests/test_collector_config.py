"""Every collector configuration we ship is valid for our build (`cugar-otelcol validate`), and
the main one has the intended shape: memory_limiter first, redaction, OTLP push of metrics into
Prometheus, traces to Jaeger, bounded queues, every endpoint overridable."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from services.stack import components
from services.stack.collector import COLLECTOR_CONFIG
from tests.support import require

ROOT = Path(__file__).resolve().parents[1]
# A started collector opens its persistent queue (file_storage); never the machine-wide default.
QUEUE_DIR = Path(tempfile.gettempdir()) / f"cugar-collector-config-test-{os.getpid()}"
atexit.register(shutil.rmtree, QUEUE_DIR, True)
OVERRIDES = sorted(p for p in (ROOT / "collector").rglob("*.yaml")
                   if p.name != "manifest.yaml" and "_build" not in p.parts)
# Complete configs of their own (not overrides of the main one): the scale-out topology's
# agent-side collector (tests/test_scale_configs.py validates it).
STANDALONE = [ROOT / "deploy" / "scale" / "agent-collector.yaml"]


def _run(command: list[str], *configs: Path, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [str(require(components.COLLECTOR)), *command]
    for config in configs:
        argv += ["--config", str(config)]
    full_env = None
    if env is not None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CUGAR_COLLECTOR_")}
        full_env["CUGAR_COLLECTOR_QUEUE_DIR"] = str(QUEUE_DIR)
        full_env.update(env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=full_env)


def _validate(*configs: Path, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return _run(["validate"], *configs, env=env)


def _config() -> dict:
    return yaml.safe_load(COLLECTOR_CONFIG.read_text())


def test_shipped_overrides_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in OVERRIDES}
    assert {"collector/traces-to-file.yaml", "collector/backends/remote-write.yaml",
            "collector/backends/otlp-vendor.yaml", "collector/backends/prometheus-scrape.yaml",
            "collector/debug.yaml"} <= names


def test_main_config_validates() -> None:
    result = _validate(COLLECTOR_CONFIG)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_with_override_validates(override: Path) -> None:
    result = _validate(COLLECTOR_CONFIG, override)
    assert result.returncode == 0, f"{override.name}: {result.stderr}"


def test_validate_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("exporters:\n  otlp_http/prometheus:\n    compression: made-up-codec\n")
    result = _validate(COLLECTOR_CONFIG, broken)
    assert result.returncode != 0
    assert "made-up-codec" in result.stderr


def test_memory_limiter_runs_first_in_every_pipeline() -> None:
    """Every pipeline fed by a receiver; a pipeline fed by a connector (metrics/genai, from
    the traces pipeline's signal_to_metrics/genai) gets data that already passed it."""
    config = _config()
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces", "traces/genai", "metrics/genai"}
    connectors = set(config["connectors"])
    for name, pipeline in pipelines.items():
        if set(pipeline["receivers"]) <= connectors:
            feeders = [p for p in pipelines.values()
                       if set(p["exporters"]) & set(pipeline["receivers"])]
            assert feeders and all(p["processors"][0] == "memory_limiter" for p in feeders), name
        else:
            assert pipeline["processors"][0] == "memory_limiter", name


def test_redaction_guards_traces_and_metrics() -> None:
    """Both pipelines redact (the patterns themselves: tests/test_sensitive_patterns.py)."""
    config = _config()
    pipelines = config["service"]["pipelines"]
    for name, processor, values in (("traces", "sensitive_attributes", "value_patterns"),
                                    ("traces/genai", "sensitive_attributes", "value_patterns"),
                                    ("metrics", "redaction/metrics", "blocked_values")):
        assert processor in pipelines[name]["processors"], name
        assert len(config["processors"][processor][values]) >= 3  # e-mail, card, bearer token
    assert config["processors"]["redaction/metrics"]["allow_all_keys"] is True
    # Metric audit attributes would become labels.
    assert config["processors"]["redaction/metrics"]["summary"] == "silent"


def test_the_genai_connector_sees_only_spans_it_can_count() -> None:
    """The connector evaluates every metric's conditions on each span it gets: its pipeline
    filters first, and the filter keeps every span a connector condition can hold for (each
    needs an operation name, or a GenAI provider or system, and another scope than ours)."""
    config = _config()
    genai = config["service"]["pipelines"]["traces/genai"]
    assert genai["exporters"] == ["signal_to_metrics/genai"]
    assert genai["processors"][:2] == ["memory_limiter", "filter/genai_spans"]
    assert all("signal_to_metrics/genai" not in p["exporters"]
               for name, p in config["service"]["pipelines"].items() if name != "traces/genai")
    dropped = config["processors"]["filter/genai_spans"]["trace_conditions"]
    conditions = [c for m in config["connectors"]["signal_to_metrics/genai"]["spans"]
                  for c in m["conditions"]]
    needs = ('span.attributes["gen_ai.operation.name"] == "',  # a named operation
             'span.attributes["gen_ai.provider.name"] != nil', 'span.attributes["gen_ai.system"] != nil')
    assert conditions and all(any(n in c for n in needs) for c in conditions)
    assert all('instrumentation_scope.name != "cugar.otel"' in c for c in conditions)
    assert dropped == ['instrumentation_scope.name == "cugar.otel" or ('
                       'span.attributes["gen_ai.operation.name"] == nil and '
                       'span.attributes["gen_ai.provider.name"] == nil and '
                       'span.attributes["gen_ai.system"] == nil)']


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda p: p.name)
def test_no_override_feeds_the_genai_connector_twice(override: Path) -> None:
    """A pipeline list replaces the main config's: an override that also put the connector
    behind `traces` would count every GenAI span twice (traces and traces/genai)."""
    pipelines = (yaml.safe_load(override.read_text()) or {}).get("service", {}).get("pipelines", {})
    feeding = [name for name, p in pipelines.items() if name != "traces/genai"
               and "signal_to_metrics/genai" in (p or {}).get("exporters", [])]
    assert feeding == [], f"{override.name}: {feeding} export to signal_to_metrics/genai"


def test_metrics_are_pushed_into_prometheus_otlp_receiver() -> None:
    config = _config()
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["otlp_http/prometheus"]
    exporter = config["exporters"]["otlp_http/prometheus"]
    assert exporter["metrics_endpoint"].endswith("/api/v1/otlp/v1/metrics}")
    assert exporter["retry_on_failure"]["enabled"] is True
    # Batching with a bounded queue on every exporter (exporter-side batching, v0.161.0 style).
    for name, settings in config["exporters"].items():
        queue = settings["sending_queue"]
        assert queue["enabled"] and queue["queue_size"] > 0, name


@pytest.mark.parametrize("backend", ["prometheus-scrape.yaml", "remote-write.yaml"])
def test_alternative_metrics_backends_translate_names_as_prometheus_does(backend: str) -> None:
    overlay = yaml.safe_load((ROOT / "collector" / "backends" / backend).read_text())
    (exporter,) = overlay["exporters"].values()
    assert exporter["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert "resource_to_telemetry_conversion" not in exporter or not exporter[
        "resource_to_telemetry_conversion"]["enabled"]  # no resource-attribute label flood
    statements = " ".join(overlay["processors"]["transform/metrics"]["metric_statements"])
    assert 'datapoint.attributes["deployment.environment.name"]' in statements


def test_every_endpoint_is_overridable_by_environment() -> None:
    text = COLLECTOR_CONFIG.read_text()
    for port in ("4317", "4318", "13133"):
        assert re.search(rf"\$\{{env:CUGAR_COLLECTOR_[A-Z_]+:-[^}}]*:{port}\}}", text), port
    assert "${env:CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL:-http://prometheus:9090/" in text
    assert "${env:CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT:-jaeger:4317}" in text
    readers = _config()["service"]["telemetry"]["metrics"]["readers"]
    prometheus = readers[0]["pull"]["exporter"]["prometheus"]
    assert prometheus["port"] == "${env:CUGAR_COLLECTOR_TELEMETRY_PORT:-8888}"
    assert "health_check" in _config()["service"]["extensions"]


COMPONENT_KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")


def test_build_has_exactly_the_components_our_configs_use() -> None:
    """The manifest carries no unused component, and no shipped config needs a missing one."""
    binary = require(components.COLLECTOR)
    listed = yaml.safe_load(subprocess.run([str(binary), "components"], capture_output=True,
                                           text=True, timeout=60, check=True).stdout)
    built = {(kind, entry["name"]) for kind in COMPONENT_KINDS for entry in listed.get(kind) or []}
    used = set()
    for config in (COLLECTOR_CONFIG, *OVERRIDES, *STANDALONE):
        loaded = yaml.safe_load(config.read_text()) or {}
        for kind in COMPONENT_KINDS:
            used |= {(kind, key.split("/")[0]) for key in loaded.get(kind) or {}}
    assert built - used == set(), f"built but used by no shipped config: {sorted(built - used)}"
    assert used - built == set(), f"used by a config but not in the build: {sorted(used - built)}"


SCRAPE = ROOT / "collector" / "backends" / "prometheus-scrape.yaml"
TO_FILE = ROOT / "collector" / "traces-to-file.yaml"
SECURE = ROOT / "collector" / "security" / "otlp-tls-bearer.yaml"
# One line per case: variable, bad value, override config (None: main only), fragment of the
# message that names the config key (or the component) the variable feeds.
BAD_AT_VALIDATE = [
    ("CUGAR_COLLECTOR_MEMORY_LIMIT_MIB", "lots", None, "'limit_mib' expected type 'uint32'"),
    ("CUGAR_COLLECTOR_MEMORY_LIMIT_MIB", "-1", None, "limit_mib"),
    ("CUGAR_COLLECTOR_MEMORY_SPIKE_MIB", "1GiB", None, "'spike_limit_mib' expected type"),
    ("CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT", "jaeger", None,
     "otlp_grpc/traces::clientconfig: address jaeger: missing port"),
    ("CUGAR_COLLECTOR_TRACES_OTLP_INSECURE", "maybe", None, "'tls.insecure' expected type 'bool'"),
    ("CUGAR_COLLECTOR_LOG_LEVEL", "loud", None, "'level' unrecognized level: \"loud\""),
    ("CUGAR_COLLECTOR_TELEMETRY_PORT", "http", None, "prometheus.port' expected type 'int'"),
    ("CUGAR_COLLECTOR_METRIC_EXPIRATION", "soon", SCRAPE, "'metric_expiration' time: invalid"),
    ("CUGAR_COLLECTOR_QUEUE_DIR", "/etc/hostname", None,
     "extensions::file_storage: /etc/hostname is not a directory"),
]
# Listen addresses and files are only checked when the collector starts.
BAD_AT_START = [
    ("CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT", "127.0.0.1", None,
     'failed to start "otlp" receiver: listen tcp: address 127.0.0.1: missing port'),
    ("CUGAR_COLLECTOR_OTLP_HTTP_ENDPOINT", "127.0.0.1", None,
     'failed to start "otlp" receiver: listen tcp: address 127.0.0.1: missing port'),
    ("CUGAR_COLLECTOR_HEALTH_ENDPOINT", "127.0.0.1", None,
     "failed to start extensions: failed to bind to address 127.0.0.1"),
    ("CUGAR_COLLECTOR_TELEMETRY_HOST", "192.0.2.1", None,
     "binding address 192.0.2.1:0 for Prometheus exporter"),
    ("CUGAR_COLLECTOR_PROMETHEUS_ENDPOINT", "127.0.0.1", SCRAPE,
     'failed to start "prometheus" exporter: listen tcp: address 127.0.0.1: missing port'),
    ("CUGAR_COLLECTOR_TRACES_FILE", "/nonexistent/dir/traces.json", TO_FILE,
     'failed to start "file/traces" exporter: open /nonexistent/dir/traces.json'),
    ("CUGAR_COLLECTOR_OTLP_TOKEN_FILE", "/nonexistent/token", SECURE,
     'failed to start extensions: failed to read credentials file "/nonexistent/token"'),
    ("CUGAR_COLLECTOR_TLS_CERT_FILE", "/nonexistent/c.crt", SECURE,
     'failed to start "otlp" receiver: failed to load TLS config: failed to load TLS cert and '
     'key: open /nonexistent/c.crt'),
    ("CUGAR_COLLECTOR_TLS_KEY_FILE", "/nonexistent/c.key", SECURE,
     'failed to start "otlp" receiver: failed to load TLS config: failed to load TLS cert and '
     'key: open /nonexistent/c.key'),
]
# Known gap: accepted by validate and start; exports then fail at run time (logged, counted).
UNCHECKED = {"CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL"}
# Every listener on a free port, so that a start test never clashes with anything running.
FREE_PORTS = {"CUGAR_COLLECTOR_HEALTH_ENDPOINT": "127.0.0.1:0",
              "CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
              "CUGAR_COLLECTOR_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
              "CUGAR_COLLECTOR_PROMETHEUS_ENDPOINT": "127.0.0.1:0",
              "CUGAR_COLLECTOR_TELEMETRY_PORT": "0"}


def _configs(override: Path | None) -> list[Path]:
    return [COLLECTOR_CONFIG] + ([override] if override else [])


def _ids(cases: list[tuple]) -> list[str]:
    return [f"{name}={value}" for name, value, *_ in cases]


def test_every_collector_variable_has_a_bad_value_case() -> None:
    texts = [p.read_text() for p in [COLLECTOR_CONFIG, *OVERRIDES]]
    variables = {v for text in texts for v in re.findall(r"\$\{env:(CUGAR_COLLECTOR_\w+):-", text)}
    covered = {case[0] for case in BAD_AT_VALIDATE + BAD_AT_START} | UNCHECKED
    assert variables == covered


@pytest.mark.parametrize("name,value,override,message", BAD_AT_VALIDATE, ids=_ids(BAD_AT_VALIDATE))
def test_validate_rejects_a_bad_variable_naming_the_config_key(name: str, value: str,
                                                               override: Path | None,
                                                               message: str) -> None:
    result = _validate(*_configs(override), env={name: value})
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("name,value,override,message", BAD_AT_START, ids=_ids(BAD_AT_START))
def test_start_fails_fast_on_a_bad_variable_naming_the_component(name: str, value: str,
                                                                 override: Path | None,
                                                                 message: str,
                                                                 tmp_path: Path) -> None:
    env = dict(FREE_PORTS)
    if override == SECURE:  # files that exist, so that only the case's own one is missing
        for var, file in (("CUGAR_COLLECTOR_OTLP_TOKEN_FILE", "token"),
                          ("CUGAR_COLLECTOR_TLS_CERT_FILE", "c.crt"),
                          ("CUGAR_COLLECTOR_TLS_KEY_FILE", "c.key")):
            (tmp_path / file).write_text("placeholder\n")
            env[var] = str(tmp_path / file)
    env[name] = value
    assert _validate(*_configs(override), env=env).returncode == 0
    result = _run([], *_configs(override), env=env, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


@pytest.mark.xfail(strict=True, reason="the collector checks CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL "
                                       "only when it exports (see UNCHECKED)")
def test_validate_rejects_a_prometheus_otlp_url_that_is_not_a_url() -> None:
    result = _validate(COLLECTOR_CONFIG, env={"CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL": "not-a-url"})
    assert result.returncode != 0
