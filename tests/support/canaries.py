"""The PII / secret canary corpus: synthetic but valid-looking values of every kind
otel/sensitive.py knows, and the fragments that must never be seen anywhere.

Secrets are assembled at import time (random bodies, provider prefixes joined from parts), so
this file holds no string a secret scanner would take for a real credential. Checksums are
valid where the kind has one (Luhn card numbers, mod-97 IBANs, the NIR key, the DNI letter).
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from dataclasses import dataclass, field

_rng = random.Random(8)  # the same corpus every run: a leak report names the same value


def _body(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Canary:
    kind: str  # the otel/sensitive.py pattern meant to catch it
    value: str
    extra_needles: tuple[str, ...] = field(default=())

    @property
    def needles(self) -> tuple[str, ...]:
        """The value and its obvious fragments, each as it could appear in any output (as is,
        digits only, with spaces as `+` or `%20` as in a query string)."""
        found = [self.value, *self.extra_needles]
        digits = re.sub(r"[^0-9]", "", self.value)
        if (len(digits) >= 9 and not self.kind.startswith("ip")
                and not re.search(r"[A-Za-z]{3}", self.value)):
            found.append(digits)
        for text in list(found):
            if " " in text:
                found += [text.replace(" ", "+"), text.replace(" ", "%20")]
        return tuple(dict.fromkeys(n for n in found if "\n" not in n))


_PEM_LINES = [_body(64, string.ascii_letters + string.digits + "+/") for _ in range(4)]
_JWT = ".".join([_b64url({"alg": "HS256", "typ": "JWT"}),
                 _b64url({"sub": "canary-subject-4471", "name": "Canary"}), _body(43)])
_BEARER = _body(40)
_OPENAI = "sk-" + "proj-" + _body(48)
_ANTHROPIC = "sk-" + "ant-" + "api03-" + _body(80)
_STRIPE = "sk" + "_live_" + _body(24)
_AWS = "AK" + "IA" + _body(16, string.ascii_uppercase + string.digits)
_GITHUB = "gh" + "p_" + _body(36)
_GOOGLE = "AI" + "za" + _body(35)
_SLACK = "xo" + "xb-" + _body(12, string.digits) + "-" + _body(24)
_GITLAB = "gl" + "pat-" + _body(20)
_HF = "h" + "f_" + _body(34)
_URL_PASSWORD = "Canary-Pass-" + _body(10)
_ASSIGNED_PASSWORD = "Hunter2-" + _body(12)
# A secret of no recognisable shape: only the key it is stored under (password, x-api-key,
# sessionToken, ...) can tell; it must never be seen either.
BY_KEY_ONLY = "plain-secret-by-key-" + _body(12)

CANARIES: tuple[Canary, ...] = (
    Canary("email", "canary.person@example.com", ("canary.person",)),
    Canary("email", "Canary+Tag7@mail.example.co.uk", ("Canary+Tag7", "Canary%2BTag7")),
    Canary("phone_international", "+1 415 555 0199"),
    Canary("phone_international", "+14155550123"),
    Canary("phone_international", "+44 20 7946 0958"),
    Canary("phone_international", "+49 30 901820"),
    Canary("phone_international", "+33 1 23 45 67 89"),
    Canary("phone_international", "+81 3-1234-5678"),
    Canary("phone_us", "(415) 555-0132", ("555-0132",)),
    Canary("phone_uk", "020 7946 0321"),
    Canary("phone_fr", "06 12 34 56 78"),
    Canary("phone_de", "030 9018204"),
    Canary("card", "4111 1111 1111 1111"),
    Canary("card", "5555-5555-5555-4444"),
    Canary("card", "378282246310005"),
    Canary("iban", "DE89 3704 0044 0532 0130 00"),
    Canary("iban", "GB82WEST12345698765432", ("WEST12345698765432",)),
    Canary("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    Canary("us_ssn", "078-05-1120"),
    Canary("uk_nino", "CE 12 34 56 D", ("CE123456D",)),
    Canary("fr_nir", "1 84 12 76 451 089 46"),
    Canary("es_dni", "12345678Z"),
    Canary("in_aadhaar", "2345 6789 0123"),
    Canary("ipv4", "203.0.113.42"),
    Canary("ipv4", "198.51.100.77"),
    Canary("ipv6", "2001:db8:85a3::8a2e:370:7334", ("8a2e:370:7334",)),
    Canary("ipv6", "2001:0db8:0000:0000:0000:ff00:0042:8329", ("ff00:0042:8329",)),
    Canary("openai_key", _OPENAI, (_OPENAI[8:40],)),
    Canary("anthropic_key", _ANTHROPIC, (_ANTHROPIC[13:45],)),
    Canary("stripe_key", _STRIPE, (_STRIPE[8:],)),
    Canary("aws_access_key", _AWS, (_AWS[4:],)),
    Canary("github_token", _GITHUB, (_GITHUB[4:],)),
    Canary("google_api_key", _GOOGLE, (_GOOGLE[4:],)),
    Canary("slack_token", _SLACK, (_SLACK[-24:],)),
    Canary("gitlab_token", _GITLAB, (_GITLAB[6:],)),
    Canary("huggingface_token", _HF, (_HF[3:],)),
    Canary("jwt", _JWT, tuple(_JWT.split("."))),
    Canary("bearer", "Bearer " + _BEARER, (_BEARER,)),
    Canary("url_credentials", f"https://canary-user:{_URL_PASSWORD}@db.example.net:5432/app",
           (_URL_PASSWORD, "canary-user:")),
    Canary("secret_assignment", f"password={_ASSIGNED_PASSWORD}", (_ASSIGNED_PASSWORD,)),
    Canary("private_key", "-----BEGIN " + "PRIVATE KEY-----\n" + "\n".join(_PEM_LINES)
           + "\n-----END " + "PRIVATE KEY-----", tuple(_PEM_LINES)),
    Canary("person_name_titled", "Dr. Canaria Testperson", ("Testperson",)),
    Canary("person_name_titled", "Mrs Evelyn Canaryfield", ("Canaryfield",)),
    Canary("street_address", "1600 Canarywood Avenue", ("Canarywood",)),
    Canary("street_address", "Kanarienstra\xdfe 17", ("Kanarienstra",)),
    Canary("street_address", "12 rue de la Canarisette", ("Canarisette",)),
    Canary("uk_postcode", "SW1A 2AA"),
)

KINDS: frozenset[str] = frozenset(c.kind for c in CANARIES)

# Free-text kinds a pattern cannot catch: they are never captured unless content capture is
# on, and then only inside gen_ai.* content attributes (see docs/privacy.md).
UNCATCHABLE_EXAMPLES = ("John Smith", "my neighbour in the blue house on the corner")


def text_with(canaries: tuple[Canary, ...] = CANARIES, sep: str = " | ") -> str:
    """All canaries in one free-text string."""
    return sep.join(c.value for c in canaries)


def leaks(blob: str, where: str) -> list[str]:
    """'kind value-prefix in where' for every canary needle found in `blob`."""
    found = [f"by_key_only {BY_KEY_ONLY[:24]!r} in {where}"] if BY_KEY_ONLY in blob else []
    for canary in CANARIES:
        for needle in canary.needles:
            if needle in blob:
                found.append(f"{canary.kind} {needle[:24]!r} in {where}")
                break
    return found
