"""No canary of tests/support/canaries.py (32 kinds of PII and secrets) appears anywhere once it
has gone through the real pipeline: collector, Prometheus, Alertmanager, Jaeger and the api.

Sent through our library with content capture off (OTLP/gRPC) and on (OTLP/HTTP) — goals,
agent/tool names, tool arguments and results, error messages and types, attributes, events,
other instrumentation's spans, resource attributes (OTEL_RESOURCE_ATTRIBUTES) and the OTLP
request headers — and through a plain OpenTelemetry SDK sender (span and event names,
attributes of every type, status messages, resource, scope, metric descriptions and data
point attributes). The api gets canaries in query strings, paths, headers (captured by its HTTP
instrumentation for this test) and an Alertmanager notification. The plain sender's
`cugar.domain.errors` points, whose `domain` is a canary, make DomainErrors fire: its labels and
annotations are built from attribute values, and the notification goes to a test webhook.

Then everything is searched for every canary and its obvious fragments: every span Jaeger
returns (and its operation lists), every Prometheus label value, series, metadata, alert and
rule, Alertmanager's alerts and the notifications it sent, every log file any component wrote,
and every api response (2xx and 4xx). Left out: metric names (code, not data) and span link
attributes, which no collector processor reads (docs/privacy.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from services.stack.components import JAEGER
from services.stack.pipeline import Pipeline
from services.stack.process import free_port, wait_until
from services.stack.run import API_SERVICE_NAME, api_process
from tests.conftest import REPO_ROOT, require_pipeline_components
from tests.support import require
from tests.support.api import notification
from tests.support.canaries import BY_KEY_ONLY, CANARIES, leaks, text_with

pytestmark = pytest.mark.integration

KEY = "pii-test-api-key-0000"
AUTH = {"X-API-Key": KEY}
SERVICES = {"off": "pii-library-capture-off", "on": "pii-library-capture-on",
            "plain": "pii-plain-sdk"}
ONE_LINE = [c for c in CANARIES if "\n" not in c.value and c.value.isascii()]  # header-safe
LIBRARY_SPANS_PER_CANARY = 5  # execution, three tool calls, approval
EXPECTED_SPANS = {SERVICES["off"]: len(CANARIES) * LIBRARY_SPANS_PER_CANARY + 1,  # + "web"
                  SERVICES["on"]: len(CANARIES) * LIBRARY_SPANS_PER_CANARY + 1,
                  SERVICES["plain"]: len(CANARIES) + 1}  # + "pii-root"


class Webhook:
    """A stand-in notification receiver: keeps every body Alertmanager posts."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append(self.rfile.read(length).decode(errors="replace"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Surfaces:
    """Every output of the run, by where it was read."""
    texts: dict[str, str] = field(default_factory=dict)
    spans: dict[str, list[dict]] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text + "\n"


def _resource_env() -> str:
    pairs = [f"canary.{i}={quote(c.value, safe='')}" for i, c in enumerate(CANARIES)]
    return ",".join(pairs + [f"deploy.password={BY_KEY_ONLY}"])


