"""Reading PromQL in tests: which series an expression selects, and sums of query results."""

from __future__ import annotations

import re

from services.stack.prometheus_api import Result

# Aggregations, modifiers and literals that look like series names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan",
}


def series_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords, labels, Grafana
    variables removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)                             # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                            # range durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)                        # offset 5m, offset $__range
    e = re.sub(r"\$\w+", " ", e)                                 # Grafana variables
    functions = set(re.findall(r"([A-Za-z_]\w*)\s*\(", e))
    words = set(re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)", e))
    return {w for w in words - functions if w.lower() not in PROMQL_WORDS}


def total(result: Result) -> float:
    """Sum of the samples of an instant-query result (0 when empty)."""
    return sum(float(r["value"][1]) for r in result)
