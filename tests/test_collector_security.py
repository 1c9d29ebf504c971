"""collector/security/otlp-tls-bearer.yaml on our real build: both OTLP receivers (gRPC and HTTP)
take data only over TLS and only with the bearer token. A client that trusts the CA and sends
the token gets its data to the exporter (exact values); no token, a wrong token, or a client
that does not trust the server's certificate is refused and nothing of it arrives. Our own
library gets through with the standard OTEL_EXPORTER_OTLP_CERTIFICATE / _HEADERS variables.

Keys, certificates and the token are made at test time in a temporary directory (openssl CLI);
none is committed."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from services.stack import components
from services.stack.collector import TRACES_TO_FILE, Collector
from services.stack.pipeline import PROMETHEUS_SCRAPE_BACKEND
from services.stack.probe import read_spans, scrape
from services.stack.process import wait_until
from tests.support import require

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
SECURITY_OVERLAY = ROOT / "collector" / "security" / "otlp-tls-bearer.yaml"
JOB = "secured-probe"
PROTOCOLS = ("grpc", "http")


@dataclass(frozen=True)
class Pki:
    ca: Path            # signs the collector's certificate
    server_cert: Path   # CN/SAN localhost, 127.0.0.1
    server_key: Path
    other_ca: Path      # an unrelated CA: a client trusting only it must not connect


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run([require(components.OPENSSL), *map(str, args)], cwd=cwd, check=True,
                   capture_output=True,
                   timeout=60)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return cert, key


def make_pki(directory: Path) -> Pki:
    ca, ca_key = _make_ca(directory, "test-ca")
    other_ca, _ = _make_ca(directory, "other-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=localhost", cwd=directory)
    extensions = directory / "server.ext"
    extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                          "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extensions, cwd=directory)
    return Pki(ca=ca, server_cert=cert, server_key=key, other_ca=other_ca)


@dataclass
class Secured:
    collector: Collector
    pki: Pki
    token: str

    def endpoint(self, protocol: str) -> str:
        return f"https://127.0.0.1:{self.collector.ports['otlp_' + protocol]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    require(components.COLLECTOR)
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    token = secrets.token_urlsafe(24)
    token_file = tmp_path_factory.mktemp("secrets") / "otlp-token"
    token_file.write_text(f"{token}  current token\n")
    env = {"CUGAR_COLLECTOR_TLS_CERT_FILE": str(pki.server_cert),
           "CUGAR_COLLECTOR_TLS_KEY_FILE": str(pki.server_key),
           "CUGAR_COLLECTOR_OTLP_TOKEN_FILE": str(token_file)}
    overrides = (TRACES_TO_FILE, PROMETHEUS_SCRAPE_BACKEND, SECURITY_OVERLAY)
    with Collector(tmp_path_factory.mktemp("collector"), overrides=overrides, env=env) as c:
        yield Secured(c, pki, token)


# --- raw OTLP requests: exact status codes, one counter point and one span per sender ---------

def _resource(instance: str) -> Resource:
    return Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value=JOB)),
        KeyValue(key="service.instance.id", value=AnyValue(string_value=instance))])


def _requests(instance: str, value: int) -> dict[str, object]:
    point = metrics_pb2.NumberDataPoint(as_int=value, start_time_unix_nano=1,
                                        time_unix_nano=2)
    counter = metrics_pb2.Metric(name="probe.secured", sum=metrics_pb2.Sum(
        data_points=[point], is_monotonic=True,
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE))
    span = trace_pb2.Span(trace_id=secrets.token_bytes(16), span_id=secrets.token_bytes(8),
                          name=f"secured {instance}", start_time_unix_nano=1, end_time_unix_nano=2)
    return {
        "metrics": metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
            metrics_pb2.ResourceMetrics(resource=_resource(instance), scope_metrics=[
                metrics_pb2.ScopeMetrics(metrics=[counter])])]),
        "traces": trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
            trace_pb2.ResourceSpans(resource=_resource(instance), scope_spans=[
                trace_pb2.ScopeSpans(spans=[span])])]),
    }


def _headers(token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


def send_grpc(s: Secured, instance: str, value: int, token: str | None,
              ca: Path | None = None) -> list[grpc.RpcError | None]:
    """Both exports over a TLS channel trusting `ca` (default: the server's CA); the error of
    each (None when accepted)."""
    target = s.endpoint("grpc").removeprefix("https://")
    credentials = grpc.ssl_channel_credentials(root_certificates=(ca or s.pki.ca).read_bytes())
    outcomes: list[grpc.RpcError | None] = []
    with grpc.secure_channel(target, credentials) as channel:
        stubs = {"metrics": metrics_service_pb2_grpc.MetricsServiceStub(channel),
                 "traces": trace_service_pb2_grpc.TraceServiceStub(channel)}
        for kind, request in _requests(instance, value).items():
            try:
                stubs[kind].Export(request, metadata=list(_headers(token).items()), timeout=10)
                outcomes.append(None)
            except grpc.RpcError as exc:
                outcomes.append(exc)
    return outcomes


def send_http(s: Secured, instance: str, value: int, token: str | None,
              ca: Path | None = None) -> list[requests.Response]:
    """Both exports as OTLP/HTTP protobuf POSTs verified against `ca` (default: the server's CA)."""
    return [_post(f"{s.endpoint('http')}/v1/{kind}", request, _headers(token), ca or s.pki.ca)
            for kind, request in _requests(instance, value).items()]


def _post(url: str, request, headers: dict[str, str], ca: Path | None) -> requests.Response:
    return requests.post(url, data=request.SerializeToString(), timeout=10,
                         headers={"Content-Type": "application/x-protobuf", **headers},
                         verify=str(ca) if ca else True)


def _exported(s: Secured, instance: str) -> list[float]:
    return [x.value for x in scrape(s.collector.exporter_url)
            if x.name == "probe_secured_total" and x.labels.get("instance") == instance]


def _spans(s: Secured, instance: str) -> list[dict]:
    return [x for x in read_spans(s.collector.traces_file)
            if x["resource"].get("service.instance.id") == instance]


def wait_arrived(s: Secured, instance: str) -> None:
    wait_until(lambda: bool(_exported(s, instance)) and bool(_spans(s, instance)), 20,
               what=f"{instance}'s metric point and span at the exporters")


def assert_nothing_arrived(s: Secured, protocol: str, refused: str) -> None:
    """A sender accepted after the refused one proves the pipeline has moved past it."""
    control = f"{refused}-control"
    accepted = SEND[protocol](s, control, 1, s.token)
    assert [_status(protocol, r) for r in accepted] == ["ok", "ok"]
    wait_arrived(s, control)
    assert _exported(s, refused) == []
    assert _spans(s, refused) == []


def _status(protocol: str, outcome) -> str:
    if protocol == "grpc":
        return "ok" if outcome is None else outcome.code().name
    return "ok" if outcome.status_code == 200 else str(outcome.status_code)


SEND = {"grpc": send_grpc, "http": send_http}
REFUSED = {"grpc": "UNAUTHENTICATED", "http": "401"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_trusted_client_with_the_token_gets_its_data_through(secured: Secured,
                                                              protocol: str) -> None:
    instance = f"good-{protocol}"
    outcomes = SEND[protocol](secured, instance, 7, secured.token)
    assert [_status(protocol, o) for o in outcomes] == ["ok", "ok"]
    wait_arrived(secured, instance)
    assert _exported(secured, instance) == [7.0]
    assert [span["name"] for span in _spans(secured, instance)] == [f"secured {instance}"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_missing_or_wrong_token_is_refused(secured: Secured, protocol: str, token: str) -> None:
    instance = f"{token}-token-{protocol}"
    sent = None if token == "missing" else secrets.token_urlsafe(24)
    outcomes = SEND[protocol](secured, instance, 5, sent)
    assert [_status(protocol, o) for o in outcomes] == [REFUSED[protocol]] * 2
    assert_nothing_arrived(secured, protocol, instance)


def test_the_token_without_its_scheme_is_refused(secured: Secured) -> None:
    response = _post(f"{secured.endpoint('http')}/v1/metrics", _requests("no-scheme", 5)["metrics"],
                     {"Authorization": secured.token}, secured.pki.ca)
    assert response.status_code == 401
    assert_nothing_arrived(secured, "http", "no-scheme")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_not_trusting_the_server_certificate_fails_the_handshake(
        secured: Secured, protocol: str) -> None:
    instance = f"untrusted-{protocol}"
    if protocol == "grpc":
        outcomes = send_grpc(secured, instance, 5, secured.token, ca=secured.pki.other_ca)
        assert [_status(protocol, o) for o in outcomes] == ["UNAVAILABLE"] * 2
        assert all("certificate" in (o.details() or "").lower()
                   or "handshake" in (o.details() or "").lower() for o in outcomes), outcomes
    else:
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            send_http(secured, instance, 5, secured.token, ca=secured.pki.other_ca)
    assert_nothing_arrived(secured, protocol, instance)


def test_plaintext_is_not_accepted(secured: Secured) -> None:
    """The overlay replaces plaintext: an http:// client gets no OTLP endpoint at all."""
    plain = secured.endpoint("http").replace("https://", "http://")
    response = _post(f"{plain}/v1/metrics", _requests("plaintext", 5)["metrics"],
                     _headers(secured.token), None)
    assert response.status_code == 400  # Go's TLS server answering a plain HTTP request
    assert_nothing_arrived(secured, "http", "plaintext")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_our_library_connects_with_the_standard_variables(secured: Secured,
                                                          protocol: str) -> None:
    """services.agent (our otel/ library) with only OTEL_EXPORTER_OTLP_* set: every execution
    arrives, as a counted execution and as a trace."""
    service = f"secured-agent-{protocol.split('/')[0]}"
    port = secured.endpoint("grpc" if protocol == "grpc" else "http")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": port,
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_EXPORTER_OTLP_CERTIFICATE": str(secured.pki.ca),
           "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{secured.token}",
           "OTEL_SERVICE_NAME": service}
    run = subprocess.run([sys.executable, "-m", "services.agent", "run", "--executions", "5",
                          "--time-scale", "0", "--seed", "7"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(run.stdout.strip().splitlines()[-1])

    def executions() -> float:
        return sum(x.value for x in scrape(secured.collector.exporter_url)
                   if x.name == "cugar_executions_total" and x.labels.get("job") == service)

    wait_until(lambda: executions() == summary["executions"], 20,
               what=f"{service}'s {summary['executions']} executions at the exporter "
               f"(agent stderr: {run.stderr})")
    assert summary["executions"] == 5

    def agent_spans() -> list[dict]:
        return [x for x in read_spans(secured.collector.traces_file)
                if x["resource"].get("service.name") == service]

    wait_until(lambda: sum(x["name"].startswith("invoke_agent") for x in agent_spans()) == 5,
               20, what=f"{service}'s 5 execution spans in the trace file")
