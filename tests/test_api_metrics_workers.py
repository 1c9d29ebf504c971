"""The API's own /metrics with several uvicorn workers (no per-process numbers that break
with several workers). The real launcher (`python -m services.api --workers 2`) serves
Alertmanager notifications; whichever worker answers a scrape, it shows the count of every
request the API served, after every request, and a restart of the workers (graceful SIGHUP or a
SIGKILLed worker) neither loses nor repeats a count. One worker keeps the plain per-process
registry. Prometheus is a closed port here: only the API's own counters matter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from services.api.metrics import ApiMetrics
from services.api.worker_metrics import ENV_VAR, MetricsDirError, worker_metrics_dir
from services.stack.process import ManagedProcess, free_port, wait_until
from services.stack.run import api_process
from tests.support.api import notification
from tests.support.exposition import samples
from tests.support.processes import descendants

REPO = Path(__file__).resolve().parents[1]
NOTIFIED = "api_alert_notifications_total"  # counted once per POST /alerts/warning below
MAX_REQUESTS = 400  # bound while waiting for the kernel to hand requests to both workers


@dataclass
class Api:
    proc: ManagedProcess
    url: str
    tmp: Path  # the launcher's TMPDIR: its private metrics directory is made in there

    def workers(self) -> set[int]:
        return {pid for pid, cmd in descendants(self.proc.pid).items() if "spawn_main" in cmd}

    def metrics_dirs(self) -> list[Path]:
        return sorted(self.tmp.glob("cugar-api-metrics-*"))

    def notify(self) -> None:
        # A new connection each time, so the kernel may pick either worker.
        r = httpx.post(f"{self.url}/alerts/warning", json=notification(), timeout=10)
        assert r.status_code == 200, r.text

    def scrape_text(self) -> str:
        r = httpx.get(f"{self.url}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        return r.text

    def scrape(self) -> dict[str, float]:
        """Sample name (labels of the firing/warning series only) -> value."""
        return {name: value for (name, labels), value in samples(self.scrape_text()).items()
                if labels in ((), (("severity", "warning"), ("status", "firing")),
                              (("outcome", "unavailable"),))}

    def per_worker(self) -> dict[int, float]:
        """Each worker's own share of NOTIFIED, read from its file in the shared directory."""
        (directory,) = self.metrics_dirs()
        shares = {}
        for path in directory.glob("counter_*.db"):
            shares[int(path.stem.split("_")[1])] = sum(
                s.value for metric in MultiProcessCollector.merge([str(path)])
                for s in metric.samples
                if s.name == NOTIFIED and s.labels == {"severity": "warning", "status": "firing"})
        return shares


def start_api(tmp_path: Path, workers: int) -> Api:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    proc = api_process(tmp_path, port, f"http://127.0.0.1:{free_port()}", None,
                       {"OTEL_SDK_DISABLED": "true", "TMPDIR": str(tmp)}, workers=workers)
    return Api(proc.start(), f"http://127.0.0.1:{port}", tmp)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    api = start_api(tmp_path, workers=2)
    try:
        wait_until(lambda: len(api.workers()) == 2, 30, what="two uvicorn workers")
        yield api
    finally:
        api.proc.stop()


def assert_each_request_is_counted_once(api: Api, sent: int, more: int) -> int:
    """`more` requests, a scrape after each: it must show every request so far."""
    for _ in range(more):
        api.notify()
        sent += 1
        assert api.scrape()[NOTIFIED] == sent
    return sent


def test_every_scrape_counts_the_requests_of_all_workers(api: Api) -> None:
    sent = 0
    while sent < MAX_REQUESTS:
        api.notify()
        sent += 1
        if sent >= 40 and sent % 10 == 0 and len([v for v in api.per_worker().values() if v]) == 2:
            break
    shares = api.per_worker()
    assert set(shares) == api.workers() and all(shares.values()), \
        f"not both workers served after {sent} requests: {shares}"
    assert sum(shares.values()) == sent and max(shares.values()) < sent

    for _ in range(3):
        assert httpx.get(f"{api.url}/dashboard", timeout=10).status_code == 503
    scrapes = [api.scrape() for _ in range(12)]
    for scrape in scrapes:
        assert scrape[NOTIFIED] == sent
        assert scrape["api_alert_notification_alerts_total"] == sent
        # Every query failed (Prometheus is a closed port) and each was timed once.
        assert scrape["api_prometheus_queries_total"] > 0
        assert scrape["api_prometheus_query_duration_seconds_count"] == \
            scrape["api_prometheus_queries_total"]
    assert all(scrape == scrapes[0] for scrape in scrapes)

    assert_each_request_is_counted_once(api, sent, 20)
    # Per-process collectors have no multiprocess form: left out rather than per-worker.
    assert "process_cpu_seconds_total" not in api.scrape_text()

    (directory,) = api.metrics_dirs()
    api.proc.stop()
    assert not directory.exists(), "the launcher leaves its private directory behind"


