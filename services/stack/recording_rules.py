"""Generates monitoring/prometheus/rules/cugar_recording.yml: the fleet-wide window increases
and the golden signals of otel/catalogue.py (SPEC §4).

    python -m services.stack.recording_rules            # rewrite the rules file
    python -m services.stack.recording_rules --check    # exit 1 when the file is stale

Why generated: every golden signal is built from "how much did counter X grow in the window",
and that expression is subtle enough that it must be written once. Plain `increase()` never
counts a series' first sample, so a short-lived agent process (or the first error / timeout of
a process) would be invisible to the rules. The window increase therefore adds, for a series
that was born inside the window, its whole value (a cumulative OTel counter starts at 0):

    ( x and (count_over_time(x[w]) < <successful scrapes of the collector in w>)
        unless last_over_time(x[1h] offset w) )     # born in the window, seen being born
    or increase(x[w])                               # everything else: resets/restarts safe

A series only counts as born when Prometheus was already scraping the collector successfully
before the series' first sample (so a fresh Prometheus facing a long-running fleet does not
mistake lifetime totals for a burst) and it was not seen in the hour before the window (so
collector restarts and scrape gaps do not either).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from otel import catalogue

RULES_FILE = (Path(__file__).resolve().parents[2]
              / "monitoring" / "prometheus" / "rules" / "cugar_recording.yml")
COLLECTOR_JOB = "otel-collector"  # scrape job of the collector's prometheus exporter
SEEN_BEFORE_LOOKBACK = "1h"


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
        x, w = self.series, self.window
        scrapes = f'scalar(min(sum_over_time(up{{job="{COLLECTOR_JOB}"}}[{w}])))'
        per_series = (
            f"(\n"
            f"    {x}\n"
            f"      and (count_over_time({x}[{w}]) < {scrapes})\n"
            f"      unless last_over_time({x}[{SEEN_BEFORE_LOOKBACK}] offset {w})\n"
            f"  )\n"
            f"  or increase({x}[{w}])"
        )
        by = f" by ({', '.join(self.by)})" if self.by else ""
        return f"sum{by} (\n  {per_series}\n)"


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


class _Literal(str):
    pass


def _dump(doc: dict) -> str:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _Literal(rule["expr"] + "\n")
    header = ("# GENERATED by `python -m services.stack.recording_rules` from otel/catalogue.py;\n"
              "# do not edit by hand (a test fails when this file is stale).\n"
              "# Fleet-wide 5m window increases (new series counted from 0, resets handled by\n"
              "# increase()) and the SPEC §4 golden signals, absent when the window saw no traffic.\n")
    return header + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100)


def render() -> str:
    return _dump(rules_document())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = RULES_FILE.read_text() if RULES_FILE.exists() else ""
        if current != text:
            print(f"{RULES_FILE} is stale; run `python -m services.stack.recording_rules`",
                  file=sys.stderr)
            return 1
        return 0
    RULES_FILE.parent.mkdir(parents=True, exist_ok=True)
    RULES_FILE.write_text(text)
    print(RULES_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