def _send(pipeline: Pipeline, workdir: Path, which: str, service: str, env: dict[str, str],
          protocol: str = "grpc") -> dict:
    log = workdir / f"agent-{service}.log"
    full_env = {**_base_env(), **pipeline.agent_env(protocol=protocol),
                "OTEL_SERVICE_NAME": service, **env}
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "tests.support.pii_sender", which],
                              env=full_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=out,
                              text=True, timeout=120)
    out_text = proc.stdout
    with log.open("a") as out:
        out.write(out_text)
    assert proc.returncode == 0, f"{which} sender failed:\n{log.read_text()[-3000:]}"
    return json.loads(out_text.strip().splitlines()[-1])


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def _api_requests(api: str) -> list[tuple[str, httpx.Response]]:
    """Requests carrying canaries in every place a client can put them; (what, response)."""
    headers = {f"X-Canary-{i}": c.value for i, c in enumerate(ONE_LINE)}
    every = text_with(tuple(ONE_LINE))
    hook = notification(alertname="PiiCanary", summary_label=every)
    hook["alerts"][0]["annotations"]["description"] = every
    hook["commonAnnotations"] = {"summary": every}
    calls = [
        ("GET /", lambda c: c.get("/", headers=AUTH)),
        ("GET /health", lambda c: c.get("/health")),
        ("GET /health with key", lambda c: c.get("/health", headers=AUTH)),
        ("GET /health/ready", lambda c: c.get("/health/ready", headers=AUTH)),
        ("GET /dashboard", lambda c: c.get("/dashboard", params={"window": "10m"},
                                           headers={**AUTH, **headers,
                                                    "Accept": "application/json",
                                                    "Cookie": f"session={BY_KEY_ONLY}"})),
        ("GET /dashboard html", lambda c: c.get("/dashboard", params={"format": "html"},
                                                headers=AUTH)),
        ("GET /metrics", lambda c: c.get("/metrics", headers=AUTH)),
        ("POST /alerts/warning", lambda c: c.post("/alerts/warning", json=hook,
                                                  headers={**AUTH, **headers})),
    ]
    for i, canary in enumerate(ONE_LINE):
        calls += [
            (f"window={canary.kind}", lambda c, v=canary.value: c.get(
                "/dashboard", params={"window": v, "q": v}, headers={**AUTH, "X-Note": v})),
            (f"end={canary.kind}", lambda c, v=canary.value: c.get(
                "/dashboard", params={"end": v}, headers=AUTH)),
            (f"format={canary.kind}", lambda c, v=canary.value: c.get(
                "/dashboard", params={"format": v}, headers=AUTH)),
            (f"severity={canary.kind}", lambda c, v=canary.value: c.post(
                f"/alerts/{quote(v, safe='')}", json=hook, headers=AUTH)),
            (f"path={canary.kind}", lambda c, v=canary.value: c.get(
                f"/{quote(v, safe='')}", headers=AUTH)),
            (f"bearer={canary.kind}", lambda c, v=canary.value: c.get(
                "/dashboard", headers={"Authorization": f"Bearer {v}"})),
            (f"x-api-key={canary.kind}", lambda c, v=canary.value: c.get(
                "/", headers={"X-API-Key": v})),
        ]
    with httpx.Client(base_url=api, timeout=30) as client:
        return [(what, call(client)) for what, call in calls]


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _jaeger_dump(url: str) -> tuple[str, dict[str, list[dict]]]:
    from services.stack.probe import flatten_spans

    text, spans = [], {}
    services = httpx.get(f"{url}/api/v3/services", timeout=15).json().get("services") or []
    text.append(json.dumps(services))
    now = time.time()
    for service in services:
        ops = httpx.get(f"{url}/api/v3/operations", params={"service": service}, timeout=15)
        text.append(ops.text)
        r = httpx.get(f"{url}/api/v3/traces", timeout=30, params={
            "query.service_name": service, "query.start_time_min": _rfc3339(now - 3600),
            "query.start_time_max": _rfc3339(now + 60), "query.num_traces": "100000"})
        text.append(r.text)
        spans[service] = flatten_spans(r.json().get("result", {}).get("resourceSpans") or [])
    return "\n".join(text), spans


