"""Redaction applied to everything before it leaves the process.

Two independent nets (redacting by key name alone would leak secrets in free text):
- by key: attribute/argument keys that name a secret have their whole value replaced;
- by value: well-known secret and PII shapes inside any string are replaced, whatever the key.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

REDACTED = "[REDACTED]"

# Key tokens that mark a value as secret. Keys are split into tokens ("x-api-key" ->
# x, api, key) so that e.g. gen_ai.usage.input_tokens is not mistaken for a token.
SECRET_KEY_TOKENS = frozenset({
    "secret", "secrets", "token", "password", "passwd", "pwd", "passphrase", "apikey",
    "credential", "credentials", "auth", "authorization", "bearer", "cookie", "cookies",
    "session", "sessionid", "privatekey", "accesskey", "secretkey", "ssn", "jwt", "otp",
    "signature", "setcookie",
})
# Adjacent token pairs that together name a secret ("api_key", "private_key", ...).
SECRET_KEY_PAIRS = frozenset({
    ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"),
    ("client", "secret"), ("refresh", "token"), ("access", "token"), ("set", "cookie"),
    ("credit", "card"), ("card", "number"),
})
_KEY_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    tokens = [t for t in _KEY_SPLIT.split(_CAMEL.sub("_", key).lower()) if t]
    if any(t in SECRET_KEY_TOKENS for t in tokens):
        return True
    return any(pair in SECRET_KEY_PAIRS for pair in zip(tokens, tokens[1:]))


_VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    ("bearer", re.compile(r"(?i)\b(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("api_key", re.compile(
        r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{16,}"  # OpenAI/Stripe-style keys
        r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
        r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"
        r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
        r"|\bAIza[0-9A-Za-z_-]{35}\b"  # Google API keys
        r"|\bglpat-[A-Za-z0-9_-]{20,}")),
    ("private_key", re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)")),
    ("url_credentials", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("phone", re.compile(r"(?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,3}\b")),
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Cheap pre-check: most strings (tool names, domains, numbers) contain none of these marks.
# Every pattern above (and the card check) must have a trigger here.
_MAYBE_SENSITIVE = re.compile(
    r"(?i)[@:]|(?:\d[ -]?){12}|eyj|[a-z]{2,3}[-_]|akia|asia|aiza|bearer|basic|token|-----|\+\d")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[REDACTED:card]"
    return match.group(0)


def redact_text(text: str) -> str:
    """Replace secret/PII shapes inside free text."""
    if not text or not _MAYBE_SENSITIVE.search(text):
        return text
    for label, pattern in _VALUE_PATTERNS:
        text = pattern.sub(f"[REDACTED:{label}]", text)
    return _CARD.sub(_card_sub, text) if any(c.isdigit() for c in text) else text


class TextRedactor:
    """`redact_text` with a bounded memo: agent code repeats the same few strings a lot."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._memo: dict[str, str] = {}
        self._max = max_entries

    def __call__(self, text: str) -> str:
        out = self._memo.get(text)
        if out is None:
            out = redact_text(text)
            if len(text) <= 256:  # keep the memo small: only short, repeatable strings
                if len(self._memo) >= self._max:
                    self._memo.clear()
                self._memo[text] = out
        return out


def redact_value(value: Any) -> Any:
    """Redact an attribute value (str, number, bool or a sequence of those)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_text(v) if isinstance(v, str) else v for v in value)
    return value


def redact_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes with secret keys blanked and secret shapes removed from values."""
    if not attributes:
        return {}
    return {
        k: (REDACTED if is_secret_key(k) else redact_value(v)) for k, v in attributes.items()
    }


def redact_structure(value: Any, depth: int = 0) -> Any:
    """Redact nested tool arguments/results: secret keys at any depth, shapes in any string."""
    if depth > 16:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if is_secret_key(str(k)) else redact_structure(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_structure(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


def truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    marker = f"...[truncated {len(text) - max_chars} chars]"
    return text[:max_chars] + marker


def capture(value: Any, max_chars: int) -> str:
    """Content as it may leave the process: redacted first, then serialised and truncated."""
    safe = redact_structure(value)
    text = safe if isinstance(safe, str) else json.dumps(safe, default=str, ensure_ascii=False)
    # Serialisation can join fragments into a new secret-looking shape; check the final text too.
    return truncate(redact_text(text), max_chars)
