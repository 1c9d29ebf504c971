"""The scale-out topology of docs/scaling.md, proven with real processes on loopback.

Several simulated agent processes (six services, seven instances) send to two agent-side
collectors, which route by service to two gateways; the gateways push into Prometheus agents
that remote-write to two Thanos receive routers, which replicate every series to three
ingestors (replication factor 3, write quorum 2); Thanos query answers over them and Thanos rule
evaluates the repository's rules and alerts through it into the repository's Alertmanager
routing. Each gateway also pushes the same points into one single Prometheus, the reference.

Mid-load one ingestor and one gateway (one that carries traffic) are killed with SIGKILL. While
they are down the store must answer every instance's series (or say the answer is partial) and
page from its own data; after both are back and the agents have finished, every counter must
equal the agents' own ground truth exactly, in the merged answer and in each replica, with one
series per identity; and golden-signal and Grafana panel queries must give exactly what the
single Prometheus gives for the same workload.

The gateways' own telemetry (otelcol_*, scrape job otel-collector-telemetry) reaches the store
through the gateway telemetry scraper, one `instance` per gateway: the killed gateway is `up == 0`
there and Thanos rule raises ScrapeTargetDown for it.

Then, with everything back, a third-party GenAI agent's spans through both agent-side collectors
must give exactly their count in the counters the gateways derive from spans (which needs every
span of a service on one gateway).

One scenario (module fixture, about 70 s here) and several tests that each check one property
of what it observed. docs/scaling.md lists which broken variant each test catches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from otel import catalogue
from services.agent.summary import merge
from services.monitoring.tunables import COLLECTOR_TELEMETRY_JOB
from services.stack import components
from services.stack.process import free_port, wait_until
from services.stack.prometheus_api import QueryError, get_json, instant_query
from services.stack.scale import RECEIVE_REPLICA_LABEL, REPLICATION_FACTOR
from services.stack.run import api_process
from services.stack.scale_topology import ScaleTopology
from tests.support import require
from tests.support.grafana import GOLDEN, targets
from tests.support.promql import total
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
HOST = os.uname().nodename
# (service, processes, agent-side collector, executions/s, extra arguments): one service fails
# most of its tool calls, so the fleet's error rate pages (HighErrorRate, over 10 %).
FAILING = [arg for domain in catalogue.DOMAINS for arg in ("--fail", f"{domain}=0.9")]
RUNS = [
    ("cugar-sales", 2, 0, 2.0, []),
    ("cugar-support", 1, 1, 2.0, []),
    ("cugar-research", 1, 0, 2.0, []),
    ("cugar-billing", 1, 1, 2.0, []),
    ("cugar-onboarding", 1, 0, 2.0, []),
    ("cugar-failing", 1, 1, 3.0, FAILING),
]
LOAD_S = 50
TIME_SCALE = "0.02"
STORE_TIMEOUT_S = 90
# The gateways' self-metrics in the store, per instance (what the pipeline-health rules and
# dashboard read): scraped, receiving spans, exporting metric points.
TELEMETRY = f'job="{COLLECTOR_TELEMETRY_JOB}"'
GATEWAY_TELEMETRY = {
    "up": f"up{{{TELEMETRY}}}",
    "accepted spans": f"sum by (instance) (otelcol_receiver_accepted_spans{{{TELEMETRY}}})",
    "sent metric points": f"sum by (instance) (otelcol_exporter_sent_metric_points{{{TELEMETRY}}})",
}


# Counter series and the ground-truth key that each one's fleet total must equal.
TRUTH = {
    catalogue.EXECUTIONS.series(): "executions",
    catalogue.TOOL_CALLS.series(): "tool_calls",
    catalogue.TOOL_ERRORS.series(): "tool_errors",
    catalogue.BUDGET_EXCEEDED.series(): "budget_exceeded",
    catalogue.BUDGET_USED.series(): "budget_used",
}


@dataclass
class Sample:
    """One answer of the store while a storage node and a gateway are down."""
    elapsed: float  # seconds since the kill
    counts: dict[tuple[str, str], float]  # (job, instance) -> executions
    warnings: list[str]
    gateways_up: dict[str, float] = field(default_factory=dict)  # instance -> up (telemetry job)

    @property
    def instances(self) -> set[str]:
        return {instance for _, instance in self.counts}

    @property
    def total(self) -> float:
        return sum(self.counts.values())

    def of(self, services: set[str]) -> float:
        return sum(v for (job, _), v in self.counts.items() if job in services)


@dataclass
class Observed:
    """What the scenario saw; each test checks one property of it."""
    topology: ScaleTopology
    truth: dict
    by_service: dict[str, dict]
    instances: set[str]
    gateway_services: dict[str, set[str]]
    killed_gateway: str
    killed_ingestor: str
    during_outage: list[Sample] = field(default_factory=list)
    alert_during_outage: tuple[str, dict] | None = None
    settled_at: float = 0.0
    # ScrapeTargetDown for the killed gateway in Thanos rule while it was down: (seconds after
    # the kill, the ruler's alert with its state); and at the webhook, if it got there by then
    target_down: list[tuple[float, dict]] = field(default_factory=list)
    target_down_notified: tuple[str, dict] | None = None


def _services_in(traces_file: Path) -> set[str]:
    """service.name of every resource in a gateway's trace file (complete lines only)."""
    if not traces_file.exists():
        return set()
    names = set()
    for line in traces_file.read_text(errors="replace").split("\n")[:-1]:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        for rs in doc.get("resourceSpans", []):
            for a in rs.get("resource", {}).get("attributes", []):
                if a["key"] == "service.name":
                    names.add(a["value"]["stringValue"])
    return names


