"""The real pipeline on loopback ports: our collector build, Prometheus, Alertmanager and Jaeger.

    with Pipeline(workdir) as p:
        subprocess.run([...agent...], env={**os.environ, **p.agent_env()})
        p.wait_for("sum(cugar_executions_total)", lambda r: r and float(r[0]["value"][1]) > 0, 30)

The collector runs the repository's own otel-collector-config.yaml, with every endpoint moved
to a free 127.0.0.1 port through its CUGAR_COLLECTOR_* variables; its traces go to Jaeger
(monitoring/jaeger/config.yaml), or to a file (collector/traces-to-file.yaml) with
`jaeger=False`. Prometheus and Alertmanager get copies of the repository's configs rendered into
`workdir` (intervals, targets, webhook URL, optionally shortened alert `for:` durations); the
rules themselves are the repository's. Any component that fails to start raises with its name
and log tail, and everything started so far is stopped again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from services.stack import components
from services.stack.collector import TRACES_TO_FILE, Collector
from services.stack.components import PROMETHEUS_DIR, REPO_ROOT
from services.monitoring.tunables import ALERTMANAGER_JOB, COLLECTOR_TELEMETRY_JOB, PROMETHEUS_JOB
from services.stack.jaeger import Jaeger
from services.stack.probe import read_spans
from services.stack.process import ManagedProcess, ProcessFailed, free_port, wait_until
from services.stack.prometheus_api import PrometheusClient, QueryError, Result, get_json, value

ALERTMANAGER_CONFIG = REPO_ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"

JAEGER_JOB = "jaeger"
API_JOB = "cugar-api"
# The alternative metrics path (collector/backends/prometheus-scrape.yaml): Prometheus scrapes
# the collector's prometheus exporter under this job instead of receiving OTLP pushes.
COLLECTOR_SCRAPE_JOB = "otel-collector"
PROMETHEUS_SCRAPE_BACKEND = REPO_ROOT / "collector" / "backends" / "prometheus-scrape.yaml"
METRICS_PATHS = ("push", "scrape")

# How Prometheus runs wherever we start it (docker-compose.yml passes the same flags; a test
# compares them): the OTLP receiver the collector pushes to, a 0 sample at each series' start
# time, the `anchored` range selectors the rules count with, the experimental functions the
# API's freshness verdicts use (ts_of_first_over_time), and exemplar storage (the trace
# ids the latency histograms' exemplars carry, /api/v1/query_exemplars; its size is
# storage.exemplars.max_exemplars in prometheus.yml).
PROMETHEUS_FLAGS = (
    "--web.enable-otlp-receiver",
    "--enable-feature=created-timestamp-zero-ingestion,promql-extended-range-selectors,"
    "promql-experimental-functions,exemplar-storage",
)
# And Alertmanager: its notification counters carry the receiver's name (receiver_name), so
# the alert-delivery alerts say which receiver fails.
ALERTMANAGER_FLAGS = ("--enable-feature=receiver-name-in-metrics",)


class PipelineError(RuntimeError):
    """The pipeline could not be brought up or queried; the message names the component."""


# Alerts whose condition holds for a moment at every start: Prometheus discovers its
# Alertmanager up to 5 s after it starts (its discovery manager's update tick), so a shortened
# `for:` would page at each start. A string override leaves them alone; name them to shorten.
STARTUP_ALERTS = frozenset({"PrometheusNotConnectedToAlertmanagers"})


def render_rules(text: str, for_override: str | Mapping[str, str] | None) -> str:
    """A rules file with alert `for:` durations replaced (all alerts but STARTUP_ALERTS, or
    those named)."""
    if for_override is None:
        return text
    doc = yaml.safe_load(text)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if name is None:
                continue
            if isinstance(for_override, str):
                if name not in STARTUP_ALERTS:
                    rule["for"] = for_override
            elif name in for_override:
                rule["for"] = for_override[name]
    return yaml.safe_dump(doc, sort_keys=False)


def _point_key_file(http_config: dict, key_file: Path | None) -> dict:
    """`http_config` sending the API key from `key_file` as a Bearer token; without a key file,
    no authorization at all (the shipped configs name the compose container's file)."""
    if key_file is None:
        http_config.pop("authorization", None)
    else:
        http_config["authorization"] = {"type": "Bearer", "credentials_file": str(key_file)}
    return http_config


def render_prometheus_config(base: dict, *, scrape_interval: str, evaluation_interval: str,
                             targets: Mapping[str, str | Sequence[str] | None],
                             alertmanager: str | None, rules_glob: str,
                             api_key_file: Path | None = None,
                             metrics_targets: Sequence[str] = ()) -> dict:
    """The repository's prometheus.yml with test intervals and loopback targets.

    `targets` maps scrape job name -> "host:port" (or a list of them); a job mapped to None is
    dropped. `metrics_targets` adds the scrape job of the alternative metrics path (the
    collector's prometheus exporter, or agents serving /metrics in-process), keeping the
    `job` / `instance` each series carries.
    """
    config = json.loads(json.dumps(base))  # deep copy of plain YAML data
    config["global"].update(scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
                            scrape_timeout=scrape_interval)
    config["rule_files"] = [rules_glob]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        config.pop("alerting", None)
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            raise PipelineError(f"prometheus.yml has a scrape job {name!r} the harness does not "
                                f"know how to point at a local target")
        job_targets = targets[name]
        if job_targets is None:
            continue
        if isinstance(job_targets, str):
            job_targets = [job_targets]
        job["static_configs"] = [{"targets": list(job_targets)}]
        if name == API_JOB:
            _point_key_file(job, api_key_file)
        jobs.append(job)
    if metrics_targets:
        jobs.append({"job_name": COLLECTOR_SCRAPE_JOB, "honor_labels": True,
                     "static_configs": [{"targets": list(metrics_targets)}]})
    config["scrape_configs"] = jobs
    return config


def write_rules(rules_dir: Path, for_override: str | Mapping[str, str] | None = None) -> str:
    """The repository's rules files copied into `rules_dir` (see render_rules); their glob."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    for rules in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        (rules_dir / rules.name).write_text(render_rules(rules.read_text(), for_override))
    return str(rules_dir / "*.yml")


def write_api_key(workdir: Path, api_key: str | None) -> Path | None:
    """The API key in a file Prometheus and Alertmanager read (never in their configs)."""
    if not api_key:
        return None
    path = workdir / "api-key"
    path.write_text(api_key)
    path.chmod(0o600)
    return path


def prometheus_process(workdir: Path, port: int, config_path: Path, *extra_args: str,
                       name: str = "prometheus") -> ManagedProcess:
    """Prometheus on 127.0.0.1:`port` with its data and log in `workdir`; ready at /-/ready."""
    return ManagedProcess(
        name,
        [components.PROMETHEUS.require(), f"--config.file={config_path}",
         f"--storage.tsdb.path={workdir / 'prometheus-data'}",
         f"--web.listen-address=127.0.0.1:{port}", *PROMETHEUS_FLAGS, *extra_args],
        workdir / "prometheus.log", ready_url=f"http://127.0.0.1:{port}/-/ready", cwd=workdir)


def alertmanager_process(workdir: Path, port: int, config: dict) -> ManagedProcess:
    """Alertmanager on 127.0.0.1:`port` with `config` (a rendered alertmanager.yml), its data
    and log in `workdir`, clustering off; ready at /-/ready."""
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ManagedProcess(
        "alertmanager",
        [components.ALERTMANAGER.require(), f"--config.file={path}",
         f"--storage.path={workdir / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", *ALERTMANAGER_FLAGS],
        workdir / "alertmanager.log", ready_url=f"http://127.0.0.1:{port}/-/ready", cwd=workdir)


def agent_otlp_env(endpoint: str, protocol: str = "grpc",
                   export_interval_ms: int = 500) -> dict[str, str]:
    """Standard OTEL_* variables pointing an agent process at the collector at `endpoint`, with
    the short export intervals the tests and `make run` use."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_SDK_DISABLED": "false",
    }


