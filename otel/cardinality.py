"""Bounded label values: every metric label takes values from a finite set.

Known vocabularies (domains, profiles, side effects, outcomes, decisions) map anything else to
"other". Open vocabularies (tool names, error types) admit the first N distinct values per
process and map later newcomers to "other", so a flood of distinct values can grow neither
memory nor the number of series.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from otel.catalogue import OTHER

MAX_LABEL_CHARS = 64


class ClosedSet:
    """Values from a fixed vocabulary; anything else is `other`."""

    def __init__(self, values: Iterable[str]) -> None:
        self._known = {v: v for v in values}

    def __call__(self, value: object) -> str:
        return self._known.get(value, OTHER)  # type: ignore[arg-type]


class BoundedSet:
    """First `limit` distinct values are kept (cleaned by `clean`); later ones become `other`."""

    def __init__(self, limit: int, clean: Callable[[str], str]) -> None:
        self._limit = limit
        self._clean = clean
        self._admitted: dict[str, str] = {}
        self._lock = threading.Lock()
        self.overflowed = 0  # values mapped to `other` because the bound was reached

    def __call__(self, value: object) -> str:
        label = self._admitted.get(value)  # type: ignore[arg-type]
        if label is not None:
            return label
        return self._admit(value)

    def _admit(self, value: object) -> str:
        if not isinstance(value, str) or not value:
            return OTHER
        with self._lock:
            label = self._admitted.get(value)
            if label is not None:
                return label
            if len(self._admitted) >= self._limit:
                self.overflowed += 1
                return OTHER
            label = self._clean(value)[:MAX_LABEL_CHARS] or OTHER
            self._admitted[value] = label
            return label
