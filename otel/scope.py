"""What executions, tool calls and approvals share: sync/async context-manager plumbing."""

from __future__ import annotations

from otel.core import Core
from otel.spans import FastSpan, monotonic_ns


def seconds(start_mono: int, end_mono: int) -> float:
    """Seconds between two `monotonic_ns()` readings (metrics record durations in seconds)."""
    return (end_mono - start_mono) / 1e9


class Scope:
    """Shared sync/async context-manager plumbing.

    Subclasses implement `_start(core, start)` and `_finish(core, end, exc_type, exc)`; both
    run only with telemetry enabled, at most once, and any telemetry error inside them is
    counted instead of raised.
    """

    __slots__ = ("_core", "_start_mono", "_span", "_done")

    def __init__(self, core: Core | None) -> None:
        self._core = core
        self._span: FastSpan | None = None
        self._done = False

    def __enter__(self):
        self._enter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._exit(exc_type, exc)
        return False  # the agent's exception, if any, propagates unchanged

    async def __aenter__(self):
        self._enter()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._exit(exc_type, exc)
        return False

    def _enter(self) -> None:
        core = self._core
        if core is None:
            return
        self._start_mono = start = monotonic_ns()
        try:
            self._start(core, start)
        except Exception:  # noqa: BLE001
            core.internal_error(f"{type(self).__name__} start")

    def _exit(self, exc_type, exc) -> None:
        core = self._core
        if core is None or self._done:
            return
        self._done = True
        end = monotonic_ns()
        try:
            self._finish(core, end, exc_type, exc)
        except Exception:  # noqa: BLE001
            core.internal_error(f"{type(self).__name__} end")

    def _start(self, core: Core, start: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:  # pragma: no cover
        raise NotImplementedError
