"""Is the pipeline delivering, and since when not: the /dashboard `status`, `degraded` and
`freshness` sections and the `partial` flag of its numbers, all read from Prometheus.

Three kinds of evidence, each evaluated at the response's instant (`end`):

- scrape targets whose last scrape failed (`up == 0`: the collector's telemetry, Jaeger, the
  API, Prometheus itself), down since the first failed scrape after the last good one;
- the collector's own counters and gauges: receivers refusing data, exporters giving up, an
  exporter's sending queue holding data for a while (it cannot deliver);
- the age of each agent process's newest sample of `cugar_executions_total` (per `job` =
  service.name and `instance` = service.instance.id) against its own export interval, which is
  measured from its samples (exports in the last 10 minutes over the time they span).

A source is stale once its newest sample is older than STALE_EXPORTS of its export intervals
plus STALE_SLACK_S (services/monitoring/tunables.py). One whose data stopped while the pipeline
was healthy stopped sending (a finished workload): its numbers are complete and it is listed as
stale but not missing. One whose next export was due while the collector was down, refusing or
failing, or while Prometheus was not scraping (a gap in the collector's `up` samples: Prometheus
restarted, the collector still retries), has data that has not arrived: the window's numbers
are partial until it catches up (the agents export cumulative values, so their first export
after recovery restores exact counts). A window whose start lies in a hole of a source's data
is partial too: its count for that source begins at the last sample before the hole.

Nothing is kept in the API process: the answer is the same from every worker and replica.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from otel.catalogue import EXECUTIONS
from services.monitoring import queries as q
from services.monitoring.tunables import (COLLECTOR_SELECTOR, COLLECTOR_TELEMETRY_JOB,
                                          STALE_EXPORTS, STALE_SLACK_S)

from .prometheus import PrometheusClient, Sample
from .window import Window, iso

# What a failed scrape job means for the reader, and which numbers it puts at risk.
COMPONENTS = {COLLECTOR_TELEMETRY_JOB: "collector", "jaeger": "jaeger", "cugar-api": "api",
              "prometheus": "prometheus"}
AFFECTS = {"collector": ["metrics", "traces"], "jaeger": ["traces"]}
METRICS_PATH = "collector"  # a problem here can hold back the golden signals' data

INTERVAL_WINDOW_S = 600  # the export interval is measured over this much recent data
# Sources silent longer than the lookback delta (5m) are found with a subquery at this step: any
# step below the lookback sees their newest sample, whose own time timestamp() returns.
SILENT_STEP = "60s"
UNKNOWN_INTERVAL_S = 60.0  # a source with one sample: OpenTelemetry's default export interval
DEFAULT_SCRAPE_INTERVAL_S = 15.0  # Prometheus' (and prometheus.yml's) default
HISTORY_S = 3600  # how far back "since" is looked for
RECENT = "1m"  # collector counters that grew this recently are a current problem
BACKLOG = "15s"  # an exporter queue non-empty for this long cannot deliver
MAX_SOURCES = 50  # stale sources listed (the rest are counted)


@dataclass
class Freshness:
    degraded: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)  # sources whose data has not arrived
    inexact_start: list[dict] = field(default_factory=list)  # holes across the window start
    stale: list[dict] = field(default_factory=list)
    sources: int = 0
    newest_sample: float | None = None

    @property
    def status(self) -> str:
        return "degraded" if self.degraded else "ok"

    @property
    def partial(self) -> bool:
        """The window's numbers lack data: a source's data is held up, or the metrics path is
        broken right now (the next exports will not arrive)."""
        return (bool(self.missing or self.inexact_start)
                or any(d["component"] == METRICS_PATH for d in self.degraded))

    def partial_reason(self) -> str | None:
        if not self.partial:
            return None
        parts = [f"{d['component']}: {d['reason']}" for d in self.degraded
                 if d["component"] in (METRICS_PATH, "agent metrics")]
        if self.inexact_start:
            parts.append(f"the window starts inside a hole in the data of "
                         f"{len(self.inexact_start)} agent process(es): their counts include "
                         f"executions from before the window start")
        return "; ".join(parts) or "data from some sources has not arrived"

    def body(self) -> dict:
        return {"newest_sample": None if self.newest_sample is None else iso(self.newest_sample),
                "sources": self.sources, "stale": self.stale[:MAX_SOURCES],
                "stale_count": len(self.stale)}


def _first_bad(points: list[tuple[float, float | None]], bad) -> float | None:
    """The time of the first sample of the run of bad samples that ends the series (None when
    the newest sample is good); the oldest sample when no good one is in the range."""
    since = None
    for t, v in reversed(points):
        if not bad(v):
            break
        since = t
    return since


def _rising_since(points: list[tuple[float, float | None]], gap_s: float = 60.0) -> float | None:
    """When a counter started its current stretch of growth (growth with no pause longer than
    `gap_s`): the sample before the first increase of that stretch."""
    since = None
    quiet_until = None
    for (t0, v0), (t1, v1) in zip(reversed(points[:-1]), reversed(points[1:])):
        if v0 is None or v1 is None:
            continue
        if v1 > v0 or v1 < v0:  # growth (a reset is a restarted collector: growth too)
            since, quiet_until = t0, None
        else:
            quiet_until = quiet_until or t1
            if since is not None and quiet_until - t0 > gap_s:
                break
    return since


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _selector(labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={_quoted(v)}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def _value_of(samples: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels.get("job", ""), s.labels.get("instance", "")): s.value
            for s in samples if s.value is not None}


def _hms(ts: float) -> str:
    return iso(ts)[11:19]


async def _since(prom: PrometheusClient, name: str, labels: dict[str, str], at: float,
                 how) -> float | None:
    """`how` applied to the raw samples of the series `name{labels}` of the last HISTORY_S."""
    series = await prom.samples(_selector({**labels, "__name__": name}), HISTORY_S, at)
    return how(series[0].points) if series else None


def _is_down(points: list[tuple[float, float | None]]) -> float | None:
    return _first_bad(points, lambda v: v == 0)


def _last_growth(points: list[tuple[float, float | None]]) -> float | None:
    """When a counter last grew (the oldest sample when it did not grow in the range)."""
    for (_, v0), (t1, v1) in zip(reversed(points[:-1]), reversed(points[1:])):
        if v0 is not None and v1 is not None and v1 != v0:
            return t1
    return points[0][0] if points else None


async def _stalled_since(prom: PrometheusClient, labels: dict[str, str], at: float) -> float | None:
    """When the exporter of a backlogged queue last delivered anything."""
    sent = "|".join(q.EXPORTER_SENT.values())
    inner = ", ".join(f"{k}={_quoted(v)}" for k, v in sorted(labels.items())
                      if k in ("job", "instance", "exporter"))
    series = await prom.samples(f'{{__name__=~"{sent}", {inner}}}', HISTORY_S, at)
    times = [t for t in (_last_growth(s.points) for s in series) if t is not None]
    return max(times) if times else None


async def _targets_down(prom: PrometheusClient, at: float) -> list[dict]:
    async def one(s: Sample) -> dict:
        job, instance = s.labels.get("job", ""), s.labels.get("instance", "")
        since = await _since(prom, q.UP, s.labels, at, _is_down)
        component = COMPONENTS.get(job, job)
        return {"component": component,
                "reason": f"scrape target {job} ({instance}) is down: Prometheus cannot scrape it",
                "since": since, "affects": AFFECTS.get(component, [])}

    return list(await asyncio.gather(*(one(s) for s in await prom.query(q.down(), at))))


def _collector_checks() -> list[tuple[str, str, object, str]]:
    """(series, PromQL selecting the series in trouble, how to find since when, reason)."""
    checks = []
    for what, signal in (("spans", "traces"), ("metric points", "metrics")):
        name = q.RECEIVER_REFUSED[signal]
        checks.append((name, q.grew(name, RECENT, COLLECTOR_SELECTOR), _rising_since,
                       f"a receiver refused {what} in the last {RECENT} (memory_limiter "
                       f"back-pressure)"))
        name = q.EXPORTER_SEND_FAILED[signal]
        checks.append((name, q.grew(name, RECENT, COLLECTOR_SELECTOR), _rising_since,
                       f"an exporter gave up sending {what} in the last {RECENT}"))
    # A queue that holds data is normal while its exporter batches or sends; one that held data
    # for BACKLOG while its exporter delivered nothing is stuck.
    sent = " or ".join(q.grew(name, BACKLOG, COLLECTOR_SELECTOR)
                       for name in q.EXPORTER_SENT.values())
    checks.append((q.EXPORTER_QUEUE_SIZE,
                   f"(min_over_time({q.collector(q.EXPORTER_QUEUE_SIZE)}[{BACKLOG}]) > 0)\n"
                   f"unless on(exporter) ({sent})", None,
                   f"an exporter's sending queue has held data for {BACKLOG} while the exporter "
                   f"delivered nothing (it cannot deliver)"))
    return checks


async def _collector_trouble(prom: PrometheusClient, at: float) -> list[dict]:
    checks = _collector_checks()
    results = await asyncio.gather(*(prom.query(expr, at) for _, expr, _, _ in checks))

    async def one(name: str, s: Sample, how, reason: str) -> dict:
        since = (await _since(prom, name, s.labels, at, how) if how is not None
                 else await _stalled_since(prom, s.labels, at))
        who = s.labels.get("exporter") or s.labels.get("receiver") or ""
        return {"component": METRICS_PATH, "reason": reason + (f" ({who})" if who else ""),
                "since": since, "affects": AFFECTS[METRICS_PATH]}

    return list(await asyncio.gather(*(one(name, s, how, reason)
                                       for (name, _, how, reason), samples in zip(checks, results)
                                       for s in samples)))


async def _sources(prom: PrometheusClient, window: Window,
                   at: float) -> tuple[dict, dict, dict, dict]:
    """Per source: its newest sample time, its samples in the last INTERVAL_WINDOW_S and the
    first of them, and its newest sample time at the window's start."""
    recent = f"{INTERVAL_WINDOW_S}s"
    newest, older, counts, first, at_start = await asyncio.gather(
        prom.query(q.last_sample(EXECUTIONS), at),
        prom.query(q.last_sample_within(EXECUTIONS, window.promql, SILENT_STEP), at),
        prom.query(q.samples_in(EXECUTIONS, recent), at),
        prom.query(q.first_sample_within(EXECUTIONS, recent), at),
        prom.query(q.last_sample(EXECUTIONS), at - window.seconds))
    # The instant query is exact for sources heard from within the lookback delta; the
    # subquery finds the ones silent longer (its last step may precede the newest sample).
    last = {**_value_of(older), **_value_of(newest)}
    return last, _value_of(counts), _value_of(first), _value_of(at_start)


