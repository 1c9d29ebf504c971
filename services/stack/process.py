"""A managed child process: free loopback ports, readiness polling with a deadline, log tail
on failure, clean stop of the whole process group."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self


class ProcessFailed(RuntimeError):
    """A managed process did not start or died; the message carries its log tail."""


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int, reuse: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuse:  # as servers bind: a port is not busy for its old connections in TIME_WAIT
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a server started next.

    It comes from below the kernel's ephemeral range: a port from that range (what bind to
    port 0 gives) can be taken as the local end of any outgoing connection before the server
    binds it, which CI hit as "address already in use". Ports are never handed out twice by
    one process.
    """
    ceiling = _ephemeral_floor()
    if ceiling - LOWEST_PORT >= 1000:
        for _ in range(200):
            port = random.randrange(LOWEST_PORT, ceiling)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    _handed_out.add(port)
    return port


def claim_port(port: int, host: str = "127.0.0.1") -> bool:
    """Take `port` for a server started next when nothing listens on it; `free_port` never
    hands it out afterwards. False when it is busy (or was handed out already)."""
    if port in _handed_out or not _bindable(host, port, reuse=True):
        return False
    _handed_out.add(port)
    return True


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URLs)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1,
               what: str = "condition") -> None:
    """Poll `predicate` until it is true or `timeout` seconds pass (then TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """Runs `argv` with output in `log_path`; `start()` waits until `ready_url` answers 2xx."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 ready_url: str | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.ready_url = ready_url
        self.env = env
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal), else None."""
        return self._proc.poll() if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 60.0) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, **(self.env or {})}
        self._proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      cwd=self.cwd, start_new_session=True)
        log.close()
        if self.ready_url:
            try:
                wait_until(lambda: not self.running() or http_ok(self.ready_url), timeout,
                           what=f"{self.name} at {self.ready_url}")
            except TimeoutError as exc:
                self.stop()
                raise ProcessFailed(f"{self.name} not ready: {exc}\n--- log tail "
                                    f"({self.log_path}) ---\n{self.log_tail()}") from None
            if not self.running():
                code = self._proc.returncode
                raise ProcessFailed(f"{self.name} exited with code {code} during start-up\n"
                                    f"--- log tail ({self.log_path}) ---\n{self.log_tail()}")
        return self

    def kill(self, timeout: float = 15.0) -> None:
        """SIGKILL the process group (a crash, not a shutdown) and wait until it is gone."""
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `timeout`; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        return proc.returncode

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProcessOwner:
    """A component running as one ManagedProcess (`self.process`) with its files in
    `self.workdir`; `start()` returns once the process is ready."""

    process: ManagedProcess
    workdir: Path

    def start(self, timeout: float = 60.0) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process.start(timeout=timeout)
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