def _values(result: list[dict], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in result:
        key = r["metric"].get(label, "")
        out[key] = out.get(key, 0.0) + float(r["value"][1])
    return out


def _store_total(topo: ScaleTopology, promql: str) -> float:
    return total(topo.query(promql)[0])


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    for component in (components.COLLECTOR, components.PROMETHEUS, components.ALERTMANAGER,
                      components.THANOS):
        require(component)
    workdir = tmp_path_factory.mktemp("scale")
    with WebhookReceiver() as webhook, ScaleTopology(workdir, webhook_url=webhook.url) as topo:
        try:
            seen = _scenario(topo, webhook)
        except Exception as exc:  # the processes' logs say why
            raise AssertionError(f"{exc}\n{topo.log_tails()}") from exc
        yield seen  # the topology stays up for the tests (the GenAI one sends more)


def _scenario(topo: ScaleTopology, webhook: WebhookReceiver) -> Observed:
    agents = []
    expected_instances = set()
    for i, (service, processes, host, rate, extra) in enumerate(RUNS):
        run_id = f"scale{i}"
        expected_instances |= {f"{HOST}-{run_id}-w{w}" for w in range(processes)}
        env = {**topo.agent_env(host), "OTEL_SERVICE_NAME": service}
        argv = [sys.executable, "-m", "services.agent", "run", "--rate", str(rate),
                "--duration", str(LOAD_S), "--processes", str(processes), "--time-scale",
                TIME_SCALE, "--seed", str(100 + i), "--run-id", run_id, *extra]
        agents.append((service, subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)))
    try:
        return _under_load(topo, webhook, agents, expected_instances)
    finally:
        for _, proc in agents:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()


