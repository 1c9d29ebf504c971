"""Shared fixtures: a real pipeline (collector, Prometheus, Alertmanager) per test module, and a
runner for the simulated agent CLI (contract B) pointed at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.stack import components
from services.stack.pipeline import Pipeline
from tests.support import require

REPO_ROOT = Path(__file__).resolve().parents[1]
AGENT_TIMEOUT_S = 240


def require_pipeline_components() -> None:
    for component in (components.COLLECTOR, components.PROMETHEUS, components.ALERTMANAGER):
        require(component)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A fresh pipeline for the test module (1s scrape and evaluation intervals)."""
    require_pipeline_components()
    with Pipeline(tmp_path_factory.mktemp("pipeline")) as p:
        yield p


AgentRunner = Callable[..., dict]


def run_agent_cli(pipeline: Pipeline, *args: str, env: dict[str, str] | None = None,
                  protocol: str = "grpc", timeout: float = AGENT_TIMEOUT_S) -> dict:
    """Runs `python -m services.agent run ARGS` against `pipeline` over OTLP `protocol` ("grpc"
    or "http/protobuf"); returns its JSON summary."""
    full_env = {**os.environ, **pipeline.agent_env(protocol=protocol), **(env or {})}
    cmd = [sys.executable, "-m", "services.agent", "run", *args]
    proc = subprocess.run(cmd, env=full_env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"agent CLI {' '.join(args)} exited {proc.returncode}\n--- stderr tail ---\n"
                    f"{proc.stderr[-3000:]}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"agent CLI printed no JSON summary; stdout: {proc.stdout[-2000:]!r}",
                    pytrace=False)


@pytest.fixture(scope="module")
def run_agent() -> AgentRunner:
    """`run_agent(pipeline, "--executions", "50", ..., env={...})` -> ground-truth summary."""
    return run_agent_cli
