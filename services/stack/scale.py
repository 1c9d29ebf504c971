"""The scale-out metrics store of docs/scaling.md, on loopback ports: Prometheus agents (OTLP in,
remote write out), Thanos receive routers and ingestors with replication, Thanos query and
Thanos rule.

    store = ThanosStore(workdir, alertmanager_url=..., rules_glob=write_rules(...))
    with store:
        agent = PrometheusAgent(workdir / "agent-0", store.routers[0].remote_write_url)
        ...   # push OTLP into agent.otlp_url; query store.query_url

The flags below are the ones the topology runs with wherever it runs (docs/scaling.md lists
them); the configs are the shipped ones in deploy/scale/, rendered with loopback addresses. Each
process is a ManagedProcess: ready when its /-/ready answers, its log in its own directory, and
`process.kill()` / `start()` again on the same ports and data for failure tests.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self

import yaml

from services.stack import components
from services.stack.components import REPO_ROOT
from services.stack.process import ManagedProcess, ProcessOwner, free_port

SCALE_DIR = REPO_ROOT / "deploy" / "scale"
AGENT_COLLECTOR_CONFIG = SCALE_DIR / "agent-collector.yaml"
PROMETHEUS_AGENT_CONFIG = SCALE_DIR / "prometheus-agent.yml"
GATEWAY_SCRAPER_CONFIG = SCALE_DIR / "gateway-telemetry-scraper.yml"
HASHRINGS = SCALE_DIR / "hashrings.json"

# Every series is written to this many ingestors; a write succeeds once a quorum
# (REPLICATION_FACTOR // 2 + 1 = 2) has it, so one ingestor may be down without losing a sample.
REPLICATION_FACTOR = 3
# The external label each ingestor (and ruler) adds; Thanos query merges the replicas along it.
RECEIVE_REPLICA_LABEL = "receive_replica"
RULE_REPLICA_LABEL = "rule_replica"
# Late samples are accepted for as long as in monitoring/prometheus/prometheus.yml: the collector
# retries for up to 2 minutes, and a service re-routed to another gateway re-sends its counters'
# 0 samples at their start times.
OUT_OF_ORDER_WINDOW = "10m"
# Our rules and dashboards count with `increase(x[w] anchored)`: Prometheus' switch for it, which
# components/patches/thanos-extended-range-selectors.patch adds to thanos query and rule.
EXTENDED_RANGE_SELECTORS = "--enable-feature=promql-extended-range-selectors"
# And the experimental functions the api's freshness verdicts use (ts_of_first_over_time, see
# services/monitoring/queries.py), which Thanos query has a switch for of its own.
EXPERIMENTAL_FUNCTIONS = "--enable-feature=promql-experimental-functions"
PROMETHEUS_AGENT_FLAGS = ("--agent", "--web.enable-otlp-receiver",
                          "--enable-feature=created-timestamp-zero-ingestion")
# The gateways' telemetry scraper: an agent that scrapes (no OTLP receiver), with the single
# Prometheus' 0 sample at a scraped counter's start time.
GATEWAY_SCRAPER_FLAGS = ("--agent", "--enable-feature=created-timestamp-zero-ingestion")


class Startable(Protocol):
    def start(self, timeout: float = ...) -> object: ...

    def stop(self) -> object: ...


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


class ThanosReceive(ProcessOwner):
    """One `thanos receive`: an ingestor (stores its replica of the series, serves them to query
    over gRPC) or, with `hashring` endpoints, a router (takes remote write, forwards each series
    to REPLICATION_FACTOR ingestors, stores nothing)."""

    def __init__(self, workdir: Path, name: str, hashring: Sequence["ThanosReceive"] = ()) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.is_router = bool(hashring)
        self.ports = {k: free_port() for k in ("grpc", "http", "remote_write", "capnproto")}
        self.grpc_address = _addr(self.ports["grpc"])
        self.http_url = f"http://{_addr(self.ports['http'])}"
        self.remote_write_url = f"http://{_addr(self.ports['remote_write'])}/api/v1/receive"
        argv: list[str | Path] = [
            components.THANOS.require(), "receive",
            f"--grpc-address={self.grpc_address}", f"--http-address={_addr(self.ports['http'])}",
            f"--remote-write.address={_addr(self.ports['remote_write'])}",
            f"--receive.capnproto-address={_addr(self.ports['capnproto'])}",
            # (required of every receive node; a router stores nothing, so on it no series
            # ever carries it)
            f'--label={RECEIVE_REPLICA_LABEL}="{name}"',
        ]
        if self.is_router:
            path = self.workdir / "hashrings.json"
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(render_hashrings(
                json.loads(HASHRINGS.read_text()), [(i.grpc_address, _addr(i.ports["capnproto"]))
                                                    for i in hashring]), indent=2))
            argv += [f"--receive.hashrings-file={path}",
                     f"--receive.replication-factor={REPLICATION_FACTOR}"]
        else:
            argv += [f"--tsdb.path={self.workdir / 'data'}",
                     f"--tsdb.out-of-order.time-window={OUT_OF_ORDER_WINDOW}"]
        self.process = ManagedProcess(name, argv, self.workdir / f"{name}.log",
                                      ready_url=f"{self.http_url}/-/ready", cwd=self.workdir)


def render_hashrings(base: list[dict], endpoints: Sequence[tuple[str, str]]) -> list[dict]:
    """deploy/scale/hashrings.json with its endpoints replaced by (gRPC, Cap'n Proto) addresses."""
    rings = json.loads(json.dumps(base))
    rings[0]["endpoints"] = [{"address": grpc, "capnproto_address": capnp}
                             for grpc, capnp in endpoints]
    return rings


class ThanosQuery(ProcessOwner):
    """`thanos query` over the ingestors' and rulers' gRPC store APIs, replicas merged."""

    def __init__(self, workdir: Path, endpoints: Sequence[str], name: str = "thanos-query") -> None:
        self.workdir = Path(workdir)
        self.ports = {k: free_port() for k in ("grpc", "http")}
        self.url = f"http://{_addr(self.ports['http'])}"
        self.process = ManagedProcess(name, [
            components.THANOS.require(), "query",
            f"--grpc-address={_addr(self.ports['grpc'])}",
            f"--http-address={_addr(self.ports['http'])}",
            *(f"--endpoint={e}" for e in endpoints),
            f"--query.replica-label={RECEIVE_REPLICA_LABEL}",
            f"--query.replica-label={RULE_REPLICA_LABEL}",
            EXTENDED_RANGE_SELECTORS, EXPERIMENTAL_FUNCTIONS,
        ], self.workdir / f"{name}.log", ready_url=f"{self.url}/-/ready", cwd=self.workdir)


class ThanosRule(ProcessOwner):
    """`thanos rule` evaluating the repository's rule files through thanos query and sending its
    alerts to Alertmanager; its recorded series are served to query over gRPC."""

    def __init__(self, workdir: Path, query_url: str, rules_glob: str,
                 alertmanager_url: str | None, evaluation_interval: str = "15s",
                 name: str = "thanos-rule", grpc_port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.ports = {"grpc": grpc_port or free_port(), "http": free_port()}
        self.grpc_address = _addr(self.ports["grpc"])
        self.url = f"http://{_addr(self.ports['http'])}"
        self.process = ManagedProcess(name, [
            components.THANOS.require(), "rule",
            f"--grpc-address={self.grpc_address}", f"--http-address={_addr(self.ports['http'])}",
            f"--data-dir={self.workdir / 'data'}", f"--rule-file={rules_glob}",
            f"--query={query_url.removeprefix('http://')}",
            *([f"--alertmanagers.url={alertmanager_url}"] if alertmanager_url else []),
            f"--eval-interval={evaluation_interval}", f"--resend-delay={evaluation_interval}",
            f'--label={RULE_REPLICA_LABEL}="{name}"', f"--alert.label-drop={RULE_REPLICA_LABEL}",
            EXTENDED_RANGE_SELECTORS,
        ], self.workdir / f"{name}.log", ready_url=f"{self.url}/-/ready", cwd=self.workdir)


def render_prometheus_agent_config(base: dict, remote_write_url: str,
                                   batch_send_deadline: str | None = None) -> dict:
    """deploy/scale/prometheus-agent.yml writing to `remote_write_url`."""
    config = json.loads(json.dumps(base))
    for target in config["remote_write"]:
        target["url"] = remote_write_url
        if batch_send_deadline:
            target.setdefault("queue_config", {})["batch_send_deadline"] = batch_send_deadline
    return config


def render_gateway_scraper_config(base: dict, remote_write_url: str, gateways: Mapping[str, str],
                                  scrape_interval: str | None = None,
                                  batch_send_deadline: str | None = None) -> dict:
    """deploy/scale/gateway-telemetry-scraper.yml writing to `remote_write_url`, each target
    `host:port` replaced by `gateways[host]` (the gateway of that name on loopback); the labels
    (`instance` among them) stay as shipped. With `scrape_interval`, the timeout is the same."""
    config = render_prometheus_agent_config(base, remote_write_url, batch_send_deadline)
    if scrape_interval:
        config["global"].update(scrape_interval=scrape_interval, scrape_timeout=scrape_interval)
    named = set()
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            hosts = [t.rsplit(":", 1)[0] for t in static["targets"]]
            missing = [h for h in hosts if h not in gateways]
            if missing:
                raise ValueError(f"{GATEWAY_SCRAPER_CONFIG.name} names {missing}, the topology "
                                 f"has {sorted(gateways)}")
            static["targets"] = [gateways[h] for h in hosts]
            named |= set(hosts)
    if named != set(gateways):
        raise ValueError(f"{GATEWAY_SCRAPER_CONFIG.name} scrapes {sorted(named)}, the topology "
                         f"has {sorted(gateways)}")
    return config


class PrometheusAgent(ProcessOwner):
    """Prometheus in agent mode beside a gateway: OTLP in at `otlp_url`, remote write out."""

    config_file = PROMETHEUS_AGENT_CONFIG
    flags = PROMETHEUS_AGENT_FLAGS

    def __init__(self, workdir: Path, remote_write_url: str, name: str = "prometheus-agent",
                 batch_send_deadline: str | None = "1s") -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://{_addr(self.port)}"
        self.otlp_url = f"{self.url}/api/v1/otlp/v1/metrics"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / self.config_file.name
        config.write_text(yaml.safe_dump(self.render(
            yaml.safe_load(self.config_file.read_text()), remote_write_url, batch_send_deadline),
            sort_keys=False))
        self.process = ManagedProcess(name, [
            components.PROMETHEUS.require(), f"--config.file={config}",
            f"--storage.agent.path={self.workdir / 'wal'}",
            f"--web.listen-address={_addr(self.port)}", *self.flags,
        ], self.workdir / f"{name}.log", ready_url=f"{self.url}/-/ready", cwd=self.workdir)

    def render(self, base: dict, remote_write_url: str, batch_send_deadline: str | None) -> dict:
        return render_prometheus_agent_config(base, remote_write_url, batch_send_deadline)


class GatewayTelemetryScraper(PrometheusAgent):
    """The Prometheus agent that scrapes every gateway's telemetry endpoint (job
    otel-collector-telemetry, `instance` the gateway's name) and remote-writes it to the store.
    `gateways` maps each gateway's name to its telemetry address."""

    config_file = GATEWAY_SCRAPER_CONFIG
    flags = GATEWAY_SCRAPER_FLAGS

    def __init__(self, workdir: Path, remote_write_url: str, gateways: Mapping[str, str],
                 name: str = "gateway-telemetry-scraper", scrape_interval: str | None = "1s",
                 batch_send_deadline: str | None = "1s") -> None:
        self.gateways = dict(gateways)
        self.scrape_interval = scrape_interval
        super().__init__(workdir, remote_write_url, name, batch_send_deadline)

    def render(self, base: dict, remote_write_url: str, batch_send_deadline: str | None) -> dict:
        return render_gateway_scraper_config(base, remote_write_url, self.gateways,
                                             self.scrape_interval, batch_send_deadline)


class ProcessGroup(ABC):
    """Components started in the order `members()` gives (each ready before the next starts)
    and stopped in reverse; a start that fails stops what it had started."""

    start_timeout: float = 60.0

    @abstractmethod
    def members(self) -> list[Startable]: ...

    def start(self, timeout: float | None = None) -> Self:
        self._started: list[Startable] = []
        try:
            for member in self.members():
                self._started.append(member)
                member.start(timeout=timeout or self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while getattr(self, "_started", None):
            self._started.pop().stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThanosStore(ProcessGroup):
    """Ingestors, routers, query and rule, started in that order and stopped in reverse."""

    def __init__(self, workdir: str | Path, *, rules_glob: str, alertmanager_url: str | None,
                 ingestors: int = 3, routers: int = 2, evaluation_interval: str = "15s") -> None:
        self.workdir = Path(workdir)
        self.ingestors = [ThanosReceive(self.workdir / f"ingestor-{i}", f"ingestor-{i}")
                          for i in range(ingestors)]
        self.routers = [ThanosReceive(self.workdir / f"router-{i}", f"router-{i}",
                                      hashring=self.ingestors) for i in range(routers)]
        # Query is given the ruler's gRPC address up front; the ruler starts after query (it
        # evaluates its rules through it).
        rule_grpc_port = free_port()
        self.query = ThanosQuery(self.workdir / "query",
                                 [i.grpc_address for i in self.ingestors] + [_addr(rule_grpc_port)])
        self.rule = ThanosRule(self.workdir / "rule", self.query.url, rules_glob,
                               alertmanager_url, evaluation_interval, grpc_port=rule_grpc_port)
        self.query_url = self.query.url

    def members(self) -> list[Startable]:
        return [*self.ingestors, *self.routers, self.query, self.rule]


# What Thanos query is asked for: replicas merged, and an answer that says so when a store did
# not respond (rather than failing the whole query).
THANOS_QUERY_PARAMS = {"dedup": "true", "partial_response": "true"}
