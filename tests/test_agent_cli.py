"""`python -m services.agent run`: arguments, output, determinism across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.agent.cli import main
from services.agent.scenario import SimulationConfig
from services.agent.worker import Pacing, expected_summary

REPO = Path(__file__).resolve().parents[1]
# Telemetry off: these tests are about the CLI and its ground truth, not about export.
QUIET_ENV = {**os.environ, "OTEL_SDK_DISABLED": "true"}


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.agent", *args], cwd=REPO,
                          env=env or QUIET_ENV, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required"),
    (["run"], "give either --executions N or --rate R"),
    (["run", "--executions", "5", "--rate", "2"], "give either --executions N or --rate R"),
    (["run", "--rate", "2"], "--rate needs --duration"),
    (["run", "--executions", "5", "--duration", "3"], "--duration goes with --rate"),
    (["run", "--executions", "-1"], "--executions must be >= 0"),
    (["run", "--executions", "ten"], "invalid int value: 'ten'"),
    (["run", "--rate", "0", "--duration", "5"], "--rate must be a number > 0"),
    (["run", "--rate", "nan", "--duration", "5"], "--rate must be a number > 0"),
    (["run", "--executions", "5", "--processes", "0"], "--processes must be within 1..64"),
    (["run", "--executions", "5", "--concurrency", "0"], "--concurrency must be >= 1"),
    (["run", "--executions", "5", "--time-scale", "-1"], "--time-scale must be a number >= 0"),
    (["run", "--executions", "5", "--fail", "intelligence"], "expected DOMAIN=RATE"),
    (["run", "--executions", "5", "--fail", "marketing=0.5"], "unknown failure target"),
    (["run", "--executions", "5", "--fail", "intelligence=2"], "within 0..1"),
    (["run", "--executions", "5", "--profile", "vip"], "unknown profile 'vip'"),
    (["run", "--executions", "5", "--latency-multiplier", "0"], "latency multiplier must be > 0"),
    (["run", "--executions", "5", "--budget-usd", "demo"], "expected PROFILE=USD"),
    (["run", "--executions", "5", "--budget-usd", "vip=1"], "--budget-usd: unknown profile 'vip'"),
    (["run", "--executions", "5", "--budget-usd", "demo=0"],
     "--budget-usd: the ceiling of 'demo' must be a positive number of US dollars"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""


@pytest.mark.parametrize("name, value", [
    ("OTEL_TRACES_SAMPLER", "bogus"),
    ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id"),
    ("CUGAR_MAX_TOOLS", "0"),
])
def test_a_bad_telemetry_variable_exits_2_naming_it(name: str, value: str) -> None:
    result = cli("run", "--executions", "1", env={**QUIET_ENV, name: value})
    assert result.returncode == 2, result.stderr
    assert f"invalid telemetry settings: {name}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_bad_arguments_from_the_command_line() -> None:
    result = cli("run", "--executions", "5", "--fail", "marketing=0.5")
    assert result.returncode == 2
    assert "unknown failure target 'marketing'" in result.stderr
    assert result.stdout == ""


def test_run_prints_one_json_summary_equal_to_the_plan() -> None:
    result = cli("run", "--executions", "300", "--time-scale", "0", "--seed", "8",
                 "--fail", "governance=0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary == expected_summary(SimulationConfig(seed=8, error_rates={"governance": 0.5}),
                                       Pacing(executions=300, time_scale=0))
    assert "seed 8" in result.stderr  # logs go to stderr


def test_several_processes_sum_to_the_single_process_ground_truth() -> None:
    one = cli("run", "--executions", "900", "--time-scale", "0", "--seed", "4")
    three = cli("run", "--executions", "900", "--time-scale", "0", "--seed", "4",
                "--processes", "3")
    assert one.returncode == three.returncode == 0, (one.stderr, three.stderr)
    a, b = json.loads(one.stdout), json.loads(three.stdout)
    assert (a["processes"], b["processes"]) == (1, 3)
    for worker in range(3):
        assert f"[w{worker}] INFO worker {worker}" in three.stderr
    b["processes"] = 1
    assert a == b


def test_open_loop_runs_at_the_given_rate() -> None:
    result = cli("run", "--rate", "20", "--duration", "1.5", "--processes", "2",
                 "--time-scale", "0", "--seed", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["executions"] == 30
    assert summary == expected_summary(SimulationConfig(seed=1),
                                       Pacing(rate=20, duration=1.5, processes=2, time_scale=0))


def test_without_a_seed_runs_differ_and_report_their_seed() -> None:
    runs = [json.loads(cli("run", "--executions", "50", "--time-scale", "0").stdout)
            for _ in range(2)]
    assert runs[0]["seed"] != runs[1]["seed"]
    for summary in runs:
        assert summary == expected_summary(SimulationConfig(seed=summary["seed"]),
                                           Pacing(executions=50, time_scale=0))
