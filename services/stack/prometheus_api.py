"""A small client for the Prometheus (and Alertmanager) HTTP API: instant queries and polling
until a condition holds, with messages that show the query and the last answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from services.stack.process import wait_until

Result = list[dict[str, Any]]


class QueryError(RuntimeError):
    """Prometheus could not be reached or rejected a query."""


def get_json(url: str, params: Mapping[str, str] | None = None, timeout: float = 10) -> Any:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        raise QueryError(f"GET {url} -> HTTP {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise QueryError(f"GET {url} failed: {exc}") from None


def instant_query(url: str, promql: str, at: float | None = None,
                  params: Mapping[str, str] | None = None) -> tuple[Result, list[str]]:
    """An instant query against a Prometheus-compatible API: (result vector, warnings); a scalar
    comes back as one sample without labels. A partial answer (a store that did not respond) is
    reported by Thanos in the warnings."""
    args = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {}), **(params or {})}
    body = get_json(f"{url.rstrip('/')}/api/v1/query", args)
    if body.get("status") != "success":
        raise QueryError(f"query {promql!r} failed: {body}")
    data = body["data"]
    result = ([{"metric": {}, "value": data["result"]}] if data["resultType"] == "scalar"
              else data["result"])
    return result, list(body.get("warnings") or [])


class PrometheusClient:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, promql: str) -> Result:
        """Instant query; the result vector (list of {"metric": {...}, "value": [t, "v"]})."""
        return instant_query(self.url, promql)[0]

    def query_range(self, promql: str, start: float, end: float, step: float) -> Result:
        """Range query; the result matrix (list of {"metric": {...}, "values": [[t, "v"]...]})."""
        body = get_json(f"{self.url}/api/v1/query_range",
                        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                         "step": f"{step:g}"})
        if body.get("status") != "success":
            raise QueryError(f"range query {promql!r} failed: {body}")
        return body["data"]["result"]

    def alerting_rules(self) -> list[dict]:
        """The alerting rules Prometheus has loaded (/api/v1/rules?type=alert)."""
        groups = get_json(f"{self.url}/api/v1/rules", {"type": "alert"})["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def try_query(self, promql: str) -> Result | None:
        try:
            return self.query(promql)
        except QueryError:
            return None

    def wait_for(self, promql: str, predicate: Callable[[Result], bool],
                 timeout: float = 30.0, interval: float = 0.25) -> Result:
        """Poll `promql` until `predicate(result)` holds; TimeoutError shows the last result."""
        last: Result | None = None

        def holds() -> bool:
            nonlocal last
            last = self.try_query(promql)
            return last is not None and predicate(last)

        try:
            wait_until(holds, timeout, interval, what=promql)
        except TimeoutError:
            raise TimeoutError(f"after {timeout:.0f}s, {promql!r} still does not satisfy "
                               f"the condition; last result: {json.dumps(last)[:2000]}") from None
        return last

    def alerts(self) -> list[dict]:
        """Alerts as Prometheus sees them (pending and firing)."""
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]

    def targets(self) -> list[dict]:
        return get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]

    def exemplars(self, promql: str, start: float, end: float) -> list[dict]:
        """/api/v1/query_exemplars: per series of `promql`, {"seriesLabels": {...},
        "exemplars": [{"labels": {"trace_id", "span_id"}, "value": "1.2", "timestamp": t}]}."""
        body = get_json(f"{self.url}/api/v1/query_exemplars",
                        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        if body.get("status") != "success":
            raise QueryError(f"exemplar query {promql!r} failed: {body}")
        return body["data"] or []


def value(result: Result) -> float | None:
    """The single sample of an instant-query result (None when absent)."""
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"expected one series, got {len(result)}: {result}")
    return float(result[0]["value"][1])