def test_restarted_workers_lose_nothing_and_count_nothing_twice(api: Api) -> None:
    sent = assert_each_request_is_counted_once(api, 0, 15)

    old = api.workers()
    os.kill(api.proc.pid, signal.SIGHUP)  # uvicorn replaces every worker, one by one
    wait_until(lambda: len(api.workers()) == 2 and not api.workers() & old, 60,
               what="uvicorn to replace both workers after SIGHUP")
    assert [api.scrape()[NOTIFIED] for _ in range(6)] == [sent] * 6
    sent = assert_each_request_is_counted_once(api, sent, 10)

    victim = min(api.workers())
    os.kill(victim, signal.SIGKILL)  # no shutdown code runs in the victim
    wait_until(lambda: len(api.workers()) == 2 and victim not in api.workers(), 60,
               what="uvicorn to replace the killed worker")
    assert [api.scrape()[NOTIFIED] for _ in range(6)] == [sent] * 6
    sent = assert_each_request_is_counted_once(api, sent, 10)

    # Two first workers, two after SIGHUP, one after the kill: every worker's file is kept.
    # (A worker writes its file once its app is created; the replacement may still be starting.)
    (directory,) = api.metrics_dirs()
    wait_until(lambda: len(list(directory.glob("counter_*.db"))) >= 5, 30,
               what="the replacement worker's metrics file")
    assert len(list(directory.glob("counter_*.db"))) == 5


def test_one_worker_keeps_the_per_process_registry(tmp_path: Path) -> None:
    api = start_api(tmp_path, workers=1)
    try:
        assert api.metrics_dirs() == []
        assert_each_request_is_counted_once(api, 0, 3)
        assert "process_cpu_seconds_total" in api.scrape_text()
    finally:
        api.proc.stop()


# --- the launcher's directory --------------------------------------------------------------
def test_several_workers_get_a_private_directory_removed_at_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env: dict[str, str] = {}
    with worker_metrics_dir(2, env) as directory:
        assert directory is not None and directory.parent == tmp_path
        assert env == {ENV_VAR: str(directory)} and list(directory.iterdir()) == []
    assert env == {} and not directory.exists()


def test_one_worker_needs_no_directory() -> None:
    env: dict[str, str] = {}
    with worker_metrics_dir(1, env) as directory:
        assert directory is None and env == {}


def test_a_given_directory_is_emptied_of_a_previous_runs_values(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "histogram_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    env = {ENV_VAR: str(tmp_path)}
    with worker_metrics_dir(2, env) as directory:
        assert directory == tmp_path
        assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert env == {ENV_VAR: str(tmp_path)} and tmp_path.is_dir()


@pytest.mark.parametrize("value", ["", "FILE"])
def test_an_unusable_given_directory_is_a_clear_error(tmp_path: Path, value: str) -> None:
    if value == "FILE":
        value = str(tmp_path / "file")
        Path(value).write_text("x")
    with pytest.raises(MetricsDirError, match=ENV_VAR), worker_metrics_dir(2, {ENV_VAR: value}):
        pass


def test_launcher_refuses_an_unusable_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    result = subprocess.run([sys.executable, "-m", "services.api", "--workers", "2"], cwd=REPO,
                            env={**os.environ, ENV_VAR: str(file)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and f"{ENV_VAR}={file} is not a usable" in result.stderr


def test_a_directory_set_after_import_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # prometheus_client is already imported here
    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        ApiMetrics()


# --- multiprocess mode inside one worker (a fresh interpreter: the mode is chosen at import) -
WORKER = textwrap.dedent("""
    import json, os, struct, sys
    from pathlib import Path
    from prometheus_client import Gauge
    from services.api.metrics import ApiMetrics
    from tests.support.api import api_client, notification

    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    pid = os.getpid()
    metrics = ApiMetrics()
    live = Gauge("live_thing", "a live gauge", multiprocess_mode="livesum")
    live.set(1)
    out = {}
    with api_client(metrics=metrics, prometheus_url=sys.argv[1]) as c:
        c.post("/alerts/warning", json=notification())
        out["scrape"] = c.get("/metrics").text
        out["files_serving"] = sorted(p.name for p in directory.iterdir())
    out["files_exited"] = sorted(p.name for p in directory.iterdir())
    with api_client(metrics=metrics, prometheus_url=sys.argv[1]) as c:
        # A well-formed entry whose key is not JSON, as a damaged file would have.
        entry = struct.pack("i8sdd", 8, b"not json", 1.0, 0.0)
        (directory / "counter_1.db").write_bytes(
            struct.pack("ii", 8 + len(entry), 0) + entry + bytes(64))
        broken = c.get("/metrics")
        out["corrupt"] = [broken.status_code, broken.text]
        for p in directory.iterdir():
            p.unlink()
        directory.rmdir()
        gone = c.get("/metrics")
        out["gone"] = [gone.status_code, gone.text]
    out["pid"] = pid
    print(json.dumps(out))
""")


def test_a_worker_sums_the_directory_and_marks_itself_dead_at_exit(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    result = subprocess.run([sys.executable, "-c", WORKER, f"http://127.0.0.1:{free_port()}"],
                            cwd=REPO, env={**os.environ, ENV_VAR: str(directory)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    pid = out["pid"]
    assert 'api_alert_notifications_total{severity="warning",status="firing"} 1.0' in out["scrape"]
    assert "process_cpu_seconds_total" not in out["scrape"]
    assert f"gauge_livesum_{pid}.db" in out["files_serving"]
    # Leaving the lifespan marks the worker dead: its live gauge goes, its counts stay.
    assert f"gauge_livesum_{pid}.db" not in out["files_exited"]
    assert f"counter_{pid}.db" in out["files_exited"]
    assert out["corrupt"] == [500, "metrics collection failed: JSONDecodeError\n"]
    assert out["gone"] == [500, "metrics collection failed: FileNotFoundError\n"]