def _rebase(url: str, base_url: str) -> str:
    """`url` with the scheme and host of `base_url`, keeping its own path and query."""
    base, own = urlsplit(base_url), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, own.path, own.query, own.fragment))


def render_alertmanager_config(base: dict, *, webhook_url: str | None,
                               group_wait: str | None, webhook_base_url: str | None = None,
                               credentials_file: Path | None = None) -> dict:
    """alertmanager.yml with short group timings and the webhooks pointed elsewhere.

    `webhook_url` replaces every receiver's URL (one test receiver for all); `webhook_base_url`
    replaces only scheme and host, so each receiver keeps its path (the API's
    /alerts/<severity>). `credentials_file` makes every webhook send its content as a Bearer
    token (the API key); without it the webhooks send no authorization.
    """
    config = json.loads(json.dumps(base))
    for receiver in config.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            if webhook_url:
                hook["url"] = webhook_url
            elif webhook_base_url:
                hook["url"] = _rebase(hook["url"], webhook_base_url)
            if http_config := _point_key_file(hook.pop("http_config", {}), credentials_file):
                hook["http_config"] = http_config
    if group_wait:
        routes = [config["route"]]
        while routes:
            route = routes.pop()
            route["group_wait"] = group_wait
            route["group_interval"] = group_wait
            routes.extend(route.get("routes", []))
    return config


