"""Rate limiting per client: a token bucket per API key or client address, in memory.

A client is the valid API key it presents, else its address (`request.client.host`; the
X-Forwarded-For header is not trusted). Each client has a bucket of `burst` tokens that refills
at `rate` tokens per second; a request takes one token or gets 429 with Retry-After.

The buckets live in this process: with N uvicorn workers a client may get up to N times the
rate (the kernel spreads connections over the workers). Liveness (GET /health) is never limited.
POST /alerts/{severity} (Alertmanager's webhook) has its own buckets, WEBHOOK_FACTOR times larger,
so neither a dashboard nor a scrape sharing the key can starve it: Alertmanager does not retry a
4xx, so a 429 would lose a notification.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException, Request, status

from .auth import key_matches
from .metrics import ApiMetrics
from .settings import Settings

LIVENESS_PATH = "/health"
WEBHOOK_PATH = "/alerts/{severity}"
WEBHOOK_FACTOR = 10

Clock = Callable[[], float]


class TokenBuckets:
    """A token bucket per client id, at most `max_clients` of them.

    The table is an LRU: past `max_clients` the least recently seen client's bucket is dropped,
    so a flood of distinct ids (addresses) cannot grow memory without bound. A dropped client
    comes back with a full bucket, which errs on the side of serving it. Not thread-safe: the
    limiter runs as an async dependency, on the event loop only.
    """

    def __init__(self, rate: float, burst: int, max_clients: int,
                 clock: Clock = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id: tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take a token for `client`: 0 when it may proceed, else the seconds until it may."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if not wait else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


class RateLimiter:
    """The FastAPI dependency that applies the limits (run before the API key check)."""

    def __init__(self, settings: Settings, metrics: ApiMetrics,
                 clock: Clock = time.monotonic) -> None:
        self.settings, self.metrics = settings, metrics
        rate, burst, clients = settings.rate_limit, settings.rate_burst, settings.rate_limit_clients
        self.general = TokenBuckets(rate, burst, clients, clock)
        self.webhook = TokenBuckets(rate * WEBHOOK_FACTOR, burst * WEBHOOK_FACTOR, clients, clock)
        # Only the configured key is valid; its digest names its bucket (never the key itself).
        key = settings.api_key
        self._key_id = f"key:{hashlib.sha256(key.encode()).hexdigest()[:16]}" if key else None

    def client_id(self, request: Request) -> str:
        if self._key_id and key_matches(self.settings.api_key, request):
            return self._key_id
        return f"addr:{request.client.host if request.client else 'unknown'}"

    async def __call__(self, request: Request) -> None:
        # The route template keeps the metric's label values to the app's fixed set of routes.
        route = getattr(request.scope.get("route"), "path", "other")
        if self.settings.rate_limit == 0 or route == LIVENESS_PATH:
            return
        buckets = self.webhook if route == WEBHOOK_PATH else self.general
        wait = buckets.take(self.client_id(request))
        if not wait:
            return
        self.metrics.observe_rate_limited(route)
        retry_after = max(1, math.ceil(wait))
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=(f"rate limit exceeded: {buckets.rate:g} requests per second per client "
                    f"(bursts up to {buckets.burst}); retry in {retry_after} s"),
            headers={"Retry-After": str(retry_after)})