def _under_load(topo: ScaleTopology, webhook: WebhookReceiver,
                agents: list[tuple[str, subprocess.Popen[str]]],
                expected_instances: set[str]) -> Observed:
    executions = catalogue.EXECUTIONS.series()
    services = {s for s, *_ in RUNS}

    # Every instance is in the store, and every service's spans have reached a gateway.
    def all_instances() -> bool:
        result, _ = topo.query(f"count by (instance) ({executions})")
        return {r["metric"].get("instance") for r in result} == expected_instances

    wait_until(all_instances, STORE_TIMEOUT_S, interval=1,
               what="every agent instance's executions in the store")
    gateway_services: dict[str, set[str]] = {}

    def routed() -> bool:
        gateway_services.update({g.process.name: _services_in(g.traces_file)
                                 for g in topo.gateways})
        return set().union(*gateway_services.values()) == services

    wait_until(routed, 30, interval=1, what="every service's spans at a gateway")


    # Kill one ingestor and the gateway that carries the most services, mid-load.
    busiest = max(topo.gateways, key=lambda g: len(gateway_services[g.process.name]))
    ingestor = topo.store.ingestors[1]
    def sample(elapsed: float) -> Sample:
        try:
            result, warnings = topo.query(f"sum by (job, instance) ({executions})")
            up = _values(topo.query(GATEWAY_TELEMETRY["up"])[0], "instance")
        except QueryError as exc:  # a failed query is recorded: a test below rejects it
            result, warnings, up = [], [f"query failed: {exc}"], {}
        return Sample(elapsed, {(r["metric"]["job"], r["metric"]["instance"]): float(r["value"][1])
                                for r in result}, warnings, up)

    obs_before = sample(0.0)
    ingestor.process.kill()
    busiest.process.kill()
    killed_at = time.monotonic()
    obs = Observed(topo, {}, {}, expected_instances, gateway_services, busiest.process.name,
                   ingestor.process.name, [obs_before])

    # While they are down: the store answers for every instance (or says it is partial), its
    # totals never go back, and the ruler pages from its data through Alertmanager; it also has
    # the killed gateway's ScrapeTargetDown (recorded; the outage is not made longer for it).
    def paged() -> bool:
        elapsed = time.monotonic() - killed_at
        obs.during_outage.append(sample(elapsed))
        obs.target_down += [(elapsed, a) for a in _rule_alerts(topo, "ScrapeTargetDown")
                            if a["labels"].get("instance") == busiest.process.name]
        return bool(webhook.firing("HighErrorRate")) and elapsed > 15

    wait_until(paged, 90, interval=1, what="HighErrorRate at the webhook with nodes down")
    obs.alert_during_outage = webhook.firing("HighErrorRate")[0]
    obs.target_down_notified = next((n for n in webhook.firing("ScrapeTargetDown")
                                     if n[1]["labels"].get("instance") == busiest.process.name),
                                    None)

    busiest.process.start(timeout=60)
    ingestor.process.start(timeout=60)

    for service, proc in agents:
        out, err = proc.communicate(timeout=LOAD_S + 120)
        assert proc.returncode == 0, f"{service} agent exited {proc.returncode}: {err[-2000:]}"
        obs.by_service[service] = json.loads(out.strip().splitlines()[-1])
    obs.truth = merge(list(obs.by_service.values()))

    # Settled: every counter's fleet total in the store equals the agents' own count.
    def settled() -> bool:
        return all(_store_total(topo, f"sum({m})") == float(obs.truth[k])
                   for m, k in TRUTH.items())

    try:
        wait_until(settled, STORE_TIMEOUT_S, interval=1, what="the store's totals to settle")
    except TimeoutError as exc:
        got = {m: _store_total(topo, f"sum({m})") for m in TRUTH}
        want = {m: obs.truth[k] for m, k in TRUTH.items()}
        raise AssertionError(f"{exc}: store {got}, agents {want}") from None
    reference_total = f"sum({executions})"
    wait_until(lambda: total(topo.reference_query(reference_total)) == obs.truth["executions"],
               30, interval=1, what="the reference Prometheus' total to settle")
    obs.settled_at = time.time()
    _write_report(topo.workdir / "observed.json", obs, topo.reference_query(
        'count by (instance) ({__name__=~"cugar_.+", instance!=""})'))
    return obs


def _rule_alerts(topo: ScaleTopology, name: str) -> list[dict]:
    """Thanos rule's active alerts of that rule (pending or firing), [] when it does not answer.
    (From its rules API: its /api/v1/alerts answers under "Alerts", not Prometheus' "alerts".)"""
    try:
        groups = get_json(f"{topo.store.rule.url}/api/v1/rules", {"type": "alert"})["data"]["groups"]
    except QueryError:
        return []
    return [a for g in groups for r in g["rules"] if r["name"] == name
            for a in r.get("alerts") or []]


