"""Optional API key (CUGAR_API_KEY), compared in constant time.

Accepted as `X-API-Key: <key>`, `Authorization: Bearer <key>`, or HTTP Basic auth with the key
as password (any user name) so that a browser can open the live dashboard page: it prompts
once and then sends the credentials with the page's own JSON polls.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import HTTPException, Request, status

API_KEY_HEADER = "X-API-Key"


def _presented_keys(request: Request) -> list[str]:
    keys = []
    if header := request.headers.get(API_KEY_HEADER):
        keys.append(header)
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        keys.append(credentials.strip())
    elif scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        keys.append(decoded.partition(":")[2])
    return keys


def key_matches(expected: str, request: Request) -> bool:
    want = expected.encode("utf-8")
    # Every presented key is compared (no early exit) so timing reveals nothing about which.
    results = [hmac.compare_digest(want, k.encode("utf-8")) for k in _presented_keys(request)]
    return any(results)


def require_api_key(request: Request) -> None:
    expected = request.app.state.settings.api_key
    if expected is None or key_matches(expected, request):
        return
    presented = bool(_presented_keys(request))
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=("invalid API key" if presented else
                f"API key required: send it in the {API_KEY_HEADER} header "
                f"(or as a Bearer token / Basic auth password)"),
        headers={"WWW-Authenticate": 'Basic realm="CUGAr API", charset="UTF-8"'},
    )
