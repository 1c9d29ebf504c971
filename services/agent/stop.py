"""One stop request for a worker, from any of: a signal, the parent's shared event, or the
parent process disappearing (so a killed parent never leaves workers running)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

WATCH_INTERVAL_S = 0.1


class StopSignal:
    def __init__(self, shared_event: Any | None = None, parent_pid: int | None = None) -> None:
        self._requested = False
        self._shared = shared_event  # a multiprocessing Event set by the parent, if any
        self._parent_pid = parent_pid
        self._event: asyncio.Event | None = None
        self.signum: int | None = None

    def request(self, signum: int | None = None) -> None:
        # Only sets attributes: safe to call from a signal handler.
        self._requested = True
        if signum is not None and self.signum is None:
            self.signum = signum

    def is_set(self) -> bool:
        if not self._requested and (
                (self._shared is not None and self._shared.is_set())
                or (self._parent_pid is not None and os.getppid() != self._parent_pid)):
            self._requested = True
        return self._requested

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda s, _frame: self.request(s))

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator["StopSignal"]:
        """SIGINT/SIGTERM request this stop while inside; previous handlers restored after."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        self.install_signal_handlers()
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    async def wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early once a stop is requested."""
        if self.is_set():
            return
        try:
            await asyncio.wait_for(self._async_event().wait(), timeout)
        except TimeoutError:
            pass

    def _async_event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def watch(self) -> None:
        """Turn a stop request into the asyncio event that wakes every pending `wait`."""
        event = self._async_event()
        while not self.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
        event.set()