def start_gaps(at_start: dict, last: dict, intervals: dict, start: float) -> list[dict]:
    """Sources whose data has a hole across the window's start: a window count begins at the
    last sample before the start, so theirs include executions from before the window (from
    that sample to the start). Sources with no data after the start are not in the window."""
    gaps = []
    for key, before in sorted(at_start.items()):
        if last.get(key, 0) <= start or key not in intervals:
            continue
        if start - before > STALE_EXPORTS * intervals[key] + STALE_SLACK_S:
            gaps.append({"job": key[0], "instance": key[1], "from": iso(before), "to": iso(start),
                         "edge": "start"})
    return gaps


def _interval(last: float, first: float | None, count: float | None) -> float:
    if first is None or not count or count < 2 or last <= first:
        return UNKNOWN_INTERVAL_S
    return (last - first) / (count - 1)


async def _scrape_interval(prom: PrometheusClient, at: float) -> tuple[float, bool]:
    """The collector telemetry's scrape interval, from its recent `up` samples, and whether it
    is scraped at all."""
    series = await prom.samples(q.collector(q.UP), 300, at)
    gaps = sorted(b - a for s in series for (a, _), (b, _) in zip(s.points, s.points[1:]))
    return (gaps[len(gaps) // 2] if gaps else DEFAULT_SCRAPE_INTERVAL_S), bool(series)


def _gap_or_down(points: list[tuple[float, float | None]], start: float, until: float,
                 scrape_s: float) -> bool:
    """Scrape samples of one target in [start, until] show it down, or a hole in which nobody
    scraped it (Prometheus itself was not running: what was sent then is still in flight)."""
    if any(v == 0 for _, v in points):
        return True
    limit = 2 * scrape_s + 1
    times = [start, *(t for t, _ in points), until]
    return any(b - a > limit for a, b in zip(times, times[1:]))


async def _pipeline_broke(prom: PrometheusClient, t_last: float, stale_after: float,
                          scrape_s: float, at: float, watched: bool) -> bool:
    """Did the collector go down, refuse or fail, or Prometheus stop scraping it, before the
    source's next export after `t_last` was due (and the next scrape could see it)? Then that
    export is held up. A source that stopped while the pipeline was seen healthy, and stayed
    stopped, just stopped sending. `watched`: the collector's telemetry is scraped at all (not
    in embedded mode)."""
    until = min(at, t_last + stale_after + 2 * scrape_s)
    w = f"{max(1, math.ceil(until - t_last) + 1)}s"
    counters = " or ".join(f"({q.grew(name, w, COLLECTOR_SELECTOR)})" for name in
                           (q.RECEIVER_REFUSED["metrics"], q.EXPORTER_SEND_FAILED["metrics"]))
    failed, up = await asyncio.gather(
        prom.query(counters, until),
        prom.samples(q.collector(q.UP), max(1, math.ceil(until - t_last)), until))
    if failed:
        return True
    if not watched:
        return False
    return not up or any(_gap_or_down(s.points, t_last, until, scrape_s) for s in up)


async def assess(prom: PrometheusClient, window: Window, at: float) -> Freshness:
    down, trouble, (last, counts, first, at_start) = await asyncio.gather(
        _targets_down(prom, at), _collector_trouble(prom, at), _sources(prom, window, at))
    if any(d["component"] == METRICS_PATH for d in down):
        trouble = []  # its self-metrics stopped with it: their last values tell nothing new
    f = Freshness(degraded=down + trouble, sources=len(last),
                  newest_sample=max(last.values()) if last else None)
    metrics_path_down = any(d["component"] == METRICS_PATH for d in f.degraded)
    stale = []
    intervals = {key: _interval(t_last, first.get(key), counts.get(key))
                 for key, t_last in last.items()}
    f.inexact_start = start_gaps(at_start, last, intervals, at - window.seconds)
    for (job, instance), t_last in sorted(last.items()):
        interval = intervals[(job, instance)]
        stale_after = STALE_EXPORTS * interval + STALE_SLACK_S
        if at - t_last > stale_after:
            stale.append((job, instance, t_last, interval))
    if stale and not metrics_path_down:
        scrape_s, watched = await _scrape_interval(prom, at)
        broke = await asyncio.gather(*(
            _pipeline_broke(prom, t_last, STALE_EXPORTS * interval + STALE_SLACK_S, scrape_s, at,
                            watched)
            for _, _, t_last, interval in stale))
    else:
        broke = [True] * len(stale)
    for (job, instance, t_last, interval), held_up in zip(stale, broke):
        entry = {"job": job, "instance": instance, "last_sample": iso(t_last),
                 "age_s": round(at - t_last, 3), "export_interval_s": round(interval, 3),
                 "missing": held_up}
        f.stale.append(entry)
        if held_up:
            f.missing.append({"job": job, "instance": instance, "from": iso(t_last),
                              "to": iso(at)})
    if f.missing:
        since = min(t for (_, _, t, _), held_up in zip(stale, broke) if held_up)
        jobs = sorted({m["job"] for m in f.missing})
        f.degraded.append({
            "component": "agent metrics",
            "reason": (f"no samples from {len(f.missing)} of {f.sources} agent process(es) "
                       f"({', '.join(jobs)}) since {_hms(since)}: the collector was down or "
                       f"failing, or Prometheus was not running, when they exported; their "
                       f"numbers are missing until they catch up"),
            "since": since, "affects": ["metrics"]})
    for d in f.degraded:
        d["since"] = None if d["since"] is None else iso(d["since"])
    f.degraded.sort(key=lambda d: (d["since"] or "", d["component"]))
    return f
