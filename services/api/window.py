"""The caller-chosen time window of /dashboard: parsing and validation; instants as text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

MIN_SECONDS = 60
MAX_SECONDS = 24 * 3600
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_PATTERN = re.compile(r"^([1-9][0-9]{0,5})([smh])$")


def iso(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC to the second, e.g. 2026-01-05T12:00:00Z."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


class InvalidWindow(ValueError):
    """The window text is malformed or out of range; the message says what is accepted."""


@dataclass(frozen=True)
class Window:
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Window":
        match = _PATTERN.match(text.strip())
        if not match:
            raise InvalidWindow(f"window must be a number followed by s, m or h (e.g. 5m, 1h); "
                                f"got {text!r}")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise InvalidWindow(f"window must be between 1m and 24h; got {text!r}")
        return cls(seconds)

    @property
    def promql(self) -> str:
        """The window as a PromQL duration (seconds: exact and unambiguous)."""
        return f"{self.seconds}s"

    def __str__(self) -> str:
        for unit, size in (("h", 3600), ("m", 60)):
            if self.seconds % size == 0:
                return f"{self.seconds // size}{unit}"
        return f"{self.seconds}s"
