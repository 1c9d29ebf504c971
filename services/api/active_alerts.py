"""The /dashboard `alerts` section: alerts Prometheus has pending or firing, fleet-wide.

Everything describes the response's instant (`end`), like every other number of /dashboard, so
a past `end` shows the alerts of that moment and identical requests give identical answers:
which alerts, their state and since when come from the `ALERTS` and `ALERTS_FOR_STATE` series;
`summary` and `runbook_url` are the rule's annotations (/api/v1/rules) rendered with the alert's
labels and the value of the rule's expression at `end` (see alert_text). Links into
docs/runbooks.md point at this API's /runbooks page.
"""

from __future__ import annotations

import asyncio
import re

from . import alert_text
from .prometheus import PrometheusClient, Sample
from .window import iso

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STATE_ORDER = {"firing": 0, "pending": 1}
_HIDDEN_LABELS = {"__name__", "alertname", "alertstate", "severity"}
_RUNBOOKS_DOC = re.compile(r"^(?:\.{0,2}/)*docs/runbooks\.md(#[A-Za-z0-9_-]*)?$")

LabelKey = frozenset[tuple[str, str]]


def _key(labels: dict[str, str]) -> LabelKey:
    return frozenset((k, v) for k, v in labels.items() if k not in ("__name__", "alertstate"))


def runbook_link(url: str | None) -> str | None:
    """The runbook URL a reader can open: docs/runbooks.md#x -> /runbooks#x (served here)."""
    if not url:
        return None
    if match := _RUNBOOKS_DOC.match(url):
        return "/runbooks" + (match.group(1) or "")
    return url


def _since(value: float | None) -> str | None:
    return None if value is None or value <= 0 else iso(value)


async def _rule_values(prom: PrometheusClient, rule: dict, at: float) -> dict[LabelKey, float]:
    """The rule's expression at `at`, keyed like its alerts (result labels + rule labels)."""
    samples = await prom.query(rule["query"], at)
    extra = {**(rule.get("labels") or {}), "alertname": rule["name"]}
    return {_key({**s.labels, **extra}): s.value for s in samples if s.value is not None}


def _item(sample: Sample, rule: dict | None, since: float | None,
          values: dict[LabelKey, float]) -> dict:
    labels = sample.labels
    annotations = (rule or {}).get("annotations") or {}
    value = values.get(_key(labels))

    def text(name: str) -> str | None:
        template = annotations.get(name)
        return None if template is None else alert_text.render(template, labels, value)

    return {
        "alertname": labels.get("alertname", ""),
        "state": labels.get("alertstate", ""),
        "severity": labels.get("severity"),
        "since": _since(since),
        "labels": {k: v for k, v in sorted(labels.items()) if k not in _HIDDEN_LABELS},
        "summary": text("summary"),
        "runbook_url": runbook_link(text("runbook_url")),
    }


async def active_alerts(prom: PrometheusClient, at: float) -> dict:
    alerts, for_state, rules = await asyncio.gather(
        prom.query("ALERTS", at), prom.query("ALERTS_FOR_STATE", at), prom.alerting_rules())
    since = {_key(s.labels): s.value for s in for_state}
    by_name = {rule["name"]: rule for rule in rules if "name" in rule and "query" in rule}
    active_rules = [by_name[n] for n in sorted({s.labels.get("alertname") for s in alerts})
                    if n in by_name]
    values: dict[LabelKey, float] = {}
    for result in await asyncio.gather(*(_rule_values(prom, r, at) for r in active_rules)):
        values.update(result)

    items = [_item(s, by_name.get(s.labels.get("alertname", "")), since.get(_key(s.labels)),
                   values) for s in alerts]
    items.sort(key=lambda a: (STATE_ORDER.get(a["state"], 9),
                              SEVERITY_ORDER.get(a["severity"] or "", 9), a["alertname"],
                              sorted(a["labels"].items())))
    return {"firing": sum(a["state"] == "firing" for a in items),
            "pending": sum(a["state"] == "pending" for a in items),
            "items": items}
