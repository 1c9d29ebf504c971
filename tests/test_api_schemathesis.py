"""Schemathesis over the API's own OpenAPI schema, against the real service (uvicorn) in two
situations: Prometheus down (a closed port; API key required) and a real Prometheus fed with
CUGAr series through its OTLP receiver, with the repository's rules loaded. Whatever it sends,
the API never answers a 5xx other than 502/503, and those always say why (`detail`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance,
)

from otel.catalogue import (
    APPROVAL_WAIT, APPROVALS, EXECUTION_DURATION, EXECUTION_STEPS, EXECUTIONS, TOOL_CALLS,
)
from services.api.app import create_app
from services.api.settings import Settings
from services.stack.components import PROMETHEUS
from services.stack.pipeline import prometheus_process, write_rules
from services.stack.probe import sdk_sender
from services.stack.process import free_port, wait_until
from services.stack.run import api_process
from tests.support import require
from tests.support.api import api_client, closed_url

pytestmark = pytest.mark.integration

KEY = "schemathesis-key"
UPSTREAM_ERRORS = (502, 503)  # Prometheus rejected a query / is unreachable
CONFIG = schemathesis.Config.from_dict({
    "seed": 20260105,
    # 502 and 503 are the API's honest answers about Prometheus (the reason check below makes
    # sure they say why); any other 5xx fails.
    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx",
                                                            *map(str, UPSTREAM_ERRORS)]}},
})
# Bounded and deterministic: a fixed number of examples per operation, no example database.
RUN = settings(max_examples=50, derandomize=True, deadline=5000, database=None,
               suppress_health_check=list(HealthCheck))
# The API's answers to malformed input (401, 422, 429) and upstream trouble (502/503) are not
# all declared per operation, so status_code_conformance is not among the checks.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def upstream_errors_say_why(ctx, response, case) -> bool | None:
    """Every 502/503 carries a non-empty reason: `detail`, or readiness' `reasons`."""
    if response.status_code in UPSTREAM_ERRORS:
        body = response.json()
        reason = body.get("detail") or body.get("reasons")
        assert reason, f"{response.status_code} without a reason: {response.text[:300]}"
    return None


def _api(workdir: Path, prometheus_url: str, api_key: str | None = None) -> tuple[object, str]:
    port = free_port()
    proc = api_process(workdir, port, prometheus_url, None,
                       {"OTEL_SDK_DISABLED": "true",
                        # The limiter still runs on every request, but never stops the fuzzer.
                        "CUGAR_API_RATE_LIMIT": "100000", "CUGAR_API_RATE_BURST": "100000"},
                       api_key=api_key)
    return proc, f"http://127.0.0.1:{port}"


# The schema the app generates, loaded at import (schemathesis' lazy `from_fixture` loader does
# not run under pytest 9: it sets `Function._nodeid`, which pytest 9 no longer has). Each API
# fixture checks that the served /openapi.json is this very schema.
OPENAPI = create_app(dataclasses.replace(Settings(), telemetry=False)).openapi()
SCHEMA = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


def _same_schema(base_url: str, api_key: str | None = None) -> str:
    headers = {"X-API-Key": api_key} if api_key else {}
    served = httpx.get(f"{base_url}/openapi.json", headers=headers, timeout=5).json()
    assert served == OPENAPI
    return base_url


# --- 1. Prometheus down, API key required ---------------------------------------------------
@pytest.fixture(scope="module")
def down_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = _api(tmp_path_factory.mktemp("api-down"), closed_url(), api_key=KEY)
    with proc:
        yield _same_schema(url, KEY)


@SCHEMA.parametrize()
@RUN
def test_prometheus_down(case: schemathesis.Case, down_api: str) -> None:
    anonymous = case.call(base_url=down_api)
    if case.method.upper() != case.operation.method.upper():
        # The coverage phase also tries methods the path does not have: routing answers them.
        assert anonymous.status_code == 405, (anonymous.status_code, anonymous.text[:300])
    elif case.path != "/health":
        assert anonymous.status_code == 401, (anonymous.status_code, anonymous.text[:300])
        assert anonymous.json()["detail"]
    case.call_and_validate(base_url=down_api, headers={"X-API-Key": KEY}, checks=CHECKS,
                           additional_checks=[upstream_errors_say_why])


