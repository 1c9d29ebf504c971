"""Redaction applied to everything before it leaves the process.

Two independent nets (redacting by key name alone would leak secrets in free text):
- by key: attribute/argument keys that name a secret have their whole value replaced;
- by value: well-known secret and PII shapes inside any string are replaced, whatever the key.
Both come from otel/sensitive.py, the table the collector's redaction is generated from.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping
from urllib.parse import unquote, unquote_plus

from otel import sensitive

REDACTED = "[REDACTED]"

_SECRET_KEYS = tuple(re.compile(r) for r in sensitive.SECRET_KEY_PATTERNS)


def is_secret_key(key: str) -> bool:
    """The key names a secret (otel/sensitive.py's key patterns, as the collector applies)."""
    return key not in sensitive.NON_SECRET_KEYS and any(r.search(key) for r in _SECRET_KEYS)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"[^0-9]", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(text: str) -> bool:
    compact = text.replace(" ", "")
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return 15 <= len(compact) <= 34 and int(number) % 97 == 1


def _nir(text: str) -> bool:
    compact = text.replace(" ", "")
    body = compact[:13].replace("2A", "19").replace("2B", "18")
    return compact[13:].isdigit() and 97 - int(body) % 97 == int(compact[13:])


def _dni(text: str) -> bool:
    compact = text.replace("-", "")
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(compact[:8]) % 23] == compact[8]


# The library tells real values from look-alikes where a checksum exists; the collector,
# which cannot, masks every match of the same pattern.
_CHECKS: dict[str, Callable[[str], bool]] = {"luhn": _card, "iban": _iban, "nir": _nir,
                                             "dni": _dni}


def _replacer(pattern: sensitive.ValuePattern) -> Callable[[re.Match[str]], str] | str:
    label = f"[REDACTED:{pattern.kind}]"
    if pattern.check is None:
        return label
    check = _CHECKS[pattern.check]
    return lambda m: label if check(m.group(0)) else m.group(0)


_VALUE_PATTERNS = tuple((re.compile(p.regex, re.ASCII), _replacer(p))
                        for p in sensitive.VALUE_PATTERNS)
_CHECKED = tuple((re.compile(p.regex, re.ASCII), p.kind, _CHECKS.get(p.check or ""))
                 for p in sensitive.VALUE_PATTERNS)


def _redact_once(text: str) -> str:
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _spans(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), kind) for pattern, kind, check in _CHECKED
            for m in pattern.finditer(text) if check is None or check(m.group(0))]


def _redact_encoded(text: str) -> str:
    """A URL or query string (no whitespace, but % or +): read both ways a `+` can be meant
    (a space in form encoding, a plus sign otherwise: "+14155550123") and redact what either
    reading shows. Both decodings have the same length, so their matches line up."""
    as_space, as_plus = unquote_plus(text), unquote(text)
    spans = sorted(_spans(as_space) + _spans(as_plus))
    if not spans:
        return text
    out, at = [], 0
    for start, end, kind in spans:
        if start < at:  # overlaps the redaction just written
            if end > at:
                at = end
            continue
        out += [as_space[at:start], f"[REDACTED:{kind}]"]
        at = end
    return "".join(out) + as_space[at:]


def redact_text(text: str) -> str:
    """Replace secret/PII shapes inside free text, percent- or form-encoded text included."""
    if not text:
        return text
    if ("%" in text or "+" in text) and not any(c.isspace() for c in text):
        return _redact_encoded(text)
    text = _redact_once(text)
    if "%" in text:  # percent-encoded pieces inside ordinary text
        decoded = unquote(text)
        redacted = _redact_once(decoded)
        if redacted != decoded:
            return redacted
    return text


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
