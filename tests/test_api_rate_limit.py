"""The API's rate limit (services/api/ratelimit.py): a token bucket per client (valid API key, else
address), liveness never limited, the Alertmanager webhook on its own larger budget, the bucket
table capped, 429s counted. A fake clock stands in for time: nothing sleeps."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.api.ratelimit import WEBHOOK_FACTOR, TokenBuckets
from services.api.settings import Settings
from tests.support.api import api_client, notification
from tests.support.exposition import samples

KEY = "s3cret-key-for-tests"
RATE, BURST = 2.0, 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited_client(clock: FakeClock, **overrides) -> TestClient:
    return api_client(clock=clock, rate_limit=RATE, rate_burst=BURST, **overrides)


def statuses(c: TestClient, n: int, path: str = "/", **kwargs) -> list[int]:
    return [c.get(path, **kwargs).status_code for _ in range(n)]


def test_under_the_limit_every_request_passes() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        assert statuses(c, BURST) == [200] * BURST
        clock.now += 1 / RATE  # one more token
        assert statuses(c, 1) == [200]


def test_over_the_limit_is_429_with_retry_after_and_a_readable_detail() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        statuses(c, BURST)
        r = c.get("/dashboard")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"  # 0.5 s to the next token, rounded up to whole seconds
    assert r.json() == {"detail": "rate limit exceeded: 2 requests per second per client "
                                  "(bursts up to 5); retry in 1 s"}


def test_retry_after_is_the_time_until_the_next_token() -> None:
    clock = FakeClock()
    with api_client(clock=clock, rate_limit=0.25, rate_burst=1) as c:
        assert statuses(c, 1) == [200]
        assert c.get("/").headers["retry-after"] == "4"
        clock.now += 2.5
        assert c.get("/").headers["retry-after"] == "2"  # 1.5 s left, rounded up
        clock.now += 1.5
        assert statuses(c, 2) == [200, 429]


def test_the_bucket_refills_over_time_up_to_the_burst() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        assert statuses(c, BURST + 1) == [200] * BURST + [429]
        clock.now += 1.0  # RATE tokens
        assert statuses(c, 3) == [200, 200, 429]
        clock.now += 3600.0  # idle for an hour: a full bucket, no more
        assert statuses(c, BURST + 1) == [200] * BURST + [429]


def test_a_valid_key_has_its_own_budget_apart_from_the_address() -> None:
    clock = FakeClock()
    keyed = {"X-API-Key": KEY}
    with limited_client(clock, api_key=KEY) as c:
        assert statuses(c, BURST, headers=keyed) == [200] * BURST
        assert statuses(c, 1, headers=keyed) == [429]
        # Same address, no key or a wrong one: the address's budget (401s, not 429s).
        assert statuses(c, BURST) == [401] * BURST
        assert statuses(c, 1, headers={"X-API-Key": "guess"}) == [429]
        # The key's budget does not depend on where it comes from.
        other = TestClient(c.app, client=("10.0.0.7", 40000))
        assert statuses(other, 1, headers=keyed) == [429]
        assert statuses(other, 1) == [401]


def test_two_keys_have_separate_budgets() -> None:
    # The API accepts one CUGAR_API_KEY; the limiter's buckets are per client id, one per key.
    clock = FakeClock()
    buckets = TokenBuckets(RATE, BURST, 100, clock)
    assert [buckets.take("key:a") for _ in range(BURST + 1)][-1] == pytest.approx(0.5)
    assert [buckets.take("key:b") for _ in range(BURST)] == [0.0] * BURST


def test_two_addresses_have_separate_budgets() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        other = TestClient(c.app, client=("10.0.0.7", 40000))
        assert statuses(c, BURST + 1) == [200] * BURST + [429]
        assert statuses(other, BURST + 1) == [200] * BURST + [429]


def test_forwarded_for_is_not_trusted() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        codes = [c.get("/", headers={"X-Forwarded-For": f"10.1.0.{i}"}).status_code
                 for i in range(BURST + 1)]
    assert codes == [200] * BURST + [429]


def test_liveness_is_never_limited() -> None:
    clock = FakeClock()
    with api_client(clock=clock, rate_limit=RATE, rate_burst=1, health_summary_timeout_s=0.05) as c:
        assert statuses(c, 1) == [200]
        assert statuses(c, 1) == [429]
        assert statuses(c, 10, "/health") == [200] * 10


def test_the_webhook_has_its_own_larger_budget() -> None:
    clock = FakeClock()
    with limited_client(clock, api_key=KEY) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        # A dashboard sharing Alertmanager's key has used up the key's budget...
        assert statuses(c, BURST + 1, headers=auth) == [200] * BURST + [429]
        # ...and Alertmanager's notifications still go through, up to their own budget.
        codes = [c.post("/alerts/warning", json=notification(), headers=auth).status_code
                 for _ in range(BURST * WEBHOOK_FACTOR + 1)]
    assert codes == [200] * (BURST * WEBHOOK_FACTOR) + [429]


def test_a_flood_of_distinct_clients_keeps_the_table_at_its_cap() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(RATE, BURST, 1000, clock)
    for i in range(10_000):
        assert buckets.take(f"addr:10.{i >> 16}.{(i >> 8) & 255}.{i & 255}") == 0.0
    assert len(buckets) == 1000
    # The least recently used went first: a recent client keeps its debt, an old one starts over.
    assert [buckets.take("addr:10.0.39.15") for _ in range(BURST)][-1] > 0  # client 9999
    assert buckets.take("addr:10.0.0.0") == 0.0


def test_the_app_caps_its_bucket_table() -> None:
    clock = FakeClock()
    with limited_client(clock, rate_limit_clients=3) as c:
        for i in range(10):
            assert statuses(TestClient(c.app, client=(f"10.0.0.{i}", 1)), 1) == [200]
        limiter = next(d.dependency for d in c.app.router.dependencies)
        assert len(limiter.general) == 3


def test_zero_turns_the_limit_off() -> None:
    with api_client(rate_limit=0, rate_burst=1) as c:
        assert statuses(c, 50) == [200] * 50


def test_limited_requests_are_counted_in_metrics() -> None:
    clock = FakeClock()
    with limited_client(clock) as c:
        before = samples(c.get("/metrics").text)
        statuses(c, BURST + 1, "/dashboard")  # 4 tokens left: 4 answers (503), 2 refused
        clock.now += 10
        after = samples(c.get("/metrics").text)

    def limited(s: dict, route: str) -> float:
        return s[("api_rate_limited_requests_total", (("route", route),))]

    assert limited(before, "/dashboard") == 0 and limited(before, "/alerts/{severity}") == 0
    assert limited(after, "/dashboard") == 2
    assert limited(after, "/metrics") == 0
    assert ("api_rate_limited_requests_total", (("route", "/health"),)) not in after
    assert "# HELP api_rate_limited_requests_total Requests refused with HTTP 429" in \
        c.get("/metrics").text


@pytest.mark.parametrize("env, variable", [
    ({"CUGAR_API_RATE_LIMIT": "fast"}, "CUGAR_API_RATE_LIMIT"),
    ({"CUGAR_API_RATE_LIMIT": "-1"}, "CUGAR_API_RATE_LIMIT"),
    ({"CUGAR_API_RATE_LIMIT": "inf"}, "CUGAR_API_RATE_LIMIT"),
    ({"CUGAR_API_RATE_LIMIT": "nan"}, "CUGAR_API_RATE_LIMIT"),
    ({"CUGAR_API_RATE_BURST": "0"}, "CUGAR_API_RATE_BURST"),
    ({"CUGAR_API_RATE_BURST": "2.5"}, "CUGAR_API_RATE_BURST"),
    ({"CUGAR_API_RATE_BURST": ""}, "CUGAR_API_RATE_BURST"),
])
def test_invalid_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env(env)


def test_settings_from_env() -> None:
    default = Settings.from_env({})
    assert (default.rate_limit, default.rate_burst) == (20.0, 40)
    custom = Settings.from_env({"CUGAR_API_RATE_LIMIT": "0.5", "CUGAR_API_RATE_BURST": "3"})
    assert (custom.rate_limit, custom.rate_burst) == (0.5, 3)
    assert Settings.from_env({"CUGAR_API_RATE_LIMIT": "0"}).rate_limit == 0

