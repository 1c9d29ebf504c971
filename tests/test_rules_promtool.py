"""Prometheus rules, Prometheus config and Alertmanager config, checked with the real promtool
and amtool, plus the contract between rules, the metric catalogue and the runbooks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from otel import catalogue
from services.monitoring import __main__ as generate
from services.monitoring import queries, tunables
from services.stack import components
from services.stack.collector import COLLECTOR_SELF_METRICS, LAZY_SELF_METRICS
from services.stack.components import PROMETHEUS_DIR
from services.stack.pipeline import ALERTMANAGER_CONFIG, render_alertmanager_config
from tests.support import require, runbook_anchors
from tests.support.promql import series_names

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
TEST_RULE_FILES = sorted((PROMETHEUS_DIR / "tests" / "rules").glob("*.yml"))
# `anchored` is experimental in Prometheus 3.13: the server and promtool need the feature flag.
FEATURES = "--enable-feature=promql-extended-range-selectors"

# The agent alerts' severity and `for:` as the earlier system defined them (tunables.py must keep them).
SEED_ALERTS = {
    "LowSuccessRate": ("warning", "5m"), "CriticalSuccessRate": ("critical", "2m"),
    "HighErrorRate": ("warning", "5m"), "HighLatencyP95": ("warning", "10m"),
    "HighLatencyP99": ("warning", "10m"), "FrequentBudgetExceeded": ("warning", None),
    "HighToolErrorRate": ("warning", "5m"), "ApprovalTimeouts": ("critical", "1m"),
    "NoRecentExecutions": ("info", "30m"), "DomainErrors": ("warning", None),
}
PIPELINE_ALERTS = {"CollectorRefusingData", "CollectorExportFailing",
                   "CollectorExporterQueueFull", "ScrapeTargetDown", "CollectorCardinalityOverflow",
                   "CollectorDroppingInvalidPoints", "SendersDroppingTelemetry"}
LLM_ALERTS = {"LLMCostOverBudget", "LLMTokenSpike", "HighLLMErrorRate"}
GENAI_ALERTS = {"GenAIAgentErrorRateHigh", "GenAIToolErrorRateHigh", "GenAIAgentLatencyP95High"}
ALERT_DELIVERY_ALERTS = {"AlertmanagerFailedToSendNotifications",
                         "PrometheusErrorSendingAlertsToAnyAlertmanager",
                         "PrometheusNotConnectedToAlertmanagers"}
# A promtool whose `test rules` evaluates with a parser that does not know `anchored`
# (Prometheus before 3.16) fails every case with this message.
ANCHORED_UNSUPPORTED = "anchored modifier is experimental and not enabled"

def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def _rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for r in _rules() if "alert" in r}


def test_series_name_extraction_sees_through_promql() -> None:
    expr = ('# a comment naming not_a_series\nsum by (outcome) (increase(x_total{a="b"}[5m] '
            'anchored)) or on() vector(0) / (y:rec > 0) unless up{job="a b"}')
    assert series_names(expr) == {"x_total", "up", "y:rec"}
    # Grafana's: variables in matchers, ranges and offsets are not series.
    expr = ('round(sum by (le) (rate(cugar_x_bucket{profile=~"$profile", a="b(c)"}[$__range])) '
            'offset 5m or vector(0) * on() group_left up > bool 0.5)')
    assert series_names(expr) == {"cugar_x_bucket", "up"}


def test_generated_files_are_current() -> None:
    assert generate.COUNTING_TEST_RULES_FILE in TEST_RULE_FILES
    assert {generate.RECORDING_FILE, generate.AGENT_ALERTS_FILE, generate.PIPELINE_ALERTS_FILE,
            generate.ALERT_DELIVERY_ALERTS_FILE, generate.LLM_ALERTS_FILE,
            generate.GENAI_ALERTS_FILE} == set(RULE_FILES)
    stale = generate.stale()
    assert not stale, f"stale generated files {stale}: run `{generate.COMMAND}`"


def test_check_names_each_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    copies = {}
    for path, text in generate.rendered().items():
        copy = tmp_path / path.name
        copy.write_text(text)
        copies[path] = copy
    stale_copy = copies[generate.AGENT_ALERTS_FILE]
    stale_copy.write_text(stale_copy.read_text().replace("< 0.9", "< 0.8"))
    real = generate.rendered
    monkeypatch.setattr(generate, "rendered",
                        lambda: {copies[p]: text for p, text in real().items()})
    monkeypatch.setattr(generate, "REPO_ROOT", tmp_path)
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"cugar_alerts.yml is stale; run `{generate.COMMAND}`"]


def test_queries_refuse_labels_a_metric_does_not_carry() -> None:
    with pytest.raises(ValueError, match="has no label"):
        queries.count(catalogue.EXECUTIONS, "5m", matchers=[queries.eq("domain", "x")])
    with pytest.raises(ValueError, match="does not fit"):
        queries.count(catalogue.EXECUTIONS, "5m", suffix="_bucket")
    # Resource labels and `le` on buckets are fine.
    queries.count(catalogue.EXECUTION_DURATION, "5m", suffix="_bucket",
                  matchers=[queries.eq("le", "+Inf"), queries.eq("instance", "a")])


def test_promtool_checks_rules_and_config(tmp_path: Path) -> None:
    promtool = require(components.PROMTOOL)
    rules = _run([promtool, "check", "rules", FEATURES, *RULE_FILES, *TEST_RULE_FILES])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The shipped config names the API key file that compose's entrypoint writes inside the
    # container, and promtool insists such files exist: check a copy that differs only in
    # pointing at a real (empty) key file, with the rule files at their absolute place.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    key_file = tmp_path / "cugar-api-key"
    key_file.write_text("")
    key_jobs = [job for job in config["scrape_configs"] if "authorization" in job]
    assert key_jobs, "no scrape job sends the API key"
    for job in key_jobs:
        job["authorization"]["credentials_file"] = str(key_file)
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    config = _run([promtool, "check", "config", FEATURES, "prometheus.yml"], cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"{len(RULE_FILES)} rule files found" in config.stdout + config.stderr


def _test_rules(promtool: Path, files: list, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = _run([promtool, "test", "rules", FEATURES, *files], cwd=cwd)
    if ANCHORED_UNSUPPORTED in result.stdout + result.stderr:
        pytest.fail(f"{promtool} cannot evaluate `anchored` in `test rules` (its test engine "
                    "ignores --enable-feature; fixed in Prometheus 3.16). Build promtool with "
                    "components/patches/prometheus-promtool-anchored-eval.patch applied.",
                    pytrace=False)
    return result


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = require(components.PROMTOOL)
    assert RULE_TESTS, "no promtool test files in monitoring/prometheus/tests"
    result = _test_rules(promtool, RULE_TESTS, PROMETHEUS_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


# (rules file, regex, replacement, the promtool test file that must notice)
MUTATIONS = {
    # A threshold off by a little: the "fires at 85%" case must notice.
    "alert threshold": ("rules/cugar_alerts.yml", re.escape("cugar_success_rate < 0.9"),
                        "cugar_success_rate < 0.85", "cugar_alerts_test.yml"),
    # Plain increase() extrapolates: the exact counts must notice, over 10m and over 5m.
    "10m: plain increase()": ("tests/rules/counting.yml", r" anchored\)", ")",
                              "counting_test.yml"),
    "5m: plain increase()": ("rules/cugar_recording.yml", r" anchored\)", ")",
                             "golden_signals_test.yml"),
    # Ratios without the `> 0` guard are NaN (present) in an idle window.
    "ratio without its idle guard": ("rules/cugar_recording.yml", r"\) > 0\)", "))",
                                     "golden_signals_test.yml"),
    # Without `or on() vector(0)`, no success at all would be no success rate.
    "share without its zero": ("rules/cugar_recording.yml",
                               r'(\{outcome="success"\}\)) or on\(\) vector\(0\)', r"\1",
                               "golden_signals_test.yml"),
    "latency in seconds": ("rules/cugar_recording.yml", r"1000 \* histogram_quantile",
                           "histogram_quantile", "golden_signals_test.yml"),
    "latency NaN when idle": ("rules/cugar_recording.yml", r"\n\s+and on\(\) \([^\n]*\)", "",
                              "golden_signals_test.yml"),
    "nothing reported is not 0": ("rules/cugar_alerts.yml",
                                  r"\(sum\(outcome:cugar_executions_total:increase5m\) "
                                  r"or on\(\) vector\(0\)\)",
                                  "sum(outcome:cugar_executions_total:increase5m)",
                                  "cugar_alerts_test.yml"),
    # One Alertmanager failing while another delivers is not "any".
    "delivery: some instead of every Alertmanager": (
        "rules/alert_delivery_alerts.yml", r"min without \(alertmanager\)",
        "max without (alertmanager)", "alert_delivery_alerts_test.yml"),
    # LLM alerts: a profile's own budget, the spike's floor, failed calls only.
    "llm: a listed profile's budget ignored": (
        "rules/llm_alerts.yml", r'(\{profile="demo"\}\[1h\] anchored\)\)) > 2\n', r"\1 > 20\n",
        "llm_alerts_test.yml"),
    "llm: token spike without its floor": ("rules/llm_alerts.yml", r"increase10m > 50000",
                                           "increase10m > 0", "llm_alerts_test.yml"),
    "llm: every call counted as failed": ("rules/llm_alerts.yml", r'\{error_type!=""\}', "",
                                          "llm_alerts_test.yml"),
    # GenAI agents of any framework: per agent, not fleet-wide; errors only; p95 in seconds.
    "genai: agents summed together": (
        "rules/cugar_recording.yml",
        r"sum by \(job, gen_ai_agent_name\) \(increase\(cugar_genai_agent_errors_total",
        "sum by (job) (increase(cugar_genai_agent_errors_total", "genai_alerts_test.yml"),
    "genai: every tool call counted as failed": (
        "rules/genai_alerts.yml", r"job_gen_ai_tool_name:cugar_genai_tool_errors_total:increase5m",
        "job_gen_ai_tool_name:cugar_genai_tool_calls_total:increase5m", "genai_alerts_test.yml"),
    "genai: latency threshold in ms": ("rules/genai_alerts.yml", r"\) > 30\n", ") > 30000\n",
                                       "genai_alerts_test.yml"),
    # One failed notification among hundreds must not page.
    "delivery: any failure pages": ("rules/alert_delivery_alerts.yml", r"\) > 0\.01\n", ") > 0\n",
                                    "alert_delivery_alerts_test.yml"),
}


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_promtool_rule_unit_tests_catch_broken_rules(tmp_path: Path,
                                                     mutation: tuple[str, str, str, str]) -> None:
    promtool = require(components.PROMTOOL)
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    name, pattern, replacement, test_file = mutation
    target = copy / name
    text, count = re.subn(pattern, replacement, target.read_text())
    assert count, f"{pattern!r} not found in {name}"
    target.write_text(text)
    result = _test_rules(promtool, [test_file], copy / "tests")
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{test_file} did not notice {mutation}:\n{output}"
    assert "FAILED" in output, output


def test_amtool_checks_alertmanager_config(tmp_path: Path) -> None:
    amtool = require(components.AMTOOL)
    result = _run([amtool, "check-config", ALERTMANAGER_CONFIG])
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = render_alertmanager_config(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()),
                                          webhook_url="http://127.0.0.1:9/hook", group_wait="1s")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(rendered))
    result = _run([amtool, "check-config", path])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_by_severity_and_inhibits_warning_by_critical() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    first, *by_severity = config["route"]["routes"]
    routed = {m for route in by_severity for m in route["matchers"]}
    assert routed == {'severity="critical"', 'severity="warning"', 'severity="info"'}
    # Alerts about delivery first, to a receiver of their own (not the one that fails).
    assert first["matchers"] == [f'family="{tunables.ALERT_DELIVERY_FAMILY}"']
    assert first["receiver"] not in {route["receiver"] for route in by_severity}
    assert {a.family for a in tunables.ALERT_DELIVERY_ALERTS} == {tunables.ALERT_DELIVERY_FAMILY}
    receivers = {r["name"]: r for r in config["receivers"]}
    for route in [config["route"], *config["route"]["routes"]]:
        assert receivers[route["receiver"]]["webhook_configs"], route
    inhibit = config["inhibit_rules"]
    assert {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
            "equal": ["family"]} in inhibit


def test_every_series_in_rules_exists() -> None:
    """No rule reads a series nobody exports (the earlier system's bug)."""
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    delivery = frozenset().union(*queries.ALERT_DELIVERY_METRICS.values())
    known = (catalogue.all_series_names() | catalogue.genai_derived_series_names() | recorded
             | COLLECTOR_SELF_METRICS | LAZY_SELF_METRICS | {queries.UP} | delivery)
    referenced: dict[str, set[str]] = {}
    for rule in rules:
        for name in series_names(rule["expr"]):
            referenced.setdefault(name, set()).add(rule.get("alert") or rule.get("record"))
    unknown = {name: sorted(users) for name, users in referenced.items() if name not in known}
    assert not unknown, f"rules reference series that are never exported: {unknown}"
    # Not vacuous: the raw catalogue counters and the self-metrics are really used.
    assert {"cugar_executions_total", "cugar_tool_calls_total", "up"} <= referenced.keys()
    assert COLLECTOR_SELF_METRICS <= referenced.keys()


def test_every_golden_signal_is_recorded_with_its_labels() -> None:
    rules = [r for r in _rules() if "record" in r]
    recorded = {r["record"] for r in rules}
    missing = {g.name for g in catalogue.GOLDEN_SIGNALS} - recorded
    assert not missing, f"golden signals without a recording rule: {missing}"
    percentiles = {r["labels"]["percentile"] for r in rules if r["record"] == "cugar_latency_ms"}
    assert percentiles == set(catalogue.LATENCY_PERCENTILES)
    for rule in rules:
        if rule["record"] in {g.name for g in catalogue.GOLDEN_SIGNALS}:
            assert "> 0" in rule["expr"], f"{rule['record']} is not guarded against idle windows"


def test_seed_alerts_and_pipeline_alerts_are_defined() -> None:
    alerts = _alerts()
    assert (set(SEED_ALERTS) | PIPELINE_ALERTS | ALERT_DELIVERY_ALERTS | LLM_ALERTS
            | GENAI_ALERTS == set(alerts) == set(tunables.ALERTS))
    for name, (severity, duration) in SEED_ALERTS.items():
        assert alerts[name]["labels"]["severity"] == severity, name
        assert alerts[name].get("for") == duration, name


def test_alerts_follow_the_tunables_table() -> None:
    for name, rule in _alerts().items():
        tunable = tunables.ALERTS[name]
        assert rule["labels"] == {"severity": tunable.severity, "family": tunable.family}, name
        assert rule.get("for") == tunable.for_, name
        assert rule["annotations"]["runbook_url"] == tunable.runbook_url, name
        if tunable.threshold is not None:
            assert re.search(rf"[<>=] {tunable.threshold:g}$", rule["expr"].strip()), name


def test_every_alert_is_annotated_with_an_existing_runbook() -> None:
    anchors = runbook_anchors()
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["labels"].get("family"), f"{name} has no family label (inhibition)"
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), f"{name} has no {key} annotation"
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbooks.md", name
        assert anchor in anchors, f"{name}: docs/runbooks.md has no section #{anchor}"