def _write_report(path: Path, obs: Observed, series_per_instance: list[dict]) -> None:
    """What the scenario saw, for a person reading a failure (or docs/scaling.md's numbers)."""
    path.write_text(json.dumps({
        "series_per_instance": _values(series_per_instance, "instance"),
        "executions": obs.truth["executions"], "failed": obs.truth["failed"],
        "gateway_services": {g: sorted(s) for g, s in obs.gateway_services.items()},
        "killed": [obs.killed_gateway, obs.killed_ingestor],
        "during_outage": [{"s": round(x.elapsed, 1), "instances": len(x.instances),
                           "counts": {f"{j} {i}": v for (j, i), v in x.counts.items()},
                           "executions": x.total,
                           "of_killed_gateway": x.of(obs.gateway_services[obs.killed_gateway]),
                           "warnings": x.warnings} for x in obs.during_outage],
        "alert": obs.alert_during_outage,
        "gateways_up_during_outage": [{"s": round(x.elapsed, 1), **x.gateways_up}
                                      for x in obs.during_outage],
        "target_down": [(round(t, 1), a["state"]) for t, a in obs.target_down],
        "target_down_notified": obs.target_down_notified,
    }, indent=1))


# --- the properties ------------------------------------------------------------------------
def test_the_workload_is_what_the_assertions_need(observed: Observed) -> None:
    truth = observed.truth
    assert truth["executions"] > 300 and truth["failed"] > 0 and truth["tool_errors"] > 0
    assert len(observed.by_service) == len(RUNS)


def test_totals_equal_the_agents_ground_truth_exactly(observed: Observed) -> None:
    topo, truth = observed.topology, observed.truth
    for metric, key in TRUTH.items():
        assert _store_total(topo, f"sum({metric})") == float(truth[key]), metric
    executions = catalogue.EXECUTIONS.series()
    assert _values(topo.query(f"sum by (outcome) ({executions})")[0], "outcome") == {
        "success": truth["successful"], "failure": truth["failed"]}
    per_domain = _values(topo.query(
        f"sum by (domain) ({catalogue.DOMAIN_USAGE.series()})")[0], "domain")
    assert per_domain == {d: float(v["calls"]) for d, v in truth["by_domain"].items() if v["calls"]}


def test_each_service_and_instance_keeps_its_identity(observed: Observed) -> None:
    """`job` is the service, `instance` the process: per service the store has exactly that
    service's own count, and the instances are exactly the agent processes."""
    topo = observed.topology
    executions = catalogue.EXECUTIONS.series()
    per_job = _values(topo.query(f"sum by (job) ({executions})")[0], "job")
    assert per_job == {s: float(t["executions"]) for s, t in observed.by_service.items()}
    result, _ = topo.query(f"count by (instance) ({executions})")
    assert {r["metric"]["instance"] for r in result} == observed.instances


def test_no_series_collides_or_is_counted_twice(observed: Observed) -> None:
    """Merged over the replicas, each identity is one series, and the store holds exactly the
    series the single Prometheus holds (the store adds only its tenant label)."""
    topo = observed.topology
    for metric in TRUTH:
        store, _ = topo.query(metric)
        reference = topo.reference_query(metric)

        def identity(r: dict) -> tuple:
            return tuple(sorted((k, v) for k, v in r["metric"].items() if k != "tenant_id"))

        identities = [identity(r) for r in store]
        assert len(identities) == len(set(identities)), f"{metric}: duplicate series"
        assert set(identities) == {identity(r) for r in reference}, metric


def test_every_replica_holds_the_exact_totals_after_recovery(observed: Observed) -> None:
    """Unmerged: each of the three ingestors, the one killed mid-load included, ends with the
    exact totals (the final exports reached all of them)."""
    topo, truth = observed.topology, observed.truth
    executions = catalogue.EXECUTIONS.series()

    def per_replica() -> dict[str, float]:
        result, _ = instant_query(topo.query_url, f"sum by ({RECEIVE_REPLICA_LABEL}) ({executions})",
                                  params={"dedup": "false", "partial_response": "false"})
        return _values(result, RECEIVE_REPLICA_LABEL)

    want = {i.process.name: float(truth["executions"]) for i in topo.store.ingestors}
    assert len(want) == REPLICATION_FACTOR
    wait_until(lambda: per_replica() == want, 30, interval=1,
               what=f"each replica's total to be {truth['executions']} (last: {per_replica()})")