def _prometheus_dump(url: str) -> str:
    get = lambda path, **params: httpx.get(f"{url}{path}", params=params, timeout=30).text  # noqa: E731
    parts = [get("/api/v1/series", **{"match[]": '{__name__=~".+"}'}),
             get("/api/v1/metadata"), get("/api/v1/alerts"), get("/api/v1/rules"),
             get("/api/v1/targets")]
    for name in httpx.get(f"{url}/api/v1/labels", timeout=15).json()["data"]:
        parts.append(get(f"/api/v1/label/{name}/values"))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Surfaces]:
    require_pipeline_components()
    require(JAEGER)
    work = tmp_path_factory.mktemp("pii")
    webhook = Webhook()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    out = Surfaces()
    pipeline = Pipeline(work / "pipeline", webhook_url=webhook.url, api_key=KEY,
                        api_target=f"127.0.0.1:{port}", rule_for_override="1s",
                        alert_group_wait="1s")
    # The api's HTTP instrumentation records every request header (the worst an operator can
    # configure); its own resource attributes are canaries too.
    api_env = {**pipeline.agent_env(protocol="http/protobuf"),
               "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
               "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": ".*",
               "OTEL_RESOURCE_ATTRIBUTES": _resource_env()}
    headers = f"x-canary={quote(CANARIES[0].value)},x-canary-key={quote(BY_KEY_ONLY)}"
    try:
        with pipeline, api_process(work, port, pipeline.prometheus_url,
                                   pipeline.collector_health_url, api_env, api_key=KEY,
                                   trace_backend_url=pipeline.jaeger_url):
            library_env = {"OTEL_RESOURCE_ATTRIBUTES": _resource_env(),
                           "OTEL_EXPORTER_OTLP_HEADERS": headers}
            _send(pipeline, work, "library", SERVICES["off"], {
                **library_env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"})
            _send(pipeline, work, "library", SERVICES["on"], {
                **library_env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
                protocol="http/protobuf")
            _send(pipeline, work, "plain", SERVICES["plain"], {})
            for what, response in _api_requests(api):
                out.add(f"api response to {what}",
                        f"{response.status_code} {dict(response.headers)}\n{response.text}")

            # Everything has arrived before anything is searched.
            def traces_in() -> bool:
                _, spans = _jaeger_dump(pipeline.jaeger_url)
                return (all(len(spans.get(s, [])) >= n for s, n in EXPECTED_SPANS.items())
                        and any("dashboard" in sp["name"] for sp in spans.get(API_SERVICE_NAME, [])))

            wait_until(traces_in, 60, interval=0.5, what="every sender's spans in Jaeger")
            wait_until(lambda: len(pipeline.query('pii_plain_calls_total')) == len(CANARIES)
                       and pipeline.query(f'cugar_executions_total{{job="{SERVICES["on"]}"}}'),
                       60, interval=0.5, what="the senders' metrics in Prometheus")
            # The library's domains and the plain sender's canary domains are separate alerts
            # (possibly separate notifications): wait for the one built from canaries.
            wait_until(lambda: _masked_domain_alerts(webhook.bodies), 90, interval=0.5,
                       what="DomainErrors from canary domains notified to the webhook")
            out.notifications = list(webhook.bodies)
            out.add("alertmanager notifications (webhook)", "\n".join(webhook.bodies))
            text, out.spans = _jaeger_dump(pipeline.jaeger_url)
            out.add("jaeger api", text)
            out.add("prometheus api", _prometheus_dump(pipeline.prometheus_url))
            out.add("alertmanager api", "\n".join(
                httpx.get(f"{pipeline.alertmanager_url}{path}", timeout=15).text
                for path in ("/api/v2/alerts", "/api/v2/alerts/groups")))
            out.add("api /dashboard after", httpx.get(
                f"{api}/dashboard", params={"window": "10m"},
                headers={**AUTH, "Accept": "application/json"}, timeout=30).text)
            out.add("collector self-metrics", httpx.get(pipeline.collector_telemetry_url,
                                                        timeout=15).text)
    finally:
        webhook.close()
    # Read once every process has stopped (and flushed its log).
    for log in sorted(work.rglob("*.log")):
        out.add(f"log {log.relative_to(work)}", log.read_text(errors="replace"))
    yield out


def test_no_canary_appears_anywhere(surfaces: Surfaces) -> None:
    found = [hit for where, text in surfaces.texts.items() for hit in leaks(text, where)]
    assert not found, "canaries leaked:\n" + "\n".join(found)


def test_every_surface_was_read(surfaces: Surfaces) -> None:
    """The search was not vacuous: each surface holds what the run sent, redacted."""
    names = set(surfaces.texts)
    logs = {n for n in names if n.startswith("log ")}
    for component in ("collector", "prometheus", "alertmanager", "jaeger", "api"):
        assert f"log pipeline/{component}.log" in logs or f"log {component}.log" in logs, logs
    assert {f"log agent-{s}.log" for s in SERVICES.values()} <= logs
    assert {s: len(surfaces.spans.get(s, [])) for s in EXPECTED_SPANS} == EXPECTED_SPANS
    # The api's spans carry the request headers (captured for this test), redacted.
    headers = {k: v for s in surfaces.spans[API_SERVICE_NAME] for k, v in s["attrs"].items()
               if k.startswith("http.request.header.x_canary_")}
    assert len(headers) >= len(ONE_LINE) and "[REDACTED:email]" in str(headers)
    # The library's resource attributes (OTEL_RESOURCE_ATTRIBUTES) arrived, redacted.
    resource = surfaces.spans[SERVICES["off"]][0]["resource"]
    assert resource["canary.0"] == "[REDACTED:email]"
    assert resource["deploy.password"] == "****"  # by key: the collector masks it once more
    jaeger = surfaces.texts["jaeger api"]
    assert "[REDACTED:" in jaeger and "****" in jaeger  # library- and collector-redacted
    assert "api response to GET /dashboard" in names


def test_content_capture_on_records_redacted_content_and_off_none(surfaces: Surfaces) -> None:
    on = [s for s in surfaces.spans[SERVICES["on"]] if "gen_ai.tool.call.arguments" in s["attrs"]]
    assert len(on) == len(CANARIES), "content capture on: every lookup's arguments captured"
    assert all("[REDACTED" in s["attrs"]["gen_ai.tool.call.arguments"] for s in on)
    off = [s for s in surfaces.spans[SERVICES["off"]]
           if {"gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
               "gen_ai.input.messages"} & set(s["attrs"])]
    assert not off


def test_the_plain_senders_canaries_are_masked_by_the_collector(surfaces: Surfaces) -> None:
    spans = [s for s in surfaces.spans[SERVICES["plain"]] if s["name"] != "pii-root"]
    assert len(spans) == len(CANARIES)
    assert all(s["name"].startswith("span ") and "****" in s["name"] for s in spans)
    assert all("****" in s["status"]["message"] for s in spans)
    assert all(s["attrs"]["password"] == "****" for s in spans)  # by key, whatever the value
    resource = spans[0]["resource"]
    assert all("****" in resource[f"canary.{i}"] for i in range(len(CANARIES)))


def _masked_domain_alerts(bodies: list[str]) -> list[dict]:
    """DomainErrors alerts whose `domain` is not one of the library's: the collector's mask, or
    `other` (the cardinality guard's value for anything outside the closed set)."""
    return [a for body in list(bodies) for a in json.loads(body)["alerts"]
            if a["labels"]["alertname"] == "DomainErrors"
            and (a["labels"]["domain"] == "other" or a["labels"]["domain"].startswith("****"))]


def test_an_alert_built_from_attribute_values_carries_only_masks(surfaces: Surfaces) -> None:
    """DomainErrors' `domain` label and its summary come from data point attributes: the
    notification Alertmanager sends holds the collector's mask (or `other`, the cardinality
    guard's value for anything outside the closed set of domains), not the canary."""
    alerts = [a for body in surfaces.notifications for a in json.loads(body)["alerts"]
              if a["labels"]["alertname"] == "DomainErrors"]
    # The library's own domains are a closed set; the plain sender's canaries end up masked.
    masked = _masked_domain_alerts(surfaces.notifications)
    assert masked, [a["labels"] for a in alerts]
    assert all(a["annotations"]["summary"].startswith(f"CUGAr domain {a['labels']['domain']}")
               for a in masked)
    assert not leaks(json.dumps(alerts), "DomainErrors notifications")


def test_api_error_bodies_quote_the_request_redacted(surfaces: Surfaces) -> None:
    bad_window = surfaces.texts[f"api response to window={ONE_LINE[0].kind}"]
    assert bad_window.startswith("422") and "[REDACTED:email]" in bad_window
