"""The whole scale-out topology of docs/scaling.md on loopback ports, for the integration tests:

    agents ──OTLP──> agent-side collectors (deploy/scale/agent-collector.yaml, routed by service)
      ──OTLP──> gateways (otel-collector-config.yaml, unchanged)
      ──OTLP──> Prometheus agents ──remote write──> Thanos receive routers
      ──(replication factor 3)──> ingestors <── Thanos query <── Thanos rule ──> Alertmanager
    gateways' telemetry (:8888) <──scrape── gateway telemetry scraper ──remote write──> routers

With `reference=True` every gateway also pushes the same points into one single Prometheus
(the single-machine pipeline's Prometheus, same flags and rules), so a test can compare what the
store answers with what one Prometheus computes from the same workload. Nothing but the test's
comparison reads the reference; it sends no alerts.

    with ScaleTopology(workdir, webhook_url=hook.url) as topo:
        env = topo.agent_env(0)          # OTEL_* for an agent process on "host" 0
        ...
        topo.query("sum(cugar_executions_total)")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from services.monitoring.tunables import (ALERTMANAGER_JOB, COLLECTOR_TELEMETRY_JOB,
                                          PROMETHEUS_JOB)
from services.stack import components
from services.stack.collector import TRACES_TO_FILE, Collector
from services.stack.components import PROMETHEUS_DIR
from services.stack.pipeline import (ALERTMANAGER_CONFIG, API_JOB, JAEGER_JOB, agent_otlp_env,
                                     alertmanager_process, prometheus_process,
                                     render_alertmanager_config, render_prometheus_config,
                                     write_rules)
from services.stack.process import ManagedProcess, free_port
from services.stack.prometheus_api import Result, instant_query
from services.stack.scale import (AGENT_COLLECTOR_CONFIG, THANOS_QUERY_PARAMS,
                                  GatewayTelemetryScraper, ProcessGroup, PrometheusAgent,
                                  Startable, ThanosStore)

# A test-only collector override (written into the work directory): the gateways' metrics also
# go to the reference Prometheus, with the same exporter settings as otlp_http/prometheus.
REFERENCE_EXPORTER = "otlp_http/reference"


class AgentSideCollector(Collector):
    """Our collector build running deploy/scale/agent-collector.yaml (forward only, routed by
    service to the gateways)."""

    def __init__(self, workdir: Path, gateways: list[str], name: str) -> None:
        super().__init__(workdir, overrides=(), name=name, env={
            "CUGAR_COLLECTOR_GATEWAY_ENDPOINTS": "[" + ", ".join(gateways) + "]"})

    def config_args(self) -> list[str]:
        return ["--config", str(AGENT_COLLECTOR_CONFIG)]


def reference_override(main_config: dict) -> dict:
    """Collector config merged over otel-collector-config.yaml: every pipeline exporting to
    otlp_http/prometheus exports to REFERENCE_EXPORTER too."""
    exporter = dict(main_config["exporters"]["otlp_http/prometheus"])
    exporter["metrics_endpoint"] = "${env:CUGAR_COLLECTOR_REFERENCE_OTLP_URL}"
    pipelines = {name: {"exporters": [*p["exporters"], REFERENCE_EXPORTER]}
                 for name, p in main_config["service"]["pipelines"].items()
                 if "otlp_http/prometheus" in p["exporters"]}
    return {"exporters": {REFERENCE_EXPORTER: exporter}, "service": {"pipelines": pipelines}}


class ScaleTopology(ProcessGroup):
    def __init__(self, workdir: str | Path, *, webhook_url: str | None = None,
                 rule_for_override: str | Mapping[str, str] | None = "1s",
                 alert_group_wait: str | None = "1s", evaluation_interval: str = "2s",
                 gateways: int = 2, agent_collectors: int = 2, reference: bool = True,
                 start_timeout: float = 90.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.webhook_url = webhook_url
        self.alert_group_wait = alert_group_wait
        rules_glob = write_rules(self.workdir / "rules", rule_for_override)

        self.alertmanager_port = free_port()
        self.alertmanager_url = f"http://127.0.0.1:{self.alertmanager_port}"
        self.store = ThanosStore(self.workdir / "store", rules_glob=rules_glob,
                                 alertmanager_url=self.alertmanager_url,
                                 evaluation_interval=evaluation_interval)
        self.query_url = self.store.query_url

        self.reference_url: str | None = None
        self.reference: ManagedProcess | None = None
        overrides: list[Path] = [TRACES_TO_FILE]
        if reference:
            port = free_port()
            self.reference_url = f"http://127.0.0.1:{port}"
            ref_dir = self.workdir / "reference"
            ref_dir.mkdir(parents=True, exist_ok=True)
            config = render_prometheus_config(
                yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()),
                scrape_interval="1s", evaluation_interval=evaluation_interval,
                targets={COLLECTOR_TELEMETRY_JOB: None, JAEGER_JOB: None, ALERTMANAGER_JOB: None,
                         API_JOB: None, PROMETHEUS_JOB: f"127.0.0.1:{port}"},
                alertmanager=None, rules_glob=rules_glob)
            (ref_dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            self.reference = prometheus_process(ref_dir, port, ref_dir / "prometheus.yml",
                                                name="reference-prometheus")
            override = self.workdir / "gateway-reference.yaml"
            override.write_text(yaml.safe_dump(reference_override(
                yaml.safe_load((components.REPO_ROOT / "otel-collector-config.yaml").read_text())),
                sort_keys=False))
            overrides.append(override)

        routers = self.store.routers
        self.prometheus_agents = [
            PrometheusAgent(self.workdir / f"prometheus-agent-{i}",
                            routers[i % len(routers)].remote_write_url, name=f"prometheus-agent-{i}")
            for i in range(gateways)]
        self.gateways = [
            Collector(self.workdir / f"gateway-{i}", overrides=overrides, name=f"gateway-{i}", env={
                "CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL": agent.otlp_url,
                **({"CUGAR_COLLECTOR_REFERENCE_OTLP_URL":
                    f"{self.reference_url}/api/v1/otlp/v1/metrics"} if reference else {})})
            for i, agent in enumerate(self.prometheus_agents)]
        # deploy/scale/gateway-telemetry-scraper.yml names the gateways gateway-0, gateway-1, ...
        self.gateway_scraper = GatewayTelemetryScraper(
            self.workdir / "gateway-telemetry-scraper", routers[0].remote_write_url,
            {g.process.name: g.telemetry_address for g in self.gateways})
        gateway_endpoints = [f"127.0.0.1:{g.ports['otlp_grpc']}" for g in self.gateways]
        self.agent_collectors = [
            AgentSideCollector(self.workdir / f"agent-collector-{i}", gateway_endpoints,
                               name=f"agent-collector-{i}") for i in range(agent_collectors)]

    # --- lifecycle ---------------------------------------------------------------------------
    def _alertmanager(self) -> ManagedProcess:
        return alertmanager_process(self.workdir, self.alertmanager_port, render_alertmanager_config(
            yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), webhook_url=self.webhook_url,
            group_wait=self.alert_group_wait))

    def members(self) -> list[Startable]:
        return [self._alertmanager(), self.store, *([self.reference] if self.reference else []),
                *self.prometheus_agents, *self.gateways, self.gateway_scraper,
                *self.agent_collectors]

    # --- clients -------------------------------------------------------------------------------
    def agent_env(self, host: int, export_interval_ms: int = 500) -> dict[str, str]:
        """OTEL_* variables for an agent process on `host` (its agent-side collector)."""
        collector = self.agent_collectors[host % len(self.agent_collectors)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        return {**env, **agent_otlp_env(collector.otlp_grpc_endpoint,
                                        export_interval_ms=export_interval_ms)}

    def query(self, promql: str, at: float | None = None) -> tuple[Result, list[str]]:
        """The store's answer (Thanos query, replicas merged): (result, partial-response
        warnings)."""
        return instant_query(self.query_url, promql, at, THANOS_QUERY_PARAMS)

    def reference_query(self, promql: str, at: float | None = None) -> Result:
        if not self.reference_url:
            raise RuntimeError("this topology runs without the reference Prometheus")
        return instant_query(self.reference_url, promql, at)[0]

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every process' log, for a failure message."""
        procs = [m.process for m in [*self.store.members(), *self.prometheus_agents,
                                     *self.gateways, self.gateway_scraper,
                                     *self.agent_collectors]]
        if self.reference:
            procs.append(self.reference)
        return "\n".join(f"--- {p.name} (running={p.running()}) ---\n{p.log_tail(lines)}"
                         for p in procs)
