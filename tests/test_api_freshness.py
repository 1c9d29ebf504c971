"""/dashboard's freshness verdicts (services/api/freshness.py): the pure parts on hand-made
sample series, the export interval on a real Prometheus fed exact sample times; the real
pipeline cases are in tests/test_pipeline_degraded.py."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import pytest

from otel.catalogue import EXECUTIONS
from services.api import freshness as f
from services.api.prometheus import PrometheusClient
from services.api.window import Window
from services.stack.components import PROMETHEUS
from services.stack.pipeline import prometheus_process
from services.stack.process import free_port
from tests.support import require
from tests.support.otlp_raw import push_counter


def test_down_since_is_the_first_failed_scrape_after_the_last_good_one() -> None:
    up = [(100.0, 1.0), (101.0, 1.0), (102.0, 0.0), (103.0, 0.0), (104.0, 0.0)]
    assert f._is_down(up) == 102.0
    assert f._is_down(up + [(105.0, 1.0)]) is None  # back up
    assert f._is_down([(100.0, 0.0), (101.0, 0.0)]) == 100.0  # down for the whole range


def test_a_counter_grows_since_its_current_stretch_began() -> None:
    quiet_then_growing = [(0.0, 5.0), (10.0, 5.0), (20.0, 7.0), (30.0, 9.0), (40.0, 9.0)]
    assert f._rising_since(quiet_then_growing) == 10.0
    # Growth that paused for more than a minute started a new stretch.
    two_stretches = [(0.0, 1.0), (10.0, 2.0), (100.0, 2.0), (110.0, 3.0)]
    assert f._rising_since(two_stretches) == 100.0


def test_an_exporter_stalled_when_its_sent_counter_last_grew() -> None:
    assert f._last_growth([(0.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]) == 1.0
    assert f._last_growth([(0.0, 4.0), (1.0, 4.0)]) == 0.0


def test_a_hole_in_the_scrapes_or_a_failed_one_means_the_pipeline_broke() -> None:
    healthy = [(11.0, 1.0), (12.0, 1.0), (13.0, 1.0), (14.0, 1.0)]
    assert not f._gap_or_down(healthy, 10.5, 14.5, scrape_s=1.0)
    assert f._gap_or_down([(11.0, 1.0), (12.0, 0.0)], 10.5, 12.5, scrape_s=1.0)
    # Prometheus was not running from 12 to 20: nobody scraped the collector.
    assert f._gap_or_down([(11.0, 1.0), (12.0, 1.0), (20.0, 1.0)], 10.5, 20.5, scrape_s=1.0)
    assert f._gap_or_down([], 10.5, 20.5, scrape_s=1.0)  # no scrape at all in the range
    assert not f._gap_or_down([], 10.5, 12.5, scrape_s=1.0)  # too short to expect one


def test_the_export_interval_is_measured_from_the_samples() -> None:
    assert f._interval(last=110.0, first=100.0, count=21) == 0.5
    assert f._interval(last=110.0, first=None, count=None) == f.UNKNOWN_INTERVAL_S
    assert f._interval(last=110.0, first=110.0, count=1) == f.UNKNOWN_INTERVAL_S


def test_a_hole_across_the_window_start_makes_the_counts_inexact() -> None:
    start = 1000.0
    key, other, gone = ("cugar-sales", "a"), ("cugar-sales", "b"), ("cugar-sales", "c")
    at_start = {key: 984.0, other: 999.6, gone: 900.0}  # a: last sample 16 s before the start
    last = {key: 1100.0, other: 1100.0, gone: 900.0}  # c stopped before the window
    intervals = {key: 0.5, other: 0.5, gone: 0.5}
    assert f.start_gaps(at_start, last, intervals, start) == [
        {"job": "cugar-sales", "instance": "a", "from": "1970-01-01T00:16:24Z",
         "to": "1970-01-01T00:16:40Z", "edge": "start"}]
    assert f.start_gaps({key: 999.0}, last, intervals, start) == []


# --- on a real Prometheus --------------------------------------------------------------------
async def _assess(prometheus_url: str, at: float) -> f.Freshness:
    async with httpx.AsyncClient() as client:
        prom = PrometheusClient(prometheus_url, 10.0, client, lambda *_: None)
        return await f.assess(prom, Window(300), at)


@pytest.mark.integration
def test_a_young_source_is_judged_by_its_own_export_interval(tmp_path: Path) -> None:
    """A process whose whole history is 2 s of exports every 0.5 s is stale 10 s after its last
    one. Its interval must come from its first sample's exact time: a first sample found on a
    5 s grid (the earlier subquery) was its last one, so the interval fell back to 60 s and the
    source looked fresh for 3 minutes (tests/test_pipeline_degraded.py timed out on it in CI)."""
    require(PROMETHEUS)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 1s\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # All of the history, the start sample included, inside one 5 s step of the clock.
    start = math.floor((time.time() - 30) / 5) * 5 + 0.25
    times = [start + 0.5 * i for i in range(1, 6)]
    with prometheus_process(tmp_path, port, config):
        answers = push_counter(f"{url}/api/v1/otlp/v1/metrics", "cugar-sales", "young",
                               EXECUTIONS.name, EXECUTIONS.unit,
                               [(t, n) for n, t in enumerate(times, start=1)], start,
                               {"outcome": "success", "profile": "smb"})
        assert [r.status_code for r in answers] == [200] * len(times), answers[-1].text
        assessed = asyncio.run(_assess(url, at=times[-1] + 10))
    assert f.STALE_EXPORTS * 0.5 + f.STALE_SLACK_S < 10
    assert [(s["instance"], s["export_interval_s"]) for s in assessed.stale] == [("young", 0.5)]
