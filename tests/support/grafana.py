"""The provisioned Grafana dashboards as JSON, and the parts of them tests walk."""

from __future__ import annotations

import json
from pathlib import Path

GRAFANA = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
DASHBOARDS = {p.stem: json.loads(p.read_text())
              for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
GOLDEN = DASHBOARDS["cugar-golden-signals"]


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in panels(dashboard) for t in p["targets"]]


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}
