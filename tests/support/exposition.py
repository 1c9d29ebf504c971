"""Prometheus text exposition read back as numbers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def samples(text: str, prefix: str = "") -> dict[tuple[str, Labels], float]:
    """(sample name, sorted labels) -> value for the samples named `prefix...`; the `_created`
    timestamps are left out."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith(prefix) and not s.name.endswith("_created")}
