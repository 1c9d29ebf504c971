"""Keeping `make run`'s children alive: notice a child that died, say which (exit status, log
tail), restart it with bounded exponential backoff, and give up after too many restarts.

    sup = Supervisor(say)
    sup.watch(collector_process)
    while True:
        sup.check()           # non-blocking unless a restart is due; raises GaveUp
        print(sup.status())   # "" or "DEGRADED: collector down since 12:00:01 (...)"

A child that dies is restarted (`ManagedProcess.start()` again, same argv, so the same ports)
after 1 s, then 2 s, 4 s ... up to `max_backoff_s`, the delay doubling with each restart it had
within `window_s`. The `max_restarts`-th restart within that window is not attempted:
`check()` raises GaveUp, saying so. A restart that fails to come up counts as a death too.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.stack.process import ManagedProcess, ProcessFailed


class GaveUp(RuntimeError):
    """A child died more often than the restart cap allows; the message names it."""


def exit_status(code: int | None) -> str:
    """`-9` -> "killed by SIGKILL (exit status -9)", `1` -> "exit status 1"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} (exit status {code})"
        except ValueError:
            pass
    return f"exit status {code}"


@dataclass
class Outage:
    """A watched child that is down: since when (wall clock), and when it is restarted next."""

    name: str
    since: float
    status: str
    restart_at: float  # on the supervisor's clock

    def describe(self, now: float) -> str:
        wait = max(self.restart_at - now, 0.0)
        return (f"{self.name} down since {datetime.fromtimestamp(self.since):%H:%M:%S} "
                f"({self.status}; restart in {wait:.0f}s)")


@dataclass
class _Watched:
    proc: ManagedProcess
    finished_ok: bool  # an exit with status 0 means done (a bounded workload), not a death
    done: bool = False


class Supervisor:
    def __init__(self, say: Callable[[str], None], *, initial_backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, max_restarts: int = 5, window_s: float = 600.0,
                 start_timeout_s: float = 60.0, on_restart: Callable[[ManagedProcess], None]
                 | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, log_lines: int = 10) -> None:
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s or max_restarts < 1:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s and max_restarts >= 1")
        self.say = say
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.start_timeout_s = start_timeout_s
        self.on_restart = on_restart
        self.clock = clock
        self.wall_clock = wall_clock
        self.log_lines = log_lines
        self._watched: list[_Watched] = []
        self._outages: dict[str, Outage] = {}
        self._restarts: dict[str, deque[float]] = {}

    def watch(self, proc: ManagedProcess, finished_ok: bool = False) -> None:
        self._watched.append(_Watched(proc, finished_ok))

    @property
    def processes(self) -> list[ManagedProcess]:
        return [w.proc for w in self._watched]

    def outages(self) -> list[Outage]:
        return list(self._outages.values())

    def status(self) -> str:
        """"" while every child runs, else "DEGRADED: <who> down since <when> (...)"."""
        if not self._outages:
            return ""
        now = self.clock()
        return "DEGRADED: " + "; ".join(o.describe(now) for o in self._outages.values())

    def backoff(self, recent_restarts: int) -> float:
        """The delay before the next restart of a child restarted `recent_restarts` times in
        the window: 1 s, 2 s, 4 s ... capped at `max_backoff_s`."""
        return min(self.initial_backoff_s * 2 ** recent_restarts, self.max_backoff_s)

    def check(self) -> None:
        """Notice children that died and restart those whose backoff has passed."""
        for watched in self._watched:
            proc = watched.proc
            outage = self._outages.get(proc.name)
            if outage is not None:
                if self.clock() >= outage.restart_at:
                    self._restart(proc, outage)
            elif not watched.done and not proc.running():
                code = proc.returncode
                if code == 0 and watched.finished_ok:
                    watched.done = True
                    continue
                self._died(proc, exit_status(code), since=self.wall_clock(), what="exited")

    def _recent(self, name: str) -> deque[float]:
        recent = self._restarts.setdefault(name, deque())
        while recent and recent[0] <= self.clock() - self.window_s:
            recent.popleft()
        return recent

    def _died(self, proc: ManagedProcess, status: str, since: float, what: str) -> None:
        recent = self._recent(proc.name)
        if len(recent) >= self.max_restarts:
            self._outages[proc.name] = Outage(proc.name, since, status, float("inf"))
            raise GaveUp(f"{proc.name} {what} ({status}) after {len(recent)} restarts within "
                         f"{self.window_s:.0f}s; giving up (log: {proc.log_path})")
        delay = self.backoff(len(recent))
        self.say(f"{proc.name} (pid {proc.pid}) {what}: {status}; restarting it in {delay:g}s "
                 f"(restart {len(recent) + 1} of at most {self.max_restarts} per "
                 f"{self.window_s:.0f}s). Last lines of {proc.log_path}:\n"
                 f"{proc.log_tail(self.log_lines)}")
        self._outages[proc.name] = Outage(proc.name, since, status, self.clock() + delay)

    def _restart(self, proc: ManagedProcess, outage: Outage) -> None:
        _kill_group(proc.pid)  # what the dead child left behind in its process group
        self._recent(proc.name).append(self.clock())
        self.say(f"restarting {proc.name} ...")
        try:
            proc.start(timeout=self.start_timeout_s)
        except ProcessFailed as exc:
            first_line = str(exc).splitlines()[0]
            self._died(proc, first_line, since=outage.since, what="failed to restart")
            return
        del self._outages[proc.name]
        if self.on_restart is not None:
            self.on_restart(proc)
        self.say(f"{proc.name} restarted (pid {proc.pid}) after "
                 f"{self.wall_clock() - outage.since:.1f}s down")


def _kill_group(pid: int | None) -> None:
    """SIGKILL the process group a dead child led (its own children, if any survived it)."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