def test_queries_stay_complete_while_a_storage_node_and_a_gateway_are_down(
        observed: Observed) -> None:
    samples = observed.during_outage
    assert len(samples) > 10
    for before, now in zip(samples, samples[1:]):
        assert not [w for w in now.warnings if w.startswith("query failed")], now.warnings
        # complete: every instance answered (the killed ingestor's replicas are elsewhere), or
        # the answer said it was partial ...
        assert now.instances == observed.instances or now.warnings, (
            f"{now.elapsed:.0f}s after the kill: {len(now.instances)} instances, no warning")
        # ... and nothing counted goes missing
        assert now.total >= before.total, f"{now.elapsed:.0f}s after the kill: total fell"


def test_a_dead_gateways_services_wait_and_the_others_flow(observed: Observed) -> None:
    """With the static resolver the services routed to the killed gateway are not re-routed:
    their data waits in the agent-side collectors' queues (and arrives after the restart: the
    per-service totals above are exact), while the other gateway's services go on."""
    killed = observed.gateway_services[observed.killed_gateway]
    others = {s for s, *_ in RUNS} - killed
    settled = [s for s in observed.during_outage if s.elapsed >= 5]
    assert len(settled) >= 5
    assert settled[-1].of(killed) == settled[0].of(killed)
    if others:
        assert settled[-1].of(others) > settled[0].of(others)


def test_routing_by_service_keeps_each_service_on_one_gateway(observed: Observed) -> None:
    seen = observed.gateway_services
    assert len(seen) == 2
    first, second = seen.values()
    assert not first & second, f"services at both gateways: {first & second}"
    assert observed.killed_gateway in seen and seen[observed.killed_gateway]


def test_the_alert_fires_from_the_store_through_the_same_routing(observed: Observed) -> None:
    assert observed.alert_during_outage is not None
    receiver, alert = observed.alert_during_outage
    assert receiver == "warning-webhook"  # monitoring/alertmanager/alertmanager.yml's route
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#higherrorrate"
    assert not {"rule_replica", RECEIVE_REPLICA_LABEL} & set(alert["labels"])


def test_each_gateways_own_telemetry_reaches_the_store(observed: Observed) -> None:
    """The gateway telemetry scraper: job otel-collector-telemetry, one target and one `instance`
    per gateway (the killed one scraped again since its restart), with the self-metrics the
    pipeline-health rules and dashboard read. Asked after the scenario (bounded), so that a
    broken scraper does not change the scenario's timing."""
    topo = observed.topology
    gateways = {g.process.name for g in topo.gateways}
    assert len(gateways) == 2 and set(observed.gateway_services) == gateways
    # with random ports a gateway may carry no service: its up is 1, but it counts nothing
    carrying = {g for g, services in observed.gateway_services.items() if services}
    seen: dict[str, object] = {}

    def complete() -> bool:
        for name, promql in GATEWAY_TELEMETRY.items():
            result, _ = topo.query(promql)
            seen[name] = _values(result, "instance")
            if name == "up":
                seen["up series"] = sorted(r["metric"].get("instance", "") for r in result)
        return (seen["up series"] == sorted(gateways) and seen["up"] == {g: 1.0 for g in gateways}
                and all(seen[n].get(g, 0) > 0 for n in GATEWAY_TELEMETRY for g in carrying))

    try:
        wait_until(complete, 30, interval=1, what="every gateway's telemetry in the store")
    except TimeoutError:
        pytest.fail(f"the gateways' telemetry in the store: {seen}", pytrace=False)


