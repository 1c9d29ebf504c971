"""The real pipeline on loopback ports: our collector build, Prometheus and Alertmanager.

    with Pipeline(workdir) as p:
        subprocess.run([...agent...], env={**os.environ, **p.agent_env()})
        p.wait_for("sum(cugar_executions_total)", lambda r: r and float(r[0]["value"][1]) > 0, 30)

The collector runs the repository's own otel-collector-config.yaml (plus the traces-to-file
override), with every endpoint moved to a free 127.0.0.1 port through its CUGAR_COLLECTOR_*
variables. Prometheus and Alertmanager get copies of the repository's configs rendered into
`workdir` (intervals, targets, webhook URL, optionally shortened alert `for:` durations); the
rules themselves are the repository's. Any component that fails to start raises with its name
and log tail, and everything started so far is stopped again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from services.stack import components
from services.stack.components import REPO_ROOT
from services.stack.process import ManagedProcess, ProcessFailed, free_port, wait_until

COLLECTOR_CONFIG = REPO_ROOT / "otel-collector-config.yaml"
TRACES_TO_FILE = REPO_ROOT / "collector" / "traces-to-file.yaml"
PROMETHEUS_DIR = REPO_ROOT / "monitoring" / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"

COLLECTOR_JOB = "otel-collector"
COLLECTOR_TELEMETRY_JOB = "otel-collector-telemetry"
PROMETHEUS_JOB = "prometheus"
API_JOB = "cugar-api"

Result = list[dict[str, Any]]


class PipelineError(RuntimeError):
    """The pipeline could not be brought up or queried; the message names the component."""


def render_rules(text: str, for_override: str | Mapping[str, str] | None) -> str:
    """A rules file with alert `for:` durations replaced (all alerts, or those named)."""
    if for_override is None:
        return text
    doc = yaml.safe_load(text)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if name is None:
                continue
            if isinstance(for_override, str):
                rule["for"] = for_override
            elif name in for_override:
                rule["for"] = for_override[name]
    return yaml.safe_dump(doc, sort_keys=False)


def render_prometheus_config(base: dict, *, scrape_interval: str, evaluation_interval: str,
                             targets: Mapping[str, str | None], alertmanager: str | None,
                             rules_glob: str, api_key_file: Path | None = None) -> dict:
    """The repository's prometheus.yml with test intervals and loopback targets.

    `targets` maps scrape job name -> "host:port"; a job mapped to None is dropped.
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
        if targets[name] is None:
            continue
        job["static_configs"] = [{"targets": [targets[name]]}]
        if name == API_JOB and api_key_file is not None:
            job["authorization"] = {"type": "Bearer", "credentials_file": str(api_key_file)}
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def render_alertmanager_config(base: dict, *, webhook_url: str | None,
                               group_wait: str | None) -> dict:
    """alertmanager.yml with every webhook pointed at `webhook_url` and short group timings."""
    config = json.loads(json.dumps(base))
    if webhook_url:
        for receiver in config.get("receivers", []):
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = webhook_url
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
                 collector_env: Mapping[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.with_alertmanager = alertmanager
        self.webhook_url = webhook_url
        self.api_target = api_target
        self.rule_for_override = rule_for_override
        self.alert_group_wait = alert_group_wait
        self.api_key = api_key
        self.collector_env = dict(collector_env or {})
        self.start_timeout = start_timeout

        ports = {name: free_port() for name in (
            "otlp_grpc", "otlp_http", "exporter", "telemetry", "health", "prometheus",
            "alertmanager")}
        self.ports = ports
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{ports['otlp_grpc']}"
        self.otlp_http_endpoint = f"http://127.0.0.1:{ports['otlp_http']}"
        self.collector_exporter_url = f"http://127.0.0.1:{ports['exporter']}/metrics"
        self.collector_telemetry_url = f"http://127.0.0.1:{ports['telemetry']}/metrics"
        self.collector_health_url = f"http://127.0.0.1:{ports['health']}/"
        self.prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
        self.alertmanager_url = (f"http://127.0.0.1:{ports['alertmanager']}"
                                 if alertmanager else None)
        self.traces_file = self.workdir / "traces.jsonl"
        self._processes: list[ManagedProcess] = []

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
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

    def collector_env_vars(self) -> dict[str, str]:
        p = self.ports
        return {
            "CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p['otlp_grpc']}",
            "CUGAR_COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p['otlp_http']}",
            "CUGAR_COLLECTOR_PROMETHEUS_ENDPOINT": f"127.0.0.1:{p['exporter']}",
            "CUGAR_COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{p['health']}",
            "CUGAR_COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
            "CUGAR_COLLECTOR_TELEMETRY_PORT": str(p["telemetry"]),
            "CUGAR_COLLECTOR_TRACES_FILE": str(self.traces_file),
            **self.collector_env,
        }

    def _start_collector(self) -> None:
        binary = components.COLLECTOR.require()
        self._launch(ManagedProcess(
            "collector", [binary, "--config", COLLECTOR_CONFIG, "--config", TRACES_TO_FILE],
            self.workdir / "collector.log", ready_url=self.collector_health_url,
            env=self.collector_env_vars(), cwd=self.workdir))

    def _start_alertmanager(self) -> None:
        binary = components.ALERTMANAGER.require()
        config = render_alertmanager_config(
            yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), webhook_url=self.webhook_url,
            group_wait=self.alert_group_wait)
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._launch(ManagedProcess(
            "alertmanager",
            [binary, f"--config.file={path}", f"--storage.path={self.workdir / 'alertmanager-data'}",
             f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
             "--cluster.listen-address="],
            self.workdir / "alertmanager.log", ready_url=f"{self.alertmanager_url}/-/ready",
            cwd=self.workdir))

    def _render_prometheus(self) -> Path:
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(exist_ok=True)
        for rules in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
            (rules_dir / rules.name).write_text(
                render_rules(rules.read_text(), self.rule_for_override))
        api_key_file = None
        if self.api_key:
            api_key_file = self.workdir / "api-key"
            api_key_file.write_text(self.api_key)
            api_key_file.chmod(0o600)
        p = self.ports
        config = render_prometheus_config(
            yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()),
            scrape_interval=self.scrape_interval, evaluation_interval=self.evaluation_interval,
            targets={COLLECTOR_JOB: f"127.0.0.1:{p['exporter']}",
                     COLLECTOR_TELEMETRY_JOB: f"127.0.0.1:{p['telemetry']}",
                     PROMETHEUS_JOB: f"127.0.0.1:{p['prometheus']}",
                     API_JOB: self.api_target},
            alertmanager=(f"127.0.0.1:{p['alertmanager']}" if self.with_alertmanager else None),
            rules_glob=str(rules_dir / "*.yml"), api_key_file=api_key_file)
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start_prometheus(self) -> None:
        binary = components.PROMETHEUS.require()
        config = self._render_prometheus()
        self._launch(ManagedProcess(
            "prometheus",
            [binary, f"--config.file={config}",
             f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}"],
            self.workdir / "prometheus.log", ready_url=f"{self.prometheus_url}/-/ready",
            cwd=self.workdir))

    def _wait_for_scrapes(self) -> None:
        """Prometheus has scraped the collector successfully (the rules rely on it)."""
        jobs = (COLLECTOR_JOB, COLLECTOR_TELEMETRY_JOB)

        def scraped() -> bool:
            up = {r["metric"].get("job"): r["value"][1] for r in self._try_query("up") or []}
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
            data = self._get("/api/v1/targets")["data"]["activeTargets"]
        except PipelineError as exc:
            return f"(targets unavailable: {exc})"
        return "\n".join(f"target {t['labels'].get('job')} {t['scrapeUrl']}: {t['health']} "
                         f"{t.get('lastError') or ''}".rstrip() for t in data)

    # --- clients ---------------------------------------------------------------------------
    def agent_env(self, protocol: str = "grpc", export_interval_ms: int = 500) -> dict[str, str]:
        """Standard OTEL_* variables pointing an agent process at this collector."""
        endpoint = self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms),
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_SDK_DISABLED": "false",
        }

    def _get(self, path: str, params: Mapping[str, str] | None = None,
             base: str | None = None) -> dict:
        url = (base or self.prometheus_url) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback)
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise PipelineError(f"GET {url} -> HTTP {exc.code}: {body}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PipelineError(f"GET {url} failed: {exc}") from None

    def query(self, promql: str) -> Result:
        """Instant query; the result vector (list of {"metric": {...}, "value": [t, "v"]})."""
        body = self._get("/api/v1/query", {"query": promql})
        if body.get("status") != "success":
            raise PipelineError(f"query {promql!r} failed: {body}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def _try_query(self, promql: str) -> Result | None:
        try:
            return self.query(promql)
        except PipelineError:
            return None

    def wait_for(self, promql: str, predicate: Callable[[Result], bool],
                 timeout: float = 30.0, interval: float = 0.25) -> Result:
        """Poll `promql` until `predicate(result)` holds; TimeoutError shows the last result."""
        deadline = time.monotonic() + timeout
        last: Result | None = None
        while True:
            last = self._try_query(promql)
            if last is not None and predicate(last):
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"after {timeout:.0f}s, {promql!r} still does not satisfy "
                                   f"the condition; last result: {json.dumps(last)[:2000]}")
            time.sleep(interval)

    def alerts(self) -> list[dict]:
        """Alerts as Prometheus sees them (pending and firing)."""
        return self._get("/api/v1/alerts")["data"]["alerts"]

    def alertmanager_alerts(self) -> list[dict]:
        if not self.alertmanager_url:
            raise PipelineError("this pipeline runs without Alertmanager")
        return self._get("/api/v2/alerts", base=self.alertmanager_url)  # type: ignore[return-value]


def value(result: Result) -> float | None:
    """The single sample of an instant-query result (None when absent)."""
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"expected one series, got {len(result)}: {result}")
    return float(result[0]["value"][1])


__all__ = ["Pipeline", "PipelineError", "ProcessFailed", "value", "render_rules",
           "render_prometheus_config", "render_alertmanager_config"]
