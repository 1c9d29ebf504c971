"""Reading Jaeger's answers in tests."""

from __future__ import annotations

import base64


def hex_id(value: str) -> str:
    """A span or trace id from Jaeger's OTLP JSON (hex, or base64 in older versions) as hex, the
    form of an exemplar's span_id / trace_id label (base64 of 8 or 16 bytes is 12 or 24
    characters, hex 16 or 32)."""
    return value.lower() if len(value) in (16, 32) else base64.b64decode(value).hex()