def test_a_killed_gateway_is_down_in_the_store_and_alerts(observed: Observed) -> None:
    """While the gateway is down: `up == 0` for it in the store (the other still 1), and Thanos
    rule has ScrapeTargetDown for that instance of the telemetry job (pending or firing: the
    scenario does not wait longer for it)."""
    killed = observed.killed_gateway
    others = {g.process.name for g in observed.topology.gateways} - {killed}
    assert others and any(s.gateways_up.get(killed) == 0.0 and
                          all(s.gateways_up.get(g) == 1.0 for g in others)
                          for s in observed.during_outage), [
        s.gateways_up for s in observed.during_outage]
    assert observed.target_down, "no ScrapeTargetDown for the killed gateway in Thanos rule"
    for _, alert in observed.target_down:
        assert alert["state"] in ("pending", "firing")
        assert alert["labels"]["job"] == COLLECTOR_TELEMETRY_JOB


def _golden_queries() -> dict[str, str]:
    """The golden signals' expressions as the rules compute them, and the golden-signals
    dashboard's instant panels with their variables at "All" and the range at 15m."""
    queries = {
        "success rate": '(sum(increase(cugar_executions_total{outcome="success"}[5m] anchored)) '
                        'or on() vector(0)) / (sum(increase(cugar_executions_total[5m] anchored)) > 0)',
        "latency p95": "1000 * histogram_quantile(0.95, sum by (le) (increase("
                       "cugar_execution_duration_seconds_bucket[5m] anchored)))",
    }
    for panel, target in targets(GOLDEN):
        expr = target.get("expr", "")
        if "$__rate_interval" in expr:
            continue  # range panels (graphs): their instant form is covered by the 5m ones
        queries[f"panel {panel['title']} ({target.get('refId')})"] = (
            expr.replace('=~"$profile"', '=~".*"').replace('=~"$domain"', '=~".*"')
            .replace("$__range", "15m"))
    return queries


def _shape(result: list[dict]) -> dict:
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "tenant_id")):
            float(r["value"][1]) for r in result}


def test_golden_signals_and_panels_equal_a_single_prometheus(observed: Observed) -> None:
    """Evaluated at one instant after the agents had finished. The last remote-write batches
    may still be on their way when the executions counter has settled, so each query is asked
    until both answers agree (bounded); a difference that stays is a failure."""
    topo = observed.topology
    at = observed.settled_at
    compared = 0
    for name, expr in _golden_queries().items():
        answers: dict[str, dict] = {}

        def agree() -> bool:
            answers["store"] = _shape(topo.query(expr, at)[0])
            answers["reference"] = _shape(topo.reference_query(expr, at))
            return answers["store"] == answers["reference"]

        try:
            wait_until(agree, 20, interval=1, what=name)
        except TimeoutError:
            pytest.fail(f"{name}: {expr}\nstore {answers['store']}\nreference "
                        f"{answers['reference']}", pytrace=False)
        compared += bool(answers["reference"])
    assert compared >= 6, "too few queries had an answer to compare"


def test_the_stores_recording_rules_give_the_workloads_golden_signals(observed: Observed) -> None:
    """Thanos rule evaluates the repository's rules unchanged (`anchored` included): with the
    whole run inside the 5m window, the recorded error rate is the workload's."""
    topo, truth = observed.topology, observed.truth
    want = truth["failed"] / truth["executions"]
    wait_until(lambda: (r := topo.query("cugar_error_rate")[0]) and
               float(r[0]["value"][1]) == pytest.approx(want, rel=1e-9), 30, interval=1,
               what=f"cugar_error_rate from the store's ruler to be {want}")


