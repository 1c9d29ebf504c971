"""Alert annotations rendered the way Prometheus renders them, for the template subset rules use.

/dashboard describes the instant `end`, but Prometheus only renders annotations for the alerts
active at its latest evaluation. So the API renders a rule's annotation itself, from the alert's
labels and the value of the rule's expression at `end`. Supported: `{{ $labels.<name> }}` and
`{{ $value | humanize }}`, `| humanizePercentage` or `| printf "%.<n>f"`, with Prometheus'
number formats. Any other template gives None: a missing text, never a wrong one.
"""

from __future__ import annotations

import math
import re

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
_PRINTF = re.compile(r'printf\s+"(%\.\d{1,2}f)"')
_BIG = ("k", "M", "G", "T", "P", "E", "Z", "Y")
_SMALL = ("m", "u", "n", "p", "f", "a", "z", "y")


def _g4(value: float) -> str:
    """Go's fmt "%.4g" (same rules as Python's for finite numbers)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def humanize(value: float) -> str:
    """Prometheus' `humanize`: 4 significant digits with an SI prefix."""
    if value == 0 or not math.isfinite(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in _BIG:
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
    else:
        for p in _SMALL:
            if abs(value) >= 1:
                break
            prefix, value = p, value * 1000
    return f"{_g4(value)}{prefix}"


def humanize_percentage(value: float) -> str:
    return f"{_g4(value * 100)}%"


def _action(expr: str, labels: dict[str, str], value: float | None) -> str | None:
    if match := _LABEL.fullmatch(expr):
        return labels.get(match.group(1), "")
    head, _, pipe = (part.strip() for part in expr.partition("|"))
    if head != "$value" or value is None or "|" in pipe:
        return None
    if pipe == "humanize":
        return humanize(value)
    if pipe == "humanizePercentage":
        return humanize_percentage(value)
    if match := _PRINTF.fullmatch(pipe):
        return match.group(1) % value
    return None


def render(template: str, labels: dict[str, str], value: float | None) -> str | None:
    """`template` with its actions filled in, or None if one of them is not supported."""
    parts, pos = [], 0
    for match in _ACTION.finditer(template):
        text = _action(match.group(1), labels, value)
        if text is None:
            return None
        parts += [template[pos:match.start()], text]
        pos = match.end()
    return "".join(parts) + template[pos:]
