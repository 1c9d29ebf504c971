"""Golden signals read straight from the agents' in-process /metrics, without Prometheus.

For `make run` on a machine without Prometheus: every agent serves the catalogue metrics itself
(CUGAR_EMBEDDED_PROMETHEUS_PORT), and this module scrapes them and computes lifetime numbers
since the run started: executions by outcome, success and error rates, and latency percentiles
from the execution-duration histogram's buckets (as histogram_quantile does). Each agent
instance's last scrape is kept, so an agent that exited or was restarted (new instance id)
still counts.

Metric names come from otel/catalogue.py (`MetricSpec.series`).
"""

from __future__ import annotations

import math
import urllib.error
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from otel import catalogue
from services.stack.probe import Sample, scrape

OUTCOME_LABEL = "outcome"
INSTANCE_LABEL = catalogue.RESOURCE_LABELS["service.instance.id"]
SUCCESS, FAILURE = catalogue.EXECUTION_OUTCOMES
MS_PER_S = 1000  # the histogram is in seconds, the line shows milliseconds
EXECUTIONS = catalogue.EXECUTIONS
EXECUTION_DURATION = catalogue.EXECUTION_DURATION


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Quantile `q` from cumulative buckets [(upper bound, count)], as Prometheus'
    histogram_quantile: linear inside the bucket; the highest finite bound for the +Inf one;
    None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass(frozen=True)
class Totals:
    successful: int
    failed: int
    latency_ms: dict[str, float | None]

    @property
    def executions(self) -> int:
        return self.successful + self.failed


def totals(samples: Iterable[Sample]) -> Totals:
    """Lifetime counts and latency percentiles of the agents' samples (all instances)."""
    outcomes: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    counter, bucket = EXECUTIONS.series(), EXECUTION_DURATION.series("_bucket")
    for s in samples:
        if s.name == counter:
            outcomes[s.labels.get(OUTCOME_LABEL, "")] += s.value
        elif s.name == bucket:
            buckets[float(s.labels["le"])] += s.value
    latency = {}
    for label, q in catalogue.LATENCY_PERCENTILES.items():
        value = quantile(q, list(buckets.items()))
        latency[label] = None if value is None else value * MS_PER_S
    return Totals(int(outcomes[SUCCESS]), int(outcomes[FAILURE]), latency)


def format_totals(t: Totals) -> str:
    if not t.executions:
        return "since start: no executions yet"
    rate = lambda n: f"{100 * n / t.executions:.1f}%"  # noqa: E731
    ms = " ".join(f"{k}={'-' if v is None else f'{v:.0f}ms'}" for k, v in t.latency_ms.items())
    return (f"since start: executions={t.executions} (ok {t.successful} / failed {t.failed}) "
            f"success={rate(t.successful)} error={rate(t.failed)} {ms}")


class AgentMetrics:
    """The agents' /metrics endpoints, scraped on demand; each instance's last scrape is kept."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self._last: dict[str, list[Sample]] = {}

    def poll(self) -> list[str]:
        """Scrape every agent; the errors (an agent between restarts, say), one per agent."""
        errors = []
        for url in self.urls:
            try:
                samples = scrape(url)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            by_instance: dict[str, list[Sample]] = defaultdict(list)
            for s in samples:
                by_instance[s.labels.get(INSTANCE_LABEL, url)].append(s)
            self._last.update(by_instance)
        return errors

    def totals(self) -> Totals:
        return totals(s for samples in self._last.values() for s in samples)
