"""Our collector build running the repository's configuration on free loopback ports.

The shipped otel-collector-config.yaml is used as is; only its CUGAR_COLLECTOR_* variables move
every endpoint to 127.0.0.1 and a free port. Extra `--config` files (overrides such as
collector/traces-to-file.yaml or a backend from collector/backends/) are layered on top.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.stack import components
from services.stack.components import REPO_ROOT
from services.stack.process import ManagedProcess, ProcessOwner, free_port

COLLECTOR_CONFIG = REPO_ROOT / "otel-collector-config.yaml"
TRACES_TO_FILE = REPO_ROOT / "collector" / "traces-to-file.yaml"

MEMORY_LIMIT_VAR = "CUGAR_COLLECTOR_MEMORY_LIMIT_MIB"
# GOMEMLIMIT as the memory_limiter README recommends: 80 % of its hard limit (limit_mib), so the
# Go runtime collects garbage harder before the limiter has to refuse data.
GO_MEMORY_LIMIT_SHARE = 0.8


def default_memory_limit_mib(config: Path | None = None) -> int:
    """The memory_limiter's limit_mib default, read from the collector config (one source)."""
    text = (config or COLLECTOR_CONFIG).read_text()
    match = re.search(r"limit_mib: \$\{env:" + MEMORY_LIMIT_VAR + r":-(\d+)\}", text)
    if match is None:
        raise ValueError(f"{config or COLLECTOR_CONFIG} has no limit_mib default in "
                         f"${{env:{MEMORY_LIMIT_VAR}:-N}}")
    return int(match.group(1))


def go_memory_limit(env: Mapping[str, str] | None = None) -> str:
    """The GOMEMLIMIT value for a collector started with `env` (default: this process's
    environment): GOMEMLIMIT itself when set, else 80 % of its memory_limiter limit_mib."""
    env = os.environ if env is None else env
    if env.get("GOMEMLIMIT"):
        return env["GOMEMLIMIT"]
    given = env.get(MEMORY_LIMIT_VAR, "").strip()
    # A malformed limit is left to the collector to reject (its error names limit_mib).
    limit = int(given) if given.isdigit() else default_memory_limit_mib()
    return f"{max(1, int(limit * GO_MEMORY_LIMIT_SHARE))}MiB"

# Collector self-metrics the pipeline alerts use; tests/test_collector_live.py proves that a
# running collector of our build exposes each of them under exactly this name.
COLLECTOR_SELF_METRICS = frozenset({
    "otelcol_receiver_refused_spans", "otelcol_receiver_refused_metric_points",
    "otelcol_exporter_send_failed_spans", "otelcol_exporter_send_failed_metric_points",
    "otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity",
})
# Counters exposed only once they have counted something, each proven by name (as Prometheus
# stores it) where it is made to count: the cardinality guard's overflow
# (tests/test_collector_cardinality.py) and filter/invalid's dropped points
# (tests/test_bad_otlp.py).
LAZY_SELF_METRICS = frozenset({"otelcol_cardinality_guard_overflow_points",
                               "otelcol_processor_filter_datapoints_filtered"})


class Collector(ProcessOwner):
    """One collector process; `start()` returns once its health check answers."""

    def __init__(self, workdir: str | Path, overrides: Sequence[str | Path] = (TRACES_TO_FILE,),
                 env: Mapping[str, str] | None = None, name: str = "collector",
                 ports: Mapping[str, int] | None = None) -> None:
        """`ports` fixes some of otlp_grpc, otlp_http, exporter, telemetry, health; the rest
        are free ports."""
        self.workdir = Path(workdir).resolve()
        self.overrides = [Path(o) for o in overrides]
        self.ports = {key: (ports or {}).get(key) or free_port() for key in (
            "otlp_grpc", "otlp_http", "exporter", "telemetry", "health")}
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{self.ports['otlp_grpc']}"
        self.otlp_http_endpoint = f"http://127.0.0.1:{self.ports['otlp_http']}"
        self.exporter_address = f"127.0.0.1:{self.ports['exporter']}"
        self.telemetry_address = f"127.0.0.1:{self.ports['telemetry']}"
        self.exporter_url = f"http://{self.exporter_address}/metrics"
        self.telemetry_url = f"http://{self.telemetry_address}/metrics"
        self.health_url = f"http://127.0.0.1:{self.ports['health']}/"
        self.traces_file = self.workdir / "traces.jsonl"
        # The exporters' persistent sending queues: a restart in the same workdir resumes them.
        self.queue_dir = self.workdir / f"{name}-queue"
        self.extra_env = dict(env or {})
        self.process = ManagedProcess(
            name, [components.COLLECTOR.require(), *self.config_args()],
            self.workdir / f"{name}.log", ready_url=self.health_url, env=self.env(),
            cwd=self.workdir)

    def config_args(self) -> list[str]:
        args = ["--config", str(COLLECTOR_CONFIG)]
        for override in self.overrides:
            args += ["--config", str(override)]
        return args

    def env(self) -> dict[str, str]:
        p = self.ports
        return {
            "GOMEMLIMIT": go_memory_limit({**os.environ, **self.extra_env}),
            "CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p['otlp_grpc']}",
            "CUGAR_COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p['otlp_http']}",
            "CUGAR_COLLECTOR_PROMETHEUS_ENDPOINT": self.exporter_address,
            "CUGAR_COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{p['health']}",
            "CUGAR_COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
            "CUGAR_COLLECTOR_TELEMETRY_PORT": str(p["telemetry"]),
            "CUGAR_COLLECTOR_TRACES_FILE": str(self.traces_file),
            "CUGAR_COLLECTOR_QUEUE_DIR": str(self.queue_dir),
            **self.extra_env,
        }
