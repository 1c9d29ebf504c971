"""The /dashboard `alerts` section: alerts Prometheus has pending or firing, fleet-wide.

Which alerts, their state and since when come from the `ALERTS` and `ALERTS_FOR_STATE` series
evaluated at the response's instant (`end`), like every other number of /dashboard: a past `end`
shows the alerts of that moment, and identical requests give identical answers. The text comes
from the loaded rules (/api/v1/rules): `summary` is Prometheus' rendered annotation while the
alert is still active (it quotes the current value), otherwise null; `runbook_url` is the rule's
annotation, with links into docs/runbooks.md pointed at this API's /runbooks page.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone

from .prometheus import PrometheusClient

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STATE_ORDER = {"firing": 0, "pending": 1}
_HIDDEN_LABELS = {"__name__", "alertname", "alertstate", "severity"}
_RUNBOOKS_DOC = re.compile(r"^(?:\.{0,2}/)*docs/runbooks\.md(#[A-Za-z0-9_-]*)?$")

LabelKey = frozenset[tuple[str, str]]


def _key(labels: dict[str, str]) -> LabelKey:
    return frozenset((k, v) for k, v in labels.items() if k not in ("__name__", "alertstate"))


def runbook_link(url: str | None) -> str | None:
    """The runbook URL a reader can open: docs/runbooks.md#x -> /runbooks#x (served here)."""
    if not url or "{{" in url:
        return None
    if match := _RUNBOOKS_DOC.match(url):
        return "/runbooks" + (match.group(1) or "")
    return url


def _since(value: float | None) -> str | None:
    if value is None or value <= 0:
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


async def active_alerts(prom: PrometheusClient, at: float) -> dict:
    alerts, for_state, rules = await asyncio.gather(
        prom.query("ALERTS", at), prom.query("ALERTS_FOR_STATE", at), prom.alerting_rules())
    since = {_key(s.labels): s.value for s in for_state}
    runbooks: dict[str, str | None] = {}
    summaries: dict[LabelKey, str] = {}
    for rule in rules:
        runbooks[rule.get("name", "")] = runbook_link(
            (rule.get("annotations") or {}).get("runbook_url"))
        for alert in rule.get("alerts") or []:
            if summary := (alert.get("annotations") or {}).get("summary"):
                summaries[_key(alert.get("labels") or {})] = summary

    items = []
    for sample in alerts:
        labels, key = sample.labels, _key(sample.labels)
        name = labels.get("alertname", "")
        items.append({
            "alertname": name,
            "state": labels.get("alertstate", ""),
            "severity": labels.get("severity"),
            "since": _since(since.get(key)),
            "labels": {k: v for k, v in sorted(labels.items()) if k not in _HIDDEN_LABELS},
            "summary": summaries.get(key),
            "runbook_url": runbooks.get(name),
        })
    items.sort(key=lambda a: (STATE_ORDER.get(a["state"], 9),
                              SEVERITY_ORDER.get(a["severity"] or "", 9), a["alertname"],
                              sorted(a["labels"].items())))
    return {"firing": sum(a["state"] == "firing" for a in items),
            "pending": sum(a["state"] == "pending" for a in items),
            "items": items}
