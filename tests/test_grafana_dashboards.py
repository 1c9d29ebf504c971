"""Grafana provisioning and dashboards, checked without Grafana: the dashboard model (through
Grafana's own foundation SDK), the earlier system's layout and thresholds, fixed budget gauge, variables
on labels that exist, series names from the catalogue or the recorded signals, runbook links,
provisioning paths. The dashboards are generated (services/monitoring/dashboards.py);
tests/test_rules_promtool.py fails when the committed JSON is stale."""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from otel import catalogue
from services.monitoring import queries
from services.monitoring.__main__ import DASHBOARDS_DIR
from services.monitoring.dashboards import DASHBOARDS as GENERATED
from tests.support import runbook_anchors
from tests.support.grafana import DASHBOARDS, GOLDEN, GRAFANA, panels, targets, variables
from tests.support.promql import series_names as metric_names

REPO = Path(__file__).resolve().parents[1]
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "cugar.yaml").read_text())
PROMETHEUS_UID = next(d["uid"] for d in DATASOURCES["datasources"] if d["type"] == "prometheus")

# Seed layout: 4 rows, 10 panels.
SEED_ROWS = {
    "Golden signals": ["Success rate", "Error rate", "Latency p95", "Total executions"],
    "Trends": ["Success / error rate over time", "Latency percentiles (p50 / p95 / p99)"],
    "Operations": ["Budget utilization", "Approval wait time", "Tool success rate"],
    "Analytics": ["Domain usage"],
}

NON_CATALOGUE_SERIES = {queries.UP, queries.SCRAPE_DURATION}
# The collector's own metrics that queries.py names (its only source of otelcol_* names).
COLLECTOR_NAMES = {n for v in vars(queries).values()
                   for n in (v.values() if isinstance(v, dict) else [v])
                   if isinstance(n, str) and n.startswith("otelcol_")}
# Catalogue metrics by every name they take in Prometheus (counter, _bucket, _sum, _count):
# our SDK's and the collector-derived GenAI ones.
BY_SERIES = {name: m for m in catalogue.GUARDED_METRICS for name in m.series_names()}
# Where a variable's values come from on each board: its label (Prometheus name).
VARIABLE_LABELS = {"profile": "profile", "domain": "domain", "model": "gen_ai_request_model",
                   "service": "job", "agent": "gen_ai_agent_name"}