class Pipeline:
    """Collector + Prometheus (+ Alertmanager) on free loopback ports, rendered into `workdir`."""

    def __init__(self, workdir: str | Path, scrape_interval: str = "1s",
                 evaluation_interval: str = "1s", alertmanager: bool = True,
                 webhook_url: str | None = None, api_target: str | None = None,
                 rule_for_override: str | Mapping[str, str] | None = None, *,
                 alert_group_wait: str | None = None, api_key: str | None = None,
                 webhook_base_url: str | None = None,
                 collector_env: Mapping[str, str] | None = None,
                 collector_overrides: Sequence[str | Path] = (),
                 jaeger: bool = True, ports: Mapping[str, int] | None = None,
                 metrics_path: str = "push", start_timeout: float = 60.0) -> None:
        """`ports` fixes listen ports by name (otlp_grpc, otlp_http, prometheus, alertmanager,
        jaeger_ui, and the collector's exporter/telemetry/health); the rest are free ports.
        `metrics_path` is "push" (the collector pushes OTLP into Prometheus, the default) or
        "scrape" (Prometheus scrapes the collector's prometheus exporter).
        `collector_overrides` are collector config files merged over the others, last."""
        if metrics_path not in METRICS_PATHS:
            raise PipelineError(f"metrics_path must be one of {METRICS_PATHS}, not {metrics_path!r}")
        ports = dict(ports or {})
        self.metrics_path = metrics_path
        self.workdir = Path(workdir).resolve()
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.with_alertmanager = alertmanager
        self.webhook_url = webhook_url
        self.webhook_base_url = webhook_base_url
        self.api_target = api_target
        self.rule_for_override = rule_for_override
        self.alert_group_wait = alert_group_wait
        self.api_key = api_key
        self.start_timeout = start_timeout

        prometheus_port = ports.get("prometheus") or free_port()
        self.prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        self.jaeger = (Jaeger(self.workdir, ports={"query_http": ports.get("jaeger_ui", 0)})
                       if jaeger else None)
        overrides = [] if self.jaeger else [TRACES_TO_FILE]
        if metrics_path == "scrape":
            overrides.append(PROMETHEUS_SCRAPE_BACKEND)
        overrides.extend(collector_overrides)
        self.collector = Collector(self.workdir, overrides=overrides, ports=ports, env={
            "CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL": f"{self.prometheus_url}/api/v1/otlp/v1/metrics",
            **({"CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT": self.jaeger.otlp_grpc_endpoint}
               if self.jaeger else {}),
            **(collector_env or {})})
        self.ports = {**self.collector.ports, "prometheus": prometheus_port,
                      "alertmanager": ports.get("alertmanager") or free_port()}
        self.otlp_grpc_endpoint = self.collector.otlp_grpc_endpoint
        self.otlp_http_endpoint = self.collector.otlp_http_endpoint
        self.collector_exporter_url = self.collector.exporter_url
        self.collector_telemetry_url = self.collector.telemetry_url
        self.collector_health_url = self.collector.health_url
        self.prometheus = PrometheusClient(self.prometheus_url)
        self.alertmanager_url = (f"http://127.0.0.1:{self.ports['alertmanager']}"
                                 if alertmanager else None)
        self.jaeger_url = self.jaeger.query_url if self.jaeger else None
        self.traces_file = None if self.jaeger else self.collector.traces_file
        self._processes: list[ManagedProcess] = []
        self._api_key_file: Path | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._api_key_file = write_api_key(self.workdir, self.api_key)
        try:
            if self.jaeger:
                self._launch(self.jaeger.process)
            self._start_collector()
            if self.with_alertmanager:
                self._start_alertmanager()
            self._start_prometheus()
            self._wait_for_scrapes()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while self._processes:
            self._processes.pop().stop()

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process(self, name: str) -> ManagedProcess:
        for proc in self._processes:
            if proc.name == name:
                return proc
        raise KeyError(name)

    def _launch(self, proc: ManagedProcess) -> None:
        self._processes.append(proc)
        proc.start(timeout=self.start_timeout)

    def _start_collector(self) -> None:
        self._launch(self.collector.process)

    def _start_alertmanager(self) -> None:
        config = render_alertmanager_config(
            yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), webhook_url=self.webhook_url,
            group_wait=self.alert_group_wait, webhook_base_url=self.webhook_base_url,
            credentials_file=self._api_key_file)
        self._launch(alertmanager_process(self.workdir, self.ports["alertmanager"], config))

    def _render_prometheus(self) -> Path:
        p = self.ports
        config = render_prometheus_config(
            yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()),
            scrape_interval=self.scrape_interval, evaluation_interval=self.evaluation_interval,
            targets={COLLECTOR_TELEMETRY_JOB: self.collector.telemetry_address,
                     JAEGER_JOB: self.jaeger.telemetry_address if self.jaeger else None,
                     PROMETHEUS_JOB: f"127.0.0.1:{p['prometheus']}",
                     ALERTMANAGER_JOB: (f"127.0.0.1:{p['alertmanager']}"
                                        if self.with_alertmanager else None),
                     API_JOB: self.api_target},
            alertmanager=(f"127.0.0.1:{p['alertmanager']}" if self.with_alertmanager else None),
            rules_glob=write_rules(self.workdir / "rules", self.rule_for_override),
            api_key_file=self._api_key_file,
            metrics_targets=[self.collector.exporter_address] if self.metrics_path == "scrape" else ())
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start_prometheus(self) -> None:
        self._launch(prometheus_process(
            self.workdir, self.ports["prometheus"], self._render_prometheus(),
            # Firing alerts are re-sent at this pace; the default (1m) would hold back an alert
            # that fired before the Alertmanager target was discovered (up to 5s after start).
            f"--rules.alert.resend-delay={self.evaluation_interval}"))

    def _wait_for_scrapes(self) -> None:
        """Prometheus has scraped the collector's telemetry, Jaeger's, Alertmanager's and, on the
        scrape path, the collector's exporter successfully: the pipeline and alert-delivery
        alerts and the dashboards rely on it."""
        jobs = ((COLLECTOR_TELEMETRY_JOB,) + ((JAEGER_JOB,) if self.jaeger else ())
                + ((ALERTMANAGER_JOB,) if self.with_alertmanager else ())
                + ((COLLECTOR_SCRAPE_JOB,) if self.metrics_path == "scrape" else ()))

        def scraped() -> bool:
            up = {r["metric"].get("job"): r["value"][1]
                  for r in self.prometheus.try_query("up") or []}
            return all(up.get(job) == "1" for job in jobs)

        try:
            wait_until(scraped, self.start_timeout, interval=0.2,
                       what="Prometheus' first successful scrape of the collector")
        except TimeoutError as exc:
            raise PipelineError(f"{exc}\n{self._target_report()}\n--- prometheus log tail ---\n"
                                f"{self.process('prometheus').log_tail()}\n--- collector log "
                                f"tail ---\n{self.process('collector').log_tail()}") from None

    def _target_report(self) -> str:
        try:
            targets = self.prometheus.targets()
        except QueryError as exc:
            return f"(targets unavailable: {exc})"
        return "\n".join(f"target {t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} "
                         f"{t.get('lastError') or ''}".rstrip() for t in targets)

    # --- clients ---------------------------------------------------------------------------
    def agent_env(self, protocol: str = "grpc", export_interval_ms: int = 500) -> dict[str, str]:
        """Standard OTEL_* variables pointing an agent process at this collector."""
        endpoint = self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint
        return agent_otlp_env(endpoint, protocol, export_interval_ms)

    def query(self, promql: str) -> Result:
        """Instant query; the result vector (list of {"metric": {...}, "value": [t, "v"]})."""
        return self.prometheus.query(promql)

    def wait_for(self, promql: str, predicate: Callable[[Result], bool],
                 timeout: float = 30.0, interval: float = 0.25) -> Result:
        """Poll `promql` until `predicate(result)` holds; TimeoutError shows the last result."""
        return self.prometheus.wait_for(promql, predicate, timeout, interval)

    def spans(self, service: str) -> list[dict]:
        """Every span of `service` the trace backend holds (Jaeger's /api/v3/traces, or the
        trace file with jaeger=False), flattened by services.stack.probe.flatten_spans."""
        if self.jaeger:
            return self.jaeger.spans(service)
        return [s for s in read_spans(self.collector.traces_file)
                if s["resource"].get("service.name") == service]

    def alerts(self) -> list[dict]:
        """Alerts as Prometheus sees them (pending and firing)."""
        return self.prometheus.alerts()

    def alertmanager_alerts(self) -> list[dict]:
        """Alerts as Alertmanager holds them (with inhibition / silence status)."""
        if not self.alertmanager_url:
            raise PipelineError("this pipeline runs without Alertmanager")
        return get_json(f"{self.alertmanager_url}/api/v2/alerts")

    @property
    def processes(self) -> list[ManagedProcess]:
        """The started processes, in start order (a supervisor restarts one with `start()`)."""
        return list(self._processes)


__all__ = ["Pipeline", "PipelineError", "ProcessFailed", "QueryError", "value", "render_rules",
           "render_prometheus_config", "render_alertmanager_config", "prometheus_process",
           "write_rules", "write_api_key", "PROMETHEUS_DIR"]
