"""The collector's redaction settings, generated from otel/sensitive.py.

`python -m services.monitoring` writes them into otel-collector-config.yaml between the
BEGIN/END markers (`--check`: stale is an error). The block between the BEGIN/END markers holds the processors that carry the patterns: the
traces' `sensitive_attributes` (attributes everywhere, span and event names, status messages,
scope names and versions), the metrics' contrib redaction processor (`blocked_values`,
`blocked_key_patterns`: scope, resource and data point attributes) and a transform processor for
what that one does not read (metric descriptions, scope names and versions).
"""

from __future__ import annotations

import json

from otel import sensitive

from . import collector_guard

COMMAND = "python -m services.monitoring"
BEGIN = "  # BEGIN GENERATED redaction"
END = "  # END GENERATED redaction"

# What the metrics' redaction processor leaves alone, per OTTL path.
METRIC_FIELDS = ("metric.description", "scope.name", "scope.version")


def _collector_string(text: str) -> str:
    """A YAML single-quoted scalar; `$` doubled (the collector expands ${...} in strings)."""
    return "'" + text.replace("'", "''").replace("$", "$$") + "'"


def _ottl_string(text: str) -> str:
    return json.dumps(text)  # OTTL strings unquote Go-style: \\ and \" escaped, ASCII only


def _statements(fields: tuple[str, ...]) -> list[str]:
    pattern = _ottl_string(sensitive.combined_value_regex())
    mask = _ottl_string(sensitive.MASK)
    return [f"replace_pattern({field}, {pattern}, {mask})" for field in fields]


def _list(key: str, items: list[str], indent: str = "    ") -> list[str]:
    return [f"{indent}{key}:"] + [f"{indent}  - {_collector_string(i)}" for i in items]


def block() -> str:
    values = [p.regex for p in sensitive.VALUE_PATTERNS]
    keys = list(sensitive.SECRET_KEY_PATTERNS)
    lines = [
        BEGIN + f" by `{COMMAND}` from otel/sensitive.py; do not edit by hand",
        "  # (tests/test_sensitive_patterns.py fails when it is stale). The same patterns the SDK",
        "  # applies (otel/privacy.py): the second line of defence, and the first for any other",
        "  # OTLP sender. Matches are masked with ****; keys naming a secret lose their whole value;",
        "  # numbers and arrays are read too (a card number sent as an int).",
        "  # Traces: our processor (collector/sensitiveattributes): the contrib redaction processor's",
        "  # rules, on resource, scope, span, event and link attributes, and the value patterns on",
        "  # span and event names, status messages and scope names and versions; each distinct key",
        "  # and short value decided once (bounded caches) instead of every pattern over every span.",
        "  sensitive_attributes:",
        *_list("ignored_keys", list(sensitive.NON_SECRET_KEYS)),
        *_list("secret_key_patterns", keys),
        *_list("value_patterns", values),
        f"    mask: {_collector_string(sensitive.MASK)}",
        "",
        "  # Metrics: the same patterns; no audit attributes (they would become labels).",
        "  redaction/metrics:",
        "    allow_all_keys: true",
        "    redact_all_types: true",
        *_list("ignored_keys", list(sensitive.NON_SECRET_KEYS)),
        *_list("blocked_key_patterns", keys),
        *_list("blocked_values", values),
        "    summary: silent",
        "",
        "  # What the redaction processor does not read: metric descriptions, scope names and",
        "  # versions (one pass of all value patterns per field).",
        "  transform/redact_metrics:",
        "    error_mode: ignore",
        *_list("metric_statements", _statements(METRIC_FIELDS)),
        END,
    ]
    return "\n".join(lines) + "\n"


def rendered(text: str) -> str:
    """`text` (the collector config) with its generated block replaced."""
    return collector_guard.replace_block(text, BEGIN, END, block().removesuffix("\n"),
                                         "processors")