def type_errors(value: Any, hint: Any, path: str = "") -> list[str]:
    """Where `value` (decoded by the SDK) does not fit the SDK's type annotations: unknown keys,
    wrong JSON types, enum values Grafana does not accept."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        # Panel options and queries are typed by plugin: check what the SDK decoded them into.
        return type_errors(value, type(value), path) if hasattr(value, "to_json") else []
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        attempts = [type_errors(value, a, path) for a in args if a is not type(None)]
        return [] if any(not a for a in attempts) else min(attempts, key=len)
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        return [e for i, item in enumerate(value)
                for e in type_errors(item, args[0] if args else typing.Any, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        return [e for k, item in value.items()
                for e in type_errors(item, args[1] if args else typing.Any, f"{path}/{k}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [m.value for m in hint]
        return [] if value in allowed else [f"{path}: {value!r} is not one of {allowed}"]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not a number"]
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {hint.__name__}"]
    if not isinstance(hint, type):
        return []
    if isinstance(value, dict) and hasattr(hint, "from_json"):  # left raw by the decoder
        decoded = hint.from_json(value)
        unknown = sorted(set(value) - set(decoded.to_json()))
        errors = [f"{path}: {unknown} not part of {hint.__name__}"] if unknown else []
        return errors + type_errors(decoded, hint, path)
    if not isinstance(value, hint):
        return [f"{path}: {value!r} is not a {hint.__name__}"]
    if not hasattr(value, "to_json"):
        return []
    return [e for name, h in typing.get_type_hints(type(value)).items() if hasattr(value, name)
            for e in type_errors(getattr(value, name), h, f"{path}/{name}")]


def model_problems(raw: dict) -> list[str]:
    """Decoded and re-encoded by Grafana's foundation SDK, nothing may be lost or changed
    (every key is one the model knows), and every value must fit the model's types."""
    register_default_plugins()
    decoded = Dashboard.from_json(raw)
    back = json.loads(json.dumps(decoded, cls=JSONEncoder))
    problems: list[str] = []

    def compare(a: object, b: object, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a:
                if key not in b:
                    problems.append(f"{path}/{key}: not part of the dashboard model")
                else:
                    compare(a[key], b[key], f"{path}/{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                compare(x, y, f"{path}[{i}]")
        elif a != b:
            problems.append(f"{path}: {a!r} became {b!r}")

    compare(raw, back, "")
    return problems + type_errors(decoded, Dashboard)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_a_valid_grafana_model(name: str) -> None:
    problems = model_problems(DASHBOARDS[name])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p.__setitem__("fieldconfig", p.pop("fieldConfig")), "fieldconfig"),
    (lambda p: p["fieldConfig"]["defaults"]["thresholds"].__setitem__("mode", "sometimes"),
     "'sometimes' is not one of"),
    (lambda p: p["options"].__setitem__("colorMode", "rainbow"), "'rainbow' is not one of"),
    (lambda p: p["gridPos"].__setitem__("w", "6"), "'6' is not int"),
    (lambda p: p["links"][0].__setitem__("targetblank", True), "not part of DashboardLink"),
], ids=["unknown key", "bad enum", "bad panel option", "wrong type", "unknown link key"])
def test_the_model_check_catches_broken_dashboards(mutate, expected: str) -> None:
    broken = json.loads(json.dumps(GOLDEN))
    mutate(broken["panels"][1])
    assert any(expected in problem for problem in model_problems(broken))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_layout_ids_and_datasources(name: str) -> None:
    d = DASHBOARDS[name]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
    for panel, target in targets(d):
        assert panel["datasource"]["uid"] == PROMETHEUS_UID, panel["title"]
        assert target["datasource"]["uid"] == PROMETHEUS_UID, panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
    assert d["uid"] and d["title"]


