"""The directory where several uvicorn workers share their /metrics values.

prometheus_client's multiprocess mode: every worker writes its counters and histograms to
per-pid files in PROMETHEUS_MULTIPROC_DIR and /metrics sums the files of all workers, so any
worker answers a scrape with the same fleet-wide numbers. prometheus_client picks its mode
when it is imported, so the launcher sets the variable before uvicorn starts its workers.
Files of a worker that died stay: what it counted happened, and the sums must never go back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV_VAR = "prometheus_multiproc_dir"  # still honoured by prometheus_client


def multiprocess_dir(env: MutableMapping[str, str] | None = None) -> str | None:
    """The directory this process shares its metric values in; None = single-process mode."""
    env = os.environ if env is None else env
    return env.get(ENV_VAR, env.get(_LEGACY_ENV_VAR))


class MetricsDirError(ValueError):
    """PROMETHEUS_MULTIPROC_DIR is set but not usable."""


@contextmanager
def worker_metrics_dir(workers: int,
                       env: MutableMapping[str, str] | None = None) -> Iterator[Path | None]:
    """Prepares the shared directory for this run of the launcher and sets it in `env`.

    - PROMETHEUS_MULTIPROC_DIR already set: used (it must belong to this replica alone);
      values of a previous run (`*.db`) are deleted first, or they would be counted again.
    - else, with several workers: a new private directory, deleted when the run ends.
    - else (one worker): nothing; /metrics is the process's plain registry.
    """
    env = os.environ if env is None else env
    given = multiprocess_dir(env)
    if given is not None:
        yield _emptied(given)
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="cugar-api-metrics-"))
    env[ENV_VAR] = str(path)
    try:
        yield path
    finally:
        env.pop(ENV_VAR, None)
        shutil.rmtree(path, ignore_errors=True)


def _emptied(given: str) -> Path:
    if not given.strip():
        raise MetricsDirError(f"{ENV_VAR} is set but empty; unset it (the launcher then uses "
                              f"a private directory) or name a directory")
    path = Path(given)
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise MetricsDirError(f"{ENV_VAR}={given} is not a usable directory: "
                              f"{exc.strerror or exc}") from None
    return path
