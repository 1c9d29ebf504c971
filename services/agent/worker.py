"""One worker's share of a run: which executions it plays and when, overlapping in asyncio.

Execution i of a run belongs to worker i mod P. Closed loop: the worker plays its executions
with `concurrency` of them in flight. Open loop: execution i starts i / rate seconds after the
worker starts, whether or not earlier ones have finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from services.agent.driver import Pacer, play
from services.agent.scenario import SimulationConfig, script_for
from services.agent.stop import StopSignal
from services.agent.summary import empty_summary, record

log = logging.getLogger("services.agent")
LAG_WARNING_EVERY_S = 10.0


@dataclass(frozen=True)
class Pacing:
    """How a run is paced (none of this changes what the executions decide)."""

    executions: int | None = None  # closed loop
    rate: float | None = None  # open loop: executions per second ...
    duration: float | None = None  # ... for this many seconds
    processes: int = 1
    concurrency: int = 8  # closed loop: executions in flight per process
    time_scale: float = 1.0
    agent_name: str = "cugar-sales"

    def __post_init__(self) -> None:
        closed = self.executions is not None
        if closed == (self.rate is not None):
            raise ValueError("give either --executions N or --rate R with --duration D")
        if closed and self.duration is not None:
            raise ValueError("--duration goes with --rate, not with --executions")
        if closed and self.executions < 0:
            raise ValueError(f"--executions must be >= 0, got {self.executions}")
        if not closed:
            if self.duration is None:
                raise ValueError("--rate needs --duration SECONDS")
            for name, value in (("--rate", self.rate), ("--duration", self.duration)):
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(f"{name} must be a number > 0, got {value}")
        if not 1 <= self.processes <= 64:
            raise ValueError(f"--processes must be within 1..64, got {self.processes}")
        if self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not (math.isfinite(self.time_scale) and self.time_scale >= 0):
            raise ValueError(f"--time-scale must be a number >= 0, got {self.time_scale}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    def total_executions(self) -> int:
        if self.executions is not None:
            return self.executions
        # executions start at 0, 1/R, 2/R, ... strictly before D
        return math.ceil(self.rate * self.duration - 1e-9)

    def indices(self, worker: int) -> range:
        return range(worker, self.total_executions(), self.processes)


def expected_summary(config: SimulationConfig, pacing: Pacing,
                     workers: range | None = None) -> dict[str, Any]:
    """The ground truth a complete run will report, computed without playing it."""
    summary = empty_summary(processes=pacing.processes, seed=config.seed)
    for worker in workers if workers is not None else range(pacing.processes):
        for index in pacing.indices(worker):
            record(summary, script_for(index, config))
    summary["error_types"] = dict(sorted(summary["error_types"].items()))
    return summary


async def run_worker(agent: Any, config: SimulationConfig, pacing: Pacing, worker: int,
                     stop: StopSignal) -> dict[str, Any]:
    """Play worker `worker`'s executions; returns its ground-truth summary."""
    summary = empty_summary(processes=1, seed=config.seed)
    pacer = Pacer(pacing.time_scale, stop)

    async def one(index: int) -> None:
        script = script_for(index, config)
        await play(agent, script, pacer, pacing.agent_name)
        record(summary, script)

    watcher = asyncio.create_task(stop.watch())
    try:
        if pacing.open_loop:
            await _open_loop(one, pacing, worker, stop)
        else:
            await _closed_loop(one, pacing, worker, stop)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    summary["interrupted"] = stop.is_set()
    return summary


async def _closed_loop(one: Any, pacing: Pacing, worker: int, stop: StopSignal) -> None:
    pending = iter(pacing.indices(worker))

    async def lane() -> None:
        for index in pending:  # lanes share the iterator: each index is played once
            if stop.is_set():
                return
            await one(index)
            if pacing.time_scale == 0:
                await asyncio.sleep(0)  # let the stop watcher and the other lanes run

    await asyncio.gather(*(lane() for _ in range(pacing.concurrency)))


async def _open_loop(one: Any, pacing: Pacing, worker: int, stop: StopSignal) -> None:
    started = time.monotonic()
    in_flight: set[asyncio.Task[None]] = set()
    warned_at = -LAG_WARNING_EVERY_S
    try:
        for index in pacing.indices(worker):
            delay = started + index / pacing.rate - time.monotonic()
            if delay > 0:
                await stop.wait(delay)
            elif -delay > 1.0 and time.monotonic() - warned_at > LAG_WARNING_EVERY_S:
                warned_at = time.monotonic()
                log.warning("open loop is %.1fs behind schedule: this process is saturated "
                            "(use more --processes or a lower --rate)", -delay)
            if stop.is_set():
                break
            task = asyncio.create_task(one(index))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
    finally:
        if in_flight:
            await asyncio.gather(*in_flight)