# --- 2. A real Prometheus with CUGAr series and the repository's rules ----------------------
def _feed(prometheus_url: str) -> None:
    """One OTLP export (on exit) of counters and histograms named like the catalogue."""
    resource = {"service.name": "cugar-sales", "service.instance.id": "fuzz-1",
                "deployment.environment.name": "test"}
    with sdk_sender(f"{prometheus_url}/api/v1/otlp", resource, protocol="http") as sender:
        meter = sender.meter_provider.get_meter("cugar.otel")
        executions = meter.create_counter(EXECUTIONS.name, unit=EXECUTIONS.unit)
        calls = meter.create_counter(TOOL_CALLS.name, unit=TOOL_CALLS.unit)
        approvals = meter.create_counter(APPROVALS.name, unit=APPROVALS.unit)
        duration = meter.create_histogram(EXECUTION_DURATION.name, unit=EXECUTION_DURATION.unit,
                                          explicit_bucket_boundaries_advisory=list(
                                              EXECUTION_DURATION.buckets))
        steps = meter.create_histogram(EXECUTION_STEPS.name, unit=EXECUTION_STEPS.unit)
        wait = meter.create_histogram(APPROVAL_WAIT.name, unit=APPROVAL_WAIT.unit)
        for i in range(10):
            outcome = "failure" if i % 4 == 0 else "success"
            attrs = {"outcome": outcome, "profile": ("enterprise", "smb")[i % 2]}
            executions.add(1, attrs)
            duration.record(0.2 + i / 10, attrs)
            steps.record(1 + i % 3, attrs)
            calls.add(2, {"tool": "crm.lookup", "domain": "territory",
                          "side_effect": "read-only",
                          "outcome": "error" if i % 5 == 0 else "success"})
            approvals.add(1, {"decision": "approved"})
            wait.record(1.5, {"decision": "approved"})


@pytest.fixture(scope="module")
def fed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(PROMETHEUS)
    work = tmp_path_factory.mktemp("prometheus-fed")
    rules = write_rules(work / "rules")
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      "otlp:\n  promote_resource_attributes: [deployment.environment.name]\n"
                      f"rule_files: ['{rules}']\n")
    port = free_port()
    prometheus_url = f"http://127.0.0.1:{port}"
    with prometheus_process(work, port, config):
        _feed(prometheus_url)
        proc, url = _api(work, prometheus_url)
        with proc:
            seen: list[str] = []

            def counted() -> bool:
                r = httpx.get(f"{url}/dashboard", params={"window": "5m"}, timeout=5)
                seen.append(r.text[:400])
                return r.status_code == 200 and r.json()["executions"]["total"] > 0

            try:
                wait_until(counted, timeout=30, what="the fed executions on /dashboard")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}; last answer: {seen[-1:]}") from None
            yield _same_schema(url)


@SCHEMA.parametrize()
@RUN
def test_prometheus_up_with_cugar_series(case: schemathesis.Case, fed_api: str) -> None:
    case.call_and_validate(base_url=fed_api, checks=CHECKS, additional_checks=[upstream_errors_say_why])


# --- regressions of what the runs above found -----------------------------------------------
@pytest.mark.parametrize("body, content_type", [
    (b"\x00", "application/json"),   # not JSON: was 422 before the key check
    (b"\x80", "application/json"),   # not UTF-8: was 400 before the key check
])
def test_a_bad_webhook_body_without_the_key_is_401(body: bytes, content_type: str) -> None:
    with api_client(api_key=KEY) as c:
        anonymous = c.post("/alerts/info", content=body, headers={"content-type": content_type})
        keyed = c.post("/alerts/info", content=body,
                       headers={"content-type": content_type, "X-API-Key": KEY})
    assert anonymous.status_code == 401 and "API key required" in anonymous.json()["detail"]
    assert keyed.status_code in (400, 422)


def test_the_dashboard_documents_its_html_page() -> None:
    content = OPENAPI["paths"]["/dashboard"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/html"}
