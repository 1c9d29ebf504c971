"""Reading PromQL in tests: which series an expression selects, and sums of query results."""

from __future__ import annotations

import re

import yaml

from services.stack.components import PROMETHEUS_DIR
from services.stack.prometheus_api import Result, get_json

# Aggregations, modifiers and literals that look like series names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "offset", "bool", "inf", "nan", "anchored", "smoothed",
}


def series_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords, labels, Grafana
    variables removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # string literals
    e = re.sub(r"#[^\n]*", " ", e)                               # comments
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


def query_range(prometheus_url: str, expr: str, start: float, end: float,
                step: str) -> Result:
    """Range query; the result matrix (list of {"metric": {...}, "values": [[t, "v"], ...]})."""
    body = get_json(f"{prometheus_url}/api/v1/query_range",
                    {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step},
                    timeout=15)
    assert body["status"] == "success", f"{expr!r}: {body}"
    return body["data"]["result"]


def label_values(prometheus_url: str, metric: str, label: str) -> list[str]:
    """Values of `label` on the series of `metric` (Grafana's label_values(metric, label))."""
    return get_json(f"{prometheus_url}/api/v1/label/{label}/values", {"match[]": metric})["data"]


def alert_expr(name: str) -> str:
    """The expression of a shipped alert rule (monitoring/prometheus/rules), to evaluate it
    against the real Prometheus of a test."""
    for rules in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(rules.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    return rule["expr"]
    raise AssertionError(f"no alert {name} in {PROMETHEUS_DIR / 'rules'}")
