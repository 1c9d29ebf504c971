"""A small async client for the Prometheus HTTP query API with errors the API can explain."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached (connection refused, timeout, 5xx)."""


class PrometheusQueryError(RuntimeError):
    """Prometheus answered but rejected a query (a bug in our PromQL, not an outage)."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float | None  # None for NaN/Inf: "no meaningful number", never a fake 0


@dataclass(frozen=True)
class Series:
    """The raw samples of one series inside a range: (unix seconds, value), oldest first."""
    labels: dict[str, str]
    points: list[tuple[float, float | None]]


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


async def probe(client: httpx.AsyncClient, url: str, timeout: float, what: str) -> str | None:
    """None when `url` answers 200, else why `what` (e.g. "Prometheus at ...") is not ready."""
    try:
        resp = await client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{what} is unreachable: {type(exc).__name__}: {exc}"
    if resp.status_code != 200:
        return f"{what} is not ready (HTTP {resp.status_code})"
    return None


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float, client: httpx.AsyncClient,
                 observe: Callable[[str, float], None]):
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._timeout = timeout
        self._observe = observe

    async def query(self, promql: str, at: float, timeout: float | None = None) -> list[Sample]:
        """Instant query evaluated at unix time `at` (one instant for a whole response)."""
        started = time.monotonic()
        outcome = "error"
        try:
            samples = await self._query(promql, at, timeout)
            outcome = "success"
            return samples
        except PrometheusUnavailable:
            outcome = "unavailable"
            raise
        finally:
            self._observe(outcome, time.monotonic() - started)

    async def _query(self, promql: str, at: float, timeout: float | None) -> list[Sample]:
        data = await self._get_data("/api/v1/query", {"query": promql, "time": f"{at:.3f}"},
                                    timeout, f"query {promql!r}")
        if data["resultType"] == "scalar":
            return [Sample({}, _number(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"query {promql!r} returned {data['resultType']}, "
                                       f"expected an instant vector")
        return [Sample(r["metric"], _number(r["value"][1])) for r in data["result"]]

    async def query_range(self, promql: str, start: float, end: float, step: float,
                          timeout: float | None = None) -> list[Series]:
        """Range query: `promql` evaluated at start, start + step, ... <= end; per series its
        (unix seconds, value) points, oldest first (NaN/Inf as None; absent steps missing)."""
        return await self._matrix(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
            timeout, f"range query {promql!r}")

    async def samples(self, selector: str, seconds: int, at: float,
                      timeout: float | None = None) -> list[Series]:
        """The raw samples of `selector` in the `seconds` up to `at` (a range-vector query:
        each sample with its own timestamp, no evaluation steps)."""
        promql = f"{selector}[{seconds}s]"
        return await self._matrix("/api/v1/query", {"query": promql, "time": f"{at:.3f}"},
                                  timeout, f"query {promql!r}")

    async def _matrix(self, path: str, params: dict[str, str], timeout: float | None,
                      what: str) -> list[Series]:
        """A query answering a matrix, observed like every query (outcome, duration)."""
        started = time.monotonic()
        outcome = "error"
        try:
            data = await self._get_data(path, params, timeout, what)
            outcome = "success"
        except PrometheusUnavailable:
            outcome = "unavailable"
            raise
        finally:
            self._observe(outcome, time.monotonic() - started)
        if data["resultType"] != "matrix":
            raise PrometheusQueryError(f"{what} returned {data['resultType']}, expected a matrix")
        return [Series(r["metric"], [(float(t), _number(v)) for t, v in r.get("values", [])])
                for r in data["result"]]

    async def alerting_rules(self) -> list[dict]:
        """The loaded alerting rules (/api/v1/rules?type=alert), each with its active alerts."""
        data = await self._get_data("/api/v1/rules", {"type": "alert"}, None, "rules")
        return [rule for group in data.get("groups", []) for rule in group.get("rules", [])
                if rule.get("type") == "alerting"]

    async def _get_data(self, path: str, params: dict[str, str], timeout: float | None,
                        what: str) -> dict:
        url = f"{self.base_url}{path}"
        try:
            resp = await self._client.get(url, params=params, timeout=timeout or self._timeout)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if resp.status_code >= 500:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} answered HTTP {resp.status_code}: "
                f"{resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} answered HTTP {resp.status_code} with a non-JSON "
                f"body (is CUGAR_PROMETHEUS_URL pointing at Prometheus?)") from None
        if body.get("status") != "success":
            raise PrometheusQueryError(
                f"Prometheus rejected {what}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def ready(self, timeout: float) -> str | None:
        """None when Prometheus is ready, else the reason it is not."""
        return await probe(self._client, f"{self.base_url}/-/ready", timeout,
                           f"Prometheus at {self.base_url}")
