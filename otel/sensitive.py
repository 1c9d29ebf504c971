"""The sensitive-value and secret-key patterns: one table for the library and the collector.

`otel/privacy.py` compiles these for the SDK-side redaction; `python -m services.monitoring`
writes the same regular expressions into otel-collector-config.yaml (the redaction processors'
`blocked_values` / `blocked_key_patterns` and the transform statements that cover span names,
status messages, event names and scope names). Every pattern is valid in both Python `re`
(compiled with re.ASCII) and Go RE2 (the collector): no lookaround, no backreferences, no
global flags (case-insensitivity only as a scoped `(?i:...)` group), `[0-9]` not `\\d`.

A pattern matches the sensitive part itself: the collector masks the whole match with `****`,
the library replaces it with `[REDACTED:<kind>]`. Where a checksum tells a real value from a
look-alike (Luhn for card numbers, mod 97 for IBANs, ...), the library checks it and the
collector, which cannot, masks every match: the collector is the broader net.

Names and street addresses are caught only in the shapes listed here (an honorific before a
name, a number with a street-type word); a bare "John Smith" or a free-form address is not
recognisable by pattern. What keeps them out instead: content capture is off by default, and
metric labels are closed or bounded sets (see docs/privacy.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValuePattern:
    kind: str
    regex: str
    check: str | None = None  # name of a checksum in otel/privacy.py the library applies
    what: str = ""


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEX4 = r"[0-9A-Fa-f]{1,4}"

# Order matters where shapes overlap: the first match is replaced first (both sides apply them
# in this order). Secrets with distinctive prefixes come before the digit shapes.
VALUE_PATTERNS: tuple[ValuePattern, ...] = (
    ValuePattern("private_key",
                 r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                 r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)",
                 what="PEM / OpenSSH / PGP private-key blocks (also when truncated)"),
    ValuePattern("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
                 what="JSON Web Tokens"),
    ValuePattern("bearer", r"(?i:\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,})",
                 what="HTTP Bearer / Basic credentials"),
    ValuePattern("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]*@",
                 what="user:password@ in URLs"),
    ValuePattern("secret_assignment",
                 r"(?i:\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|"
                 r"client[_-]?secret|auth[_-]?token)\"?\s*[=:]\s*\"?[^\s&,;\"'<>\[*][^\s&,;\"'<>]{2,})",
                 what="password=..., api_key: ... in free text, query strings and JSON"),
    ValuePattern("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", what="Anthropic API keys"),
    ValuePattern("openai_key", r"\bsk-[A-Za-z0-9_-]{20,}",
                 what="OpenAI API keys (sk-, sk-proj-, sk-svcacct-)"),
    ValuePattern("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
                 what="Stripe keys"),
    ValuePattern("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
                 what="AWS access key ids"),
    ValuePattern("github_token",
                 r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{22,}",
                 what="GitHub tokens"),
    ValuePattern("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}", what="GitLab tokens"),
    ValuePattern("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", what="Google API keys"),
    ValuePattern("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", what="Slack tokens"),
    ValuePattern("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}", what="Hugging Face tokens"),
    ValuePattern("email",
                 r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                 what="e-mail addresses (also with a percent-encoded @)"),
    ValuePattern("iban", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
                 check="iban", what="IBANs (library: mod-97 checksum)"),
    ValuePattern("card",
                 r"\b(?:[2-6][0-9]{12,18}|[2-6][0-9]{3}(?:[ -][0-9]{4}){3}[0-9]{0,3}"
                 r"|3[47][0-9]{2}[ -][0-9]{6}[ -][0-9]{5})\b",
                 check="luhn", what="payment card numbers (library: Luhn checksum)"),
    ValuePattern("fr_nir",
                 r"\b[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]) ?(?:2[AB]|[0-9]{2}) ?[0-9]{3} ?[0-9]{3}"
                 r" ?[0-9]{2}\b",
                 check="nir", what="French social security numbers (NIR)"),
    ValuePattern("phone_international",
                 r"\+[1-9][0-9]{0,2}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}"
                 r"(?:[ .-]?[0-9]{2,4}){1,5}",
                 what="phone numbers with a country code (E.164 and spaced)"),
    ValuePattern("phone_us", r"(?:\([0-9]{3}\) ?|\b[0-9]{3}[-.])[0-9]{3}[-.][0-9]{4}\b",
                 what="North American national format"),
    ValuePattern("phone_uk", r"\b0[1-9][0-9]{1,3} [0-9]{3,4} [0-9]{3,4}\b",
                 what="UK national format"),
    ValuePattern("phone_fr", r"\b0[1-9](?:[ .][0-9]{2}){4}\b", what="French national format"),
    ValuePattern("phone_de", r"\b0[1-9][0-9]{1,4}[ /][0-9]{5,8}\b",
                 what="German national format"),
    ValuePattern("us_ssn", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", what="US social security numbers"),
    ValuePattern("uk_nino",
                 r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
                 what="UK National Insurance numbers"),
    ValuePattern("es_dni", r"\b[0-9]{8}-?[A-HJ-NP-TV-Z]\b", check="dni",
                 what="Spanish DNI (library: check letter)"),
    ValuePattern("in_aadhaar", r"\b[2-9][0-9]{3} [0-9]{4} [0-9]{4}\b",
                 what="Indian Aadhaar numbers (spaced)"),
    ValuePattern("ipv4", rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b", what="IPv4 addresses"),
    ValuePattern("ipv6",
                 rf"\b(?:{_HEX4}:){{7}}{_HEX4}\b|\b(?:{_HEX4}:){{1,7}}:(?:{_HEX4}(?::{_HEX4}){{0,6}})?",
                 what="IPv6 addresses (full and ::-compressed)"),
    ValuePattern("person_name_titled",
                 r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.? [A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2}",
                 what="a name after an honorific (Mr, Mrs, Dr, ...)"),
    ValuePattern("street_address",
                 r"\b[0-9]{1,5}[A-Za-z]? (?:[A-Z][a-z]+ ){1,3}(?:Street|St|Avenue|Ave|Road|Rd|"
                 r"Boulevard|Blvd|Lane|Ln|Drive|Court|Ct|Way|Place|Pl|Square|Sq|Terrace|"
                 r"Parkway|Highway)\b\.?"
                 # ß also as the JSON escape \u00df (once or more: a tool call's JSON arguments inside
                 # JSON-encoded messages), as GenAI emitters record captured content.
                 r"|\b[A-Z][a-z]+(?:stra(?:ss|\xdf|\\+u00[dD][fF])e|str\.|weg|gasse|platz|allee)"
                 r" [0-9]{1,4}[a-z]?\b"
                 r"|\b[0-9]{1,4},? (?:rue|avenue|boulevard|place|chemin|impasse|quai) "
                 r"(?:(?:de|du|des|la|le) )*[A-Z][A-Za-z-]+",
                 what="street addresses: '221B Baker Street', 'Hauptstra\xdfe 5', '12 rue de la Paix'"),
    ValuePattern("uk_postcode", r"\b[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}\b",
                 what="UK postcodes"),
)

# Attribute keys that name a secret: the whole value is replaced, whatever it looks like.
# Keys are read as tokens ("x-api-key" -> x, api, key; "sessionToken" -> session, token) so that
# e.g. gen_ai.usage.input_tokens is not mistaken for a token.
SECRET_KEY_TOKENS: tuple[str, ...] = (
    "secret", "secrets", "token", "password", "passwd", "pwd", "passphrase", "apikey",
    "credential", "credentials", "auth", "authorization", "bearer", "cookie", "cookies",
    "session", "sessionid", "privatekey", "accesskey", "secretkey", "ssn", "jwt", "otp",
    "signature", "setcookie",
)
# Adjacent token pairs that together name a secret ("api_key", "private_key", ...).
SECRET_KEY_PAIRS: tuple[tuple[str, str], ...] = (
    ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"),
    ("client", "secret"), ("refresh", "token"), ("access", "token"), ("set", "cookie"),
    ("credit", "card"), ("card", "number"),
)


def _key_regexes() -> tuple[str, ...]:
    """Three RE2/Python regexes over a raw attribute key, one per spelling of the tokens:
    delimited (x-api-key, DB_PASSWORD, http.request.header.authorization), capitalised inside
    camelCase (sessionToken, userApiKey) and lower-case first word of camelCase (passwordHash,
    apiKey)."""
    words = sorted(SECRET_KEY_TOKENS, key=lambda w: (-len(w), w))
    pairs = sorted(SECRET_KEY_PAIRS, key=lambda p: (-len(p[0] + p[1]), p))
    delimited = "|".join(words + [f"{a}[^a-z0-9]?{b}" for a, b in pairs])
    capital = "|".join([w.capitalize() for w in words]
                       + [f"{a.capitalize()}[^A-Za-z0-9]?{b.capitalize()}" for a, b in pairs])
    lower_first = "|".join(words + [f"{a}[^A-Za-z0-9]?{b.capitalize()}" for a, b in pairs])
    return (
        rf"(?i:(?:^|[^a-z0-9])(?:{delimited})(?:$|[^a-z0-9]))",
        rf"(?:^|[^A-Z])(?:{capital})(?:$|[^a-z])",
        rf"(?:^|[^A-Za-z0-9])(?:{lower_first})[A-Z]",
    )


SECRET_KEY_PATTERNS: tuple[str, ...] = _key_regexes()

# Exact keys that read like a secret but are known not to be one: the GenAI conventions'
# gen_ai.token.type ("input" / "output") and gen_ai.token.modality ("text", "image", ...), closed
# sets the cardinality guard enforces. The collector's redaction processors pass them unchanged
# (`ignored_keys`).
NON_SECRET_KEYS: tuple[str, ...] = ("gen_ai.token.type", "gen_ai.token.modality")

MASK = "****"  # what the collector writes in place of a match (the redaction processor's own)


def combined_value_regex() -> str:
    """Every value pattern in one alternation (one pass per string in OTTL statements)."""
    return "|".join(f"(?:{p.regex})" for p in VALUE_PATTERNS)
