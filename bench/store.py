"""The scale-out store's ingest cost against a single Prometheus, side by side in the same run.

    python -m bench.store --json        # one JSON line (about 3 minutes)
    python -m bench.store               # the same as a short report
    python -m bench.store --quick       # smoke run: 2,000 series, short steps (< 1 min)

One generator (this process) sends, once a second, one OTLP/HTTP export of `--series` cumulative
counters (value = seconds since the start) to both

- the baseline: one Prometheus with the flags `make run` uses (`PROMETHEUS_FLAGS`), its OTLP
  receiver and the single-machine out-of-order window, no rules and no scrapes;
- the store of docs/scaling.md as `tests/test_scale_topology.py` runs it: a Prometheus agent
  (deploy/scale/prometheus-agent.yml, OTLP in, remote write out), one Thanos receive router and
  3 ingestors at replication factor 3 (each ingestor holds every series), Thanos query (only
  to check the result; its CPU is not counted: it serves reads).

So both ingest `--series` samples per second. After a warm-up, CPU (utime + stime from /proc) of
every process is taken over `--seconds`, and resident memory at the end. Then the load stops and
both are asked for `count(x)` and `sum(x)`: `lost` is what the generator sent minus what each
answers (must be 0; the store's answer has its replicas merged).

Per 10k samples/s: the CPU of each tier, and `store_vs_prometheus`, the whole store's CPU over
the single Prometheus'. Memory: how much each process' resident memory grew from before the load
to its end, per active series (an ingestor holds all of them at replication factor 3). Results
and the command are in docs/benchmarks.md ("The scale-out store") and docs/scaling.md ("Sizing").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
from opentelemetry.proto.metrics.v1 import metrics_pb2

from bench.pipeline import cpu_seconds, rss_mib
from services.stack.pipeline import prometheus_process
from services.stack.process import ManagedProcess, free_port, wait_until
from services.stack.prometheus_api import instant_query
from services.stack.scale import (
    OUT_OF_ORDER_WINDOW, THANOS_QUERY_PARAMS, PrometheusAgent, ThanosQuery, ThanosReceive,
)
from tests.support.otlp_raw import attr, metrics_request

METRIC = "bench_store_samples"          # a cumulative counter: bench_store_samples_total
SERVICE = "bench-store"
SERIES_PER_REQUEST = 5_000              # one export is split into requests of this many points
INGESTORS = 3


class Generator:
    """`series` cumulative counters, all exported once a second (from a thread) to every URL in
    `urls`; each value is the whole seconds since the start, so every series ends at `value`."""

    def __init__(self, urls: list[str], series: int) -> None:
        self.urls, self.series = urls, series
        self.start_s = time.time()
        self.value = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._points = [metrics_pb2.NumberDataPoint(
            start_time_unix_nano=int(self.start_s * 1e9),
            attributes=[attr("series", f"s{i:06d}")]) for i in range(series)]

    def _requests(self) -> Iterator[bytes]:
        now_ns = time.time_ns()
        for lo in range(0, self.series, SERIES_PER_REQUEST):
            points = self._points[lo:lo + SERIES_PER_REQUEST]
            for point in points:
                point.time_unix_nano, point.as_int = now_ns, self.value
            metric = metrics_pb2.Metric(name=METRIC, sum=metrics_pb2.Sum(
                data_points=points, is_monotonic=True,
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE))
            yield metrics_request(SERVICE, [metric], instance="generator-0").SerializeToString()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            tick = time.monotonic()
            while not self._stop.is_set():
                self.value += 1
                for body in self._requests():
                    for url in self.urls:
                        r = client.post(url, content=body,
                                        headers={"Content-Type": "application/x-protobuf"})
                        if r.status_code != 200:
                            self.failures.append(f"{url}: {r.status_code} {r.text[:200]}")
                tick += 1.0
                # Pacing the load at one export a second, not waiting for anything.
                self._stop.wait(max(0.0, tick - time.monotonic()))

    def __enter__(self) -> "Generator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _baseline(work: Path) -> tuple[ManagedProcess, str]:
    work.mkdir(parents=True)
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n"
                      f"storage:\n  tsdb:\n    out_of_order_time_window: {OUT_OF_ORDER_WINDOW}\n")
    port = free_port()
    return prometheus_process(work, port, config), f"http://127.0.0.1:{port}"


def _cpu(processes: dict[str, ManagedProcess]) -> dict[str, float]:
    return {name: cpu_seconds(p.pid) for name, p in processes.items()}


def _answer(url: str, expr: str, params: dict[str, str] | None = None) -> float | None:
    """The single value `expr` has now, None while it has none or the answer is partial."""
    result, warnings = instant_query(url, expr, params=params)
    return float(result[0]["value"][1]) if result and not warnings else None


def _settled(url: str, want: tuple[float, float],
             params: dict[str, str] | None = None) -> tuple[float, float]:
    """`count()` and `sum()` of the counters at `url` once they equal `want`, or as they are
    after 60 s (then `lost` says what is missing)."""
    selector = f"{METRIC}_total"
    last: list[tuple[float, float]] = []

    def complete() -> bool:
        last[:] = [(_answer(url, f"count({selector})", params) or 0.0,
                    _answer(url, f"sum({selector})", params) or 0.0)]
        return last[0] == want
    try:
        wait_until(complete, timeout=60, interval=1, what=f"all samples at {url}")
    except TimeoutError:
        pass
    return last[0]


def run(series: int, warmup_s: float, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="cugar-bench-store-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        prometheus, prometheus_url = _baseline(work / "prometheus")
        stack.enter_context(prometheus)
        ingestors = [ThanosReceive(work / f"ingestor-{i}", f"ingestor-{i}")
                     for i in range(INGESTORS)]
        for ingestor in ingestors:
            stack.enter_context(ingestor)
        router = stack.enter_context(ThanosReceive(work / "router-0", "router-0",
                                                   hashring=ingestors))
        agent = stack.enter_context(PrometheusAgent(work / "agent", router.remote_write_url))
        query = stack.enter_context(ThanosQuery(work / "query",
                                                [i.grpc_address for i in ingestors]))
        processes = {"prometheus": prometheus, "prometheus_agent": agent.process,
                     "router": router.process,
                     **{f"ingestor_{i}": x.process for i, x in enumerate(ingestors)}}
        idle_rss = {name: rss_mib(p.pid) for name, p in processes.items()}
        urls = [f"{prometheus_url}/api/v1/otlp/v1/metrics", agent.otlp_url]
        with Generator(urls, series) as generator:
            wait_until(lambda: generator.value >= warmup_s, timeout=warmup_s + 60,
                       what="the warm-up")
            sent_before, began, cpu_before = generator.value, time.monotonic(), _cpu(processes)
            wait_until(lambda: generator.value >= sent_before + seconds,
                       timeout=seconds + 60, what="the measured exports")
            used = {name: cpu - cpu_before[name] for name, cpu in _cpu(processes).items()}
            exports, elapsed = generator.value - sent_before, time.monotonic() - began
        rss = {name: rss_mib(p.pid) for name, p in processes.items()}
        final = generator.value
        want = (float(series), float(series * final))
        baseline_count, baseline_sum = _settled(prometheus_url, want)
        store_count, store_sum = _settled(query.url, want, THANOS_QUERY_PARAMS)

    rate = series * exports / elapsed   # samples/s actually sent during the measurement

    def per_10k(cpu_s: float) -> float:
        return round(100 * cpu_s / elapsed / (rate / 10_000), 2)

    def kib_per_series(name: str) -> float:
        return round((rss[name] - idle_rss[name]) * 1024 / series, 2)

    ingestor_cpu = [used[f"ingestor_{i}"] for i in range(INGESTORS)]
    store_cpu = used["prometheus_agent"] + used["router"] + sum(ingestor_cpu)
    ingestor = max((f"ingestor_{i}" for i in range(INGESTORS)), key=rss.get)
    return {
        "series": series, "samples_per_s": round(rate), "seconds": round(elapsed, 1),
        "prometheus_cpu_pct_per_10k_samples": per_10k(used["prometheus"]),
        "prometheus_rss_mib": round(rss["prometheus"], 1),
        "store_cpu_pct_per_10k_samples": per_10k(store_cpu),
        "prometheus_agent_cpu_pct_per_10k_samples": per_10k(used["prometheus_agent"]),
        "router_cpu_pct_per_10k_samples": per_10k(used["router"]),
        "ingestor_cpu_pct_per_10k_samples": per_10k(sum(ingestor_cpu) / INGESTORS),
        "ingestor_rss_mib": round(rss[ingestor], 1),
        "ingestor_idle_rss_mib": round(idle_rss[ingestor], 1),
        "prometheus_agent_rss_mib": round(rss["prometheus_agent"], 1),
        "router_rss_mib": round(rss["router"], 1),
        "store_vs_prometheus": round(store_cpu / used["prometheus"], 2),
        # Memory that grew with the series (resident at the end minus before the load).
        "ingestor_kib_per_series": kib_per_series(ingestor),
        "prometheus_kib_per_series": kib_per_series("prometheus"),
        "replication_factor": INGESTORS,
        "lost": {"prometheus": series * final - baseline_sum, "store": series * final - store_sum},
        "series_seen": {"prometheus": baseline_count, "store": store_count},
        "send_failures": generator.failures[:5],
    }


def report(r: dict) -> str:
    return "\n".join([
        f"{r['series']:,} series, {r['samples_per_s']:,} samples/s for {r['seconds']:g} s",
        f"single Prometheus: {r['prometheus_cpu_pct_per_10k_samples']} % of a core per 10k "
        f"samples/s",
        f"store (agent + router + {INGESTORS} ingestors): "
        f"{r['store_cpu_pct_per_10k_samples']} % per 10k samples/s "
        f"({r['store_vs_prometheus']}x the single Prometheus); agent "
        f"{r['prometheus_agent_cpu_pct_per_10k_samples']}, router "
        f"{r['router_cpu_pct_per_10k_samples']}, each ingestor "
        f"{r['ingestor_cpu_pct_per_10k_samples']}",
        f"memory: ingestor {r['ingestor_rss_mib']} MiB ({r['ingestor_idle_rss_mib']} idle), "
        f"{r['ingestor_kib_per_series']} KiB per series; Prometheus "
        f"{r['prometheus_rss_mib']} MiB, {r['prometheus_kib_per_series']} KiB per series",
        f"lost: {r['lost']}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 series, 5 s")
    parser.add_argument("--series", type=int, default=None,
                        help="active series, each one sample a second (default 20,000)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="the measured load (default 120 s, quick 5 s)")
    args = parser.parse_args(argv)
    series = args.series or (2_000 if args.quick else 20_000)
    seconds = args.seconds or (5.0 if args.quick else 120.0)
    result = run(series, warmup_s=5 if args.quick else 30, seconds=seconds)
    print(json.dumps(result) if args.json else report(result))
    bad = result["lost"]["prometheus"] or result["lost"]["store"] or result["send_failures"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
