"""Generates monitoring/prometheus/rules/cugar_recording.yml: the fleet-wide window increases
and the golden signals of otel/catalogue.py (SPEC §4), plus the rules the promtool window tests
evaluate (monitoring/prometheus/tests/rules/window_increase.yml).

    python -m services.stack.recording_rules            # rewrite the rules files
    python -m services.stack.recording_rules --check    # exit 1 when a file is stale

Why generated: every golden signal is built from "how much did counter X grow in the window",
and that expression (services/promql.py, shared with the API and Grafana) is subtle enough
that it must be written once.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from otel import catalogue
from services.promql import sum_increase, window_increase
from services.stack.components import PROMETHEUS_DIR

RULES_FILE = PROMETHEUS_DIR / "rules" / "cugar_recording.yml"
# Evaluated by monitoring/prometheus/tests/window_increase_test.yml: the shared expression over
# a window other than the rules' 5m (the API's windows are caller-chosen).
TEST_RULES_FILE = PROMETHEUS_DIR / "tests" / "rules" / "window_increase.yml"
TEST_WINDOW = "10m"
TEST_COUNTER = "cugar_executions_total"


@dataclass(frozen=True)
class WindowIncrease:
    """Fleet-wide growth of one counter series family over a window, optionally kept by labels."""

    series: str
    window: str = "5m"
    by: tuple[str, ...] = ()

    @property
    def record(self) -> str:
        level = "_".join(self.by) if self.by else "fleet"
        return f"{level}:{self.series}:increase{self.window}"

    def expr(self) -> str:
        return sum_increase(self.series, self.window, self.by)


def _increases() -> tuple[WindowIncrease, ...]:
    names = catalogue.METRICS_BY_NAME
    duration = names["cugar_execution_duration_milliseconds"].name
    wait = names["cugar_approval_wait_milliseconds"].name
    util = names["cugar_budget_utilization_ratio"].name
    steps = names["cugar_execution_steps"].name
    return (
        WindowIncrease("cugar_executions_total", by=("outcome",)),
        WindowIncrease("cugar_tool_calls_total", by=("outcome",)),
        WindowIncrease("cugar_domain_errors_total", by=("domain",)),
        WindowIncrease("cugar_approval_timeouts_total"),
        WindowIncrease("cugar_budget_exceeded_total", window="1h"),
        WindowIncrease(f"{duration}_bucket", by=("le",)),
        WindowIncrease(f"{wait}_sum"),
        WindowIncrease(f"{wait}_count"),
        WindowIncrease(f"{util}_sum"),
        WindowIncrease(f"{util}_count"),
        WindowIncrease(f"{steps}_sum"),
        WindowIncrease(f"{steps}_count"),
    )


INCREASES = _increases()
_R = {i.series: i.record for i in INCREASES}


def _ratio(numerator: str, denominator: str) -> str:
    # Absent (never 0) when nothing happened in the window: the denominator filter drops it.
    return f"{numerator}\n/\n({denominator} > 0)"


def _share(record: str, label: str, value: str) -> str:
    # A missing outcome series means none of that outcome in the window: count it as 0.
    return _ratio(f'(sum({record}{{{label}="{value}"}}) or on() vector(0))', f"sum({record})")


def _mean(histogram: str) -> str:
    return _ratio(_R[f"{histogram}_sum"], _R[f"{histogram}_count"])


def golden_signal_rules() -> list[dict]:
    duration_bucket = _R["cugar_execution_duration_milliseconds_bucket"]
    rules: list[dict] = [
        {"record": "cugar_success_rate",
         "expr": _share(_R["cugar_executions_total"], "outcome", "success")},
        {"record": "cugar_error_rate",
         "expr": _share(_R["cugar_executions_total"], "outcome", "failure")},
    ]
    for label, q in catalogue.LATENCY_PERCENTILES.items():
        rules.append({
            "record": "cugar_latency_ms",
            "expr": (f"histogram_quantile({q}, {duration_bucket})\n"
                     f'and on() ({duration_bucket}{{le="+Inf"}} > 0)'),
            "labels": {"percentile": label},
        })
    rules += [
        {"record": "cugar_approval_wait_time_ms", "expr": _mean("cugar_approval_wait_milliseconds")},
        {"record": "cugar_tool_error_rate",
         "expr": _share(_R["cugar_tool_calls_total"], "outcome", "error")},
        {"record": "cugar_budget_utilization", "expr": _mean("cugar_budget_utilization_ratio")},
        {"record": "cugar_steps_per_execution", "expr": _mean("cugar_execution_steps")},
    ]
    return rules


def rules_document() -> dict:
    increases = [{"record": i.record, "expr": i.expr()} for i in INCREASES]
    return {"groups": [{"name": "cugar-golden-signals",
                        "rules": increases + golden_signal_rules()}]}


def test_rules_document() -> dict:
    x, w = TEST_COUNTER, TEST_WINDOW
    return {"groups": [{"name": "window-increase", "rules": [
        {"record": f"series:{x}:increase{w}", "expr": window_increase(x, w)},
        {"record": f"fleet:{x}:increase{w}", "expr": sum_increase(x, w)},
    ]}]}


class _Literal(str):
    pass


def _dump(doc: dict, what: str) -> str:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _Literal(rule["expr"] + "\n")
    header = ("# GENERATED by `python -m services.stack.recording_rules` from otel/catalogue.py\n"
              "# and services/promql.py; do not edit by hand (a test fails when it is stale).\n"
              f"# {what}\n")
    return header + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100)


def rendered() -> dict[Path, str]:
    """Every generated file and its current text."""
    return {
        RULES_FILE: _dump(rules_document(),
                          "Fleet-wide 5m window increases (docs/pipeline.md#counting-inside-a-window)\n"
                          "# and the SPEC §4 golden signals, absent when the window saw no traffic."),
        TEST_RULES_FILE: _dump(test_rules_document(),
                               f"The window increase over {TEST_WINDOW}, per series and fleet-wide, "
                               "for\n# monitoring/prometheus/tests/window_increase_test.yml."),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file is stale")
    args = parser.parse_args(argv)
    stale = 0
    for path, text in rendered().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} is stale; run `python -m services.stack.recording_rules`",
                      file=sys.stderr)
                stale = 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return stale


if __name__ == "__main__":
    sys.exit(main())
