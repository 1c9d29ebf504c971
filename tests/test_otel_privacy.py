"""PII and secrets never leave the process: by key AND by value pattern."""

from __future__ import annotations

import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel import privacy
from otel.testing import in_memory_telemetry

CARD = "4111 1111 1111 1111"  # Luhn-valid test card
CANARIES = {
    "email": "canary.person@example.com",
    "card": CARD,
    "openai": "sk-proj-CANARYabcdefghijklmnop1234",
    "aws": "AKIAIOSFODNN7CANARY1",
    "github": "ghp_CANARYaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
    "bearer": "Bearer CANARYopaquetoken0123456789",
    "phone": "+1 415 555 0199",
    "by_key_only": "hunter2-canary-password",
}
# What must never be seen: the distinctive part of each canary.
NEEDLES = ["canary.person", "4111 1111", "4111111111111111", "CANARYabcdef", "AKIAIOSFODNN7",
           "ghp_CANARY", "eyJhbGciOiJIUzI1NiJ9", "CANARYopaque", "415 555 0199",
           "hunter2-canary"]


def text_with_all(prefix: str) -> str:
    return prefix + " " + " | ".join(v for k, v in CANARIES.items() if k != "by_key_only")


def test_value_patterns_redact_each_shape():
    for name, value in CANARIES.items():
        if name == "by_key_only":
            assert privacy.redact_text(value) == value  # only the key can tell
            continue
        out = privacy.redact_text(f"see {value} now")
        assert value not in out and "[REDACTED" in out, name
        assert out.startswith("see ") and out.endswith(" now"), name


def test_card_numbers_need_a_valid_luhn_checksum():
    assert "REDACTED" in privacy.redact_text("card 4111-1111-1111-1111")
    assert privacy.redact_text("order 4111111111111112") == "order 4111111111111112"
    assert privacy.redact_text("ok 12345 and 2024-01-05") == "ok 12345 and 2024-01-05"


@pytest.mark.parametrize("key", [
    "password", "db_password", "api_key", "x-api-key", "apiKey", "Authorization", "auth",
    "client_secret", "access_token", "session", "cookie", "private_key", "credentials",
    "bearer",
])
def test_secret_keys(key):
    assert privacy.is_secret_key(key)
    assert privacy.redact_attributes({key: "anything"}) == {key: privacy.REDACTED}


@pytest.mark.parametrize("key", [
    "gen_ai.usage.input_tokens", "gen_ai.tool.name", "cugar.budget.used", "query", "domain",
])
def test_ordinary_keys_are_kept(key):
    assert not privacy.is_secret_key(key)


def test_nested_structures_and_truncation():
    out = privacy.capture({"user": {"password": "x", "notes": [CANARIES["email"]]}}, 1000)
    assert "canary.person" not in out and '"password": "[REDACTED]"' in out
    long = privacy.capture("a" * 5000, 100)
    assert long.startswith("a" * 100) and "truncated 4900 chars" in long


def test_resource_attributes_are_redacted():
    tel, spans, _ = in_memory_telemetry(env={
        "OTEL_RESOURCE_ATTRIBUTES": "owner.email=canary.person%40example.com,"
                                    "deploy.token=hunter2-canary,host.ip=203.0.113.42"})
    attrs = dict(tel.resource.attributes)
    tel.shutdown()
    assert attrs["owner.email"] == "[REDACTED:email]" and attrs["deploy.token"] == "[REDACTED]"
    assert attrs["host.ip"] == "[REDACTED:ipv4]"


def exported_bytes(spans, metrics) -> bytes:
    data = encode_spans(spans.get_finished_spans()).SerializeToString()
    for batch in metrics.exports:
        data += encode_metrics(batch).SerializeToString()
    return data


@pytest.mark.parametrize("capture", ["true", "false"])
def test_pii_canaries_never_appear_in_exported_data(capture):
    tel, spans, metrics = in_memory_telemetry(
        env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": capture},
        embedded_prometheus_port=0)
    agent = tel.agent
    secret_args = {"query": text_with_all("find"), "password": CANARIES["by_key_only"],
                   "nested": {"api_key": CANARIES["by_key_only"], "list": [CARD]}}
    with agent.execution(profile=CANARIES["email"], agent_name=text_with_all("agent"),
                         goal=text_with_all("goal"), budget_ceiling=10) as ex:
        ex.route_decision(domain=CANARIES["email"])
        ex.set_attribute("customer.email", CANARIES["email"])
        ex.set_attribute("session_token", CANARIES["by_key_only"])
        with ex.tool_call(f"lookup {CANARIES['email']}", domain="intelligence",
                          arguments=secret_args) as call:
            call.set_result({"contact": text_with_all("result"),
                             "token": CANARIES["by_key_only"]})
        with ex.tool_call("send", domain="engagement") as call:
            call.error(f"Bounce<{CANARIES['email']}>")
        with pytest.raises(ValueError):
            with ex.tool_call("charge", domain="governance"):
                raise ValueError(text_with_all("charge failed for"))
        with ex.approval(tool=CANARIES["email"]) as ap:
            ap.approve()
        ex.fail(text_with_all("failed because"))
    # Spans from other instrumentation (e.g. an HTTP server) are redacted too.
    with tel.tracer_provider.get_tracer("web").start_as_current_span(
            "GET /contact", attributes={"http.request.header.authorization": CANARIES["bearer"],
                                        "url.query": f"email={CANARIES['email']}"}) as s:
        s.add_event("log", {"message": text_with_all("handled")})
    assert tel.force_flush()
    scraped = urllib.request.urlopen(tel.prometheus_url, timeout=5).read()
    tel.shutdown()

    blob = exported_bytes(spans, metrics) + scraped
    assert len(spans.get_finished_spans()) == 6 and metrics.exports
    leaked = [n for n in NEEDLES if n.encode() in blob]
    assert not leaked, f"PII leaked: {leaked}"
    if capture == "true":  # content really was captured (redacted), not silently dropped
        assert b"gen_ai.tool.call.arguments" in blob and b"[REDACTED:email]" in blob
    else:
        assert b"gen_ai.tool.call.arguments" not in blob and b"gen_ai.input.messages" not in blob