def test_golden_signals_dashboard_has_the_seeds_rows_and_panels() -> None:
    layout: dict[str, list[str]] = {}
    current = None
    for p in sorted(GOLDEN["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if p["type"] == "row":
            current = p["title"]
            layout[current] = []
        else:
            assert current is not None, f"{p['title']} is above the first row"
            layout[current].append(p["title"])
    assert layout == SEED_ROWS
    assert GOLDEN["title"] == "CUGAr golden signals"


def by_title(title: str) -> dict:
    return next(p for p in panels(GOLDEN) if p["title"] == title)


def steps(panel: dict) -> list[tuple[str, float | None]]:
    return [(s["color"], s["value"])
            for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_units_and_thresholds_follow_the_seed() -> None:
    success, error, p95 = by_title("Success rate"), by_title("Error rate"), by_title("Latency p95")
    assert success["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert steps(success) == [("red", None), ("yellow", 0.8), ("green", 0.9)]
    assert error["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert steps(error) == [("green", None), ("yellow", 0.05), ("red", 0.10)]
    assert p95["fieldConfig"]["defaults"]["unit"] == "ms"
    assert steps(p95) == [("green", None), ("yellow", 3000), ("red", 5000)]
    latency = by_title("Latency percentiles (p50 / p95 / p99)")
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]
    assert [re.search(r"histogram_quantile\((0\.\d+)", t["expr"]).group(1)
            for t in latency["targets"]] == ["0.5", "0.95", "0.99"]


def test_budget_gauge_is_used_over_ceiling_on_0_to_100_percent() -> None:
    gauge = by_title("Budget utilization")
    defaults = gauge["fieldConfig"]["defaults"]
    assert gauge["type"] == "gauge"
    assert (defaults["unit"], defaults["min"], defaults["max"]) == ("percentunit", 0, 1)
    expr = gauge["targets"][0]["expr"]
    assert metric_names(expr) == {"cugar_budget_utilization_ratio_sum",
                                  "cugar_budget_utilization_ratio_count"}
    assert "cugar_budget_used_total" not in expr  # the earlier system drew a cumulative counter here


def test_counters_are_read_through_windows_never_raw() -> None:
    counters = {s for m in catalogue.METRICS for s in m.series_names()}
    for d in DASHBOARDS.values():
        for panel, target in targets(d):
            used = metric_names(target["expr"]) & counters
            if used:
                # timestamp(): when the newest sample was taken, not its value.
                assert re.search(r"\b(rate|increase|last_over_time|timestamp)\(",
                                 target["expr"]), (
                    f"{panel['title']}: {used} read without a window")


def test_counts_over_the_range_use_the_shared_counting() -> None:
    """The same counting as the recording rules and /dashboard (services/monitoring/queries.py):
    increase(x[$__range] anchored), whole numbers over the picked range."""
    expected = {
        "Total executions": queries.count(catalogue.EXECUTIONS, "$__range",
                                          matchers=[queries.like("profile", "$profile")]),
        "Domain usage": queries.count(catalogue.DOMAIN_USAGE, "$__range", ("domain",),
                                      matchers=[queries.like("domain", "$domain")]),
    }
    for title, expr in expected.items():
        [target] = by_title(title)["targets"]
        assert target["expr"] == queries.one_line(expr), title
        assert "[$__range] anchored)" in target["expr"] and target["instant"], title


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_dashboard_is_the_generated_one(name: str) -> None:
    assert DASHBOARDS[name] == GENERATED[name](), (
        f"{DASHBOARDS_DIR / name}.json is stale: run `python -m services.monitoring`")


def test_every_query_names_only_known_series() -> None:
    known = (catalogue.all_series_names() | catalogue.genai_derived_series_names()
             | NON_CATALOGUE_SERIES)
    for d in DASHBOARDS.values():
        for panel, target in targets(d):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no series found in {target['expr']!r}"
            unknown = {n for n in names if n not in known and not n.startswith("otelcol_")}
            assert not unknown, f"{panel['title']}: {unknown} are not in otel/catalogue.py"
            own = {n for n in names if n.startswith("otelcol_")}
            assert own <= COLLECTOR_NAMES, f"{panel['title']}: {own} not named in queries.py"


def test_profile_and_domain_variables_list_label_values_that_exist() -> None:
    vs = variables(GOLDEN)
    for name in ("profile", "domain"):
        v = vs[name]
        query = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
        assert match, v["query"]
        metric, label = match.groups()
        assert label == name and name in BY_SERIES[metric].labels
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*"
        assert v["datasource"]["uid"] == PROMETHEUS_UID


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_label_variables_list_labels_their_series_carry(name: str) -> None:
    for var, v in variables(DASHBOARDS[name]).items():
        if v["type"] != "query":
            continue
        query = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
        assert label == VARIABLE_LABELS[var], (name, var)
        assert label in BY_SERIES[metric].labels or label in catalogue.RESOURCE_LABELS.values()
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*", (name, var)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables_only_filter_metrics_that_carry_the_label(name: str) -> None:
    for panel, target in targets(DASHBOARDS[name]):
        for var, label in VARIABLE_LABELS.items():
            for metric, _ in re.findall(r"(\w+)\{([^}]*\$" + var + r"\b[^}]*)\}", target["expr"]):
                spec = BY_SERIES[metric]
                assert label in spec.labels or label in catalogue.RESOURCE_LABELS.values(), (
                    f"{panel['title']}: {metric} has no {label} label")


# What every series of a board must be filtered by (its variables that every query applies).
FILTERED_BY = {"cugar-genai-agents": {'job=~"$service"', 'gen_ai_agent_name=~"$agent"'},
               "cugar-llm": {'gen_ai_request_model=~"$model"'}}


@pytest.mark.parametrize("name", sorted(FILTERED_BY))
def test_every_series_follows_the_boards_variables(name: str) -> None:
    for panel, target in targets(DASHBOARDS[name]):
        for selector in re.findall(r"\w+\{[^}]*\}|\w+\[", target["expr"]):
            assert all(m in selector for m in FILTERED_BY[name]), (panel["title"], selector)


def test_llm_series_with_a_profile_follow_the_profile_variable() -> None:
    """Cost and tokens carry the profile (the GenAI conventions' metrics do not)."""
    with_profile = {m.prometheus_name for m in (catalogue.LLM_COST, catalogue.LLM_TOKENS)}
    found = 0
    for panel, target in targets(DASHBOARDS["cugar-llm"]):
        for metric, matchers in re.findall(r"(\w+)\{([^}]*)\}", target["expr"]):
            if metric in with_profile:
                found += 1
                assert 'profile=~"$profile"' in matchers, panel["title"]
    assert found >= 5


def test_runbook_links_point_at_existing_runbook_sections() -> None:
    anchors = runbook_anchors()
    linked = 0
    for d in DASHBOARDS.values():
        base = variables(d)["runbook_base"]
        assert base["type"] == "constant" and base["query"].endswith("/runbooks")
        for p in panels(d):
            for link in p.get("links", []):
                prefix, _, anchor = link["url"].partition("#")
                assert prefix == "${runbook_base}" and anchor in anchors, link
                linked += 1
    assert linked >= 10
    golden_signals = {p["title"] for p in panels(GOLDEN) if p.get("links")}
    assert {"Success rate", "Error rate", "Latency p95", "Budget utilization"} <= golden_signals


def test_provisioning_layout_matches_compose_mounts() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = (REPO / source).resolve()
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "cugar.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == GRAFANA / "dashboards"
    assert {f"{name}.json" for name in DASHBOARDS} == {p.name for p in mounts[path].glob("*.json")}
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/") and Path(home).stem in DASHBOARDS
    services = set(compose["services"])
    for ds in DATASOURCES["datasources"]:
        host = ds["url"].split("//")[1].split(":")[0]
        assert host in services, f"datasource {ds['name']} points at unknown host {host}"
    assert len({ds["uid"] for ds in DATASOURCES["datasources"]}) == len(DATASOURCES["datasources"])


# The exemplar label Prometheus' OTLP receiver gives an exemplar's trace id (tests/
# test_exemplars.py reads it back from the real Prometheus).
EXEMPLAR_TRACE_ID_LABEL = "trace_id"
HISTOGRAM_BUCKETS = {spec.series("_bucket") for spec in catalogue.METRICS
                     if spec.kind is catalogue.Kind.HISTOGRAM and spec.unit == "s"}


def test_latency_panels_show_exemplars_that_link_to_jaeger() -> None:
    latency = [(board, p) for board, d in DASHBOARDS.items() for p in panels(d)
               if p["type"] == "timeseries"
               and any(HISTOGRAM_BUCKETS & set(metric_names(t["expr"])) for t in p["targets"])]
    assert latency, "no latency time series panel found"
    for board, panel in latency:
        assert all(t.get("exemplar") is True for t in panel["targets"]), (board, panel["title"])
        # Exemplar values are in the histogram's unit: the axis must be too, or the dots
        # would sit a thousandfold off the lines.
        assert panel["fieldConfig"]["defaults"]["unit"] == "s", (board, panel["title"])
        assert not any(re.search(r"\b1000 \*", t["expr"]) for t in panel["targets"])
    prom = next(d for d in DATASOURCES["datasources"] if d["uid"] == PROMETHEUS_UID)
    jaeger = {d["uid"] for d in DATASOURCES["datasources"] if d["type"] == "jaeger"}
    destinations = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert [(x["name"], x["datasourceUid"] in jaeger) for x in destinations] == [
        (EXEMPLAR_TRACE_ID_LABEL, True)]
