"""Annotation templates rendered like Prometheus for /dashboard's alerts (services/api/
alert_text.py). Expected strings are Prometheus' own outputs for these inputs (its template
tests and the rules of this repository); the end-to-end test compares the live rendering with
Prometheus' for the firing alerts."""

from __future__ import annotations

import math

import pytest

from services.api.alert_text import humanize, humanize_percentage, render


@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (1.0, "1"), (1234567.0, "1.235M"), (0.12, "120m"), (-1500.0, "-1.5k"),
    (0.0001, "100u"), (999.9, "999.9"), (23.0, "23"), (1e30, "1e+06Y"),
    (math.inf, "+Inf"), (math.nan, "NaN"),
])
def test_humanize(value: float, text: str) -> None:
    assert humanize(value) == text


@pytest.mark.parametrize("value, text", [
    (0.0, "0%"), (1.0, "100%"), (0.4525, "45.25%"), (0.6125, "61.25%"),
    (0.908538, "90.85%"), (0.387500001, "38.75%"),
])
def test_humanize_percentage(value: float, text: str) -> None:
    assert humanize_percentage(value) == text


LABELS = {"alertname": "DomainErrors", "domain": "intelligence", "instance": "otelcol:8888"}


@pytest.mark.parametrize("template, value, text", [
    ("CUGAr success rate below 90% ({{ $value | humanizePercentage }})", 0.3875,
     "CUGAr success rate below 90% (38.75%)"),
    ('CUGAr p95 execution latency above 5s ({{ $value | printf "%.0f" }}ms)', 5234.6,
     "CUGAr p95 execution latency above 5s (5235ms)"),
    ("CUGAr domain {{ $labels.domain }}: {{ $value | humanize }} tool errors in 5m", 28.0,
     "CUGAr domain intelligence: 28 tool errors in 5m"),
    ("Collector {{$labels.instance}} refuses {{ $labels.signal }}", None,
     "Collector otelcol:8888 refuses "),
    ("No CUGAr executions for 30 minutes", None, "No CUGAr executions for 30 minutes"),
    ("docs/runbooks.md#domainerrors", 1.0, "docs/runbooks.md#domainerrors"),
])
def test_render(template: str, value: float | None, text: str) -> None:
    assert render(template, LABELS, value) == text


@pytest.mark.parametrize("template, value", [
    ("rate {{ $value | humanize }}", None),             # no value at `end`
    ("{{ $value }}", 1.0),                              # Go's %v: not guessed
    ("{{ $value | humanizeDuration }}", 1.0),
    ("{{ $value | humanize | printf \"%s\" }}", 1.0),
    ("{{ if gt $value 1.0 }}high{{ end }}", 2.0),
    ("{{ $externalLabels.cluster }}", 1.0),
])
def test_unsupported_templates_give_none_not_a_wrong_text(template: str,
                                                          value: float | None) -> None:
    assert render(template, LABELS, value) is None