def _close(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative (the store may add the same samples in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            a == pytest.approx(b, rel=1e-9)
    return a == b


def test_the_api_answers_from_the_store_as_from_a_single_prometheus(
        observed: Observed, tmp_path: Path) -> None:
    """The api pointed at Thanos query, as docs/scaling.md tells users to do, gives the
    /dashboard it gives pointed at the single Prometheus. That includes the freshness verdicts,
    whose `ts_of_first_over_time` needs query's experimental functions, and the alerting rules,
    which query takes from Thanos rule."""
    topo, truth = observed.topology, observed.truth
    apis = {}
    for name, prometheus_url in (("store", topo.query_url), ("reference", topo.reference_url)):
        port = free_port()
        apis[name] = (api_process(tmp_path / name, port, prometheus_url, None,
                                  {"OTEL_SDK_DISABLED": "true"}, name=f"api-{name}"),
                      f"http://127.0.0.1:{port}")
    answers: dict[str, dict] = {}

    def both_counted() -> bool:
        for name, (_, base) in apis.items():
            r = httpx.get(f"{base}/dashboard", params={"window": "30m"}, timeout=10)
            answers[name] = r.json() if r.status_code == 200 else {"http": r.status_code,
                                                                    "body": r.text[:500]}
        return all(a.get("executions", {}).get("total") == truth["executions"]
                   for a in answers.values())

    with apis["store"][0], apis["reference"][0]:
        try:
            wait_until(both_counted, 30, interval=1, what="both /dashboard answers to count "
                       f"the agents' {truth['executions']} executions")
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {json.dumps(answers)[:3000]}", pytrace=False)
    store, reference = answers["store"], answers["reference"]
    for section in ("executions", "golden_signals", "tools", "budget", "approvals"):
        assert _close(store[section], reference[section]), (section, store[section],
                                                           reference[section])
    assert store["freshness"]["sources"] == reference["freshness"]["sources"] == len(
        observed.instances)
    stale = [{(s["job"], s["instance"]) for s in a["freshness"]["stale"]} for a in answers.values()]
    assert stale[0] == stale[1], stale
    assert not [d for d in store["degraded"] if d["component"] == "prometheus"], store["degraded"]
    # The workload's HighErrorRate, from Thanos rule's ALERTS series, with the summary rendered
    # from the rule's annotations (query's rules API): still in its 5m window here.
    error_rate = [a for a in store["alerts"]["items"] if a["alertname"] == "HighErrorRate"]
    assert error_rate and all(a["summary"] and a["since"] for a in error_rate), store["alerts"]


# A third-party GenAI agent, as any framework's instrumentation sends it: `invoke_agent` spans
# (each its own trace) under a scope that is not ours, from which the gateways derive
# cugar_genai_agent_invocations_total (signal_to_metrics/genai + delta_to_cumulative/genai).
GENAI_EMITTER = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("some.agent.framework")
for _ in range(int(sys.argv[1])):
    with tracer.start_as_current_span("invoke_agent helper", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}):
        pass
provider.shutdown()
"""
GENAI_SPANS = 150


def test_span_derived_metrics_are_exact_with_two_gateways(observed: Observed) -> None:
    """The gateways' state is per service: every span of a service reaches one gateway, so the
    counters derived from spans are exact. Routed by trace id instead, both gateways would
    write the same series with their own partial counts."""
    topo = observed.topology
    for host in range(len(topo.agent_collectors)):
        env = {**topo.agent_env(host), "OTEL_SERVICE_NAME": "cugar-genai",
               "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=genai-{host}"}
        subprocess.run([sys.executable, "-c", GENAI_EMITTER, str(GENAI_SPANS)], env=env,
                       cwd=REPO, check=True, timeout=60, capture_output=True)
    series = 'cugar_genai_agent_invocations_total{job="cugar-genai"}'
    want = {f"genai-{h}": float(GENAI_SPANS) for h in range(len(topo.agent_collectors))}

    def per_instance() -> dict[str, float]:
        return _values(topo.query(f"sum by (instance) ({series})")[0], "instance")

    # Settled: the same answer for 5 s in a row (a count on its way past the right value, as a
    # doubled one is, must not pass), and present for every instance.
    seen: list[dict[str, float]] = []

    def settled() -> bool:
        seen.append(per_instance())
        return len(seen) > 5 and len(seen[-1]) == len(want) and all(
            s == seen[-1] for s in seen[-6:])

    try:
        wait_until(settled, 90, interval=1, what="the derived counters to settle")
    except TimeoutError:
        pytest.fail(f"{series} did not settle: last answers {seen[-6:]}", pytrace=False)
    if seen[-1] != want:
        pytest.fail(f"{series}: store {seen[-1]}, spans sent {want}", pytrace=False)
    store, _ = topo.query(f"count({series})")
    assert total(store) == len(want), "one series per instance"
