"""The simulated agent's tool registry: twenty sales tools across the six CUGAr domains.

Each tool has a side-effect class, a latency distribution (lognormal from a median and a p95,
in simulated milliseconds), a base error rate with the error types it fails with, and a cost
in budget units. Costs are multiples of 0.25 so that float sums stay exact (binary fractions):
the ground-truth budget total equals the telemetry counter to the last bit, in any order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from otel.catalogue import DOMAINS, SIDE_EFFECTS

COST_QUANTUM = 0.25
_Z95 = 1.6448536269514722  # standard normal 95th percentile


def lognormal_ms(rng: random.Random, median_ms: float, p95_ms: float) -> float:
    """A lognormal draw with the given median and 95th percentile."""
    return rng.lognormvariate(math.log(median_ms), math.log(p95_ms / median_ms) / _Z95)

# Transient errors are retried once by the agent; the others fail the step at once.
TRANSIENT_ERRORS: frozenset[str] = frozenset({"RateLimited", "UpstreamTimeout",
                                              "ServiceUnavailable"})


@dataclass(frozen=True)
class Tool:
    name: str
    domain: str
    side_effect: str  # read-only | propose | execute (execute needs a human approval)
    median_ms: float
    p95_ms: float
    error_rate: float
    error_types: tuple[str, ...]
    cost: float  # budget units per call, a multiple of COST_QUANTUM

    @property
    def needs_approval(self) -> bool:
        return self.side_effect == "execute"

    def sample_latency_ms(self, rng: random.Random) -> float:
        """Lognormal latency with this tool's median and p95, capped at 10 x p95."""
        return min(lognormal_ms(rng, self.median_ms, self.p95_ms), 10 * self.p95_ms)

    def sample_cost(self, rng: random.Random) -> float:
        """Base cost plus 0-4 quanta of jitter (token counts vary call to call)."""
        return self.cost + COST_QUANTUM * rng.randint(0, 4)


_NET = ("RateLimited", "UpstreamTimeout")

TOOLS: tuple[Tool, ...] = (
    # territory: who owns which accounts
    Tool("territory_lookup", "territory", "read-only", 40, 150, 0.005, _NET + ("NotFound",), 1.0),
    Tool("account_assignment", "territory", "propose", 110, 360, 0.01,
         _NET + ("ValidationError",), 2.0),
    Tool("reassign_account", "territory", "execute", 150, 540, 0.02,
         ("PermissionDenied", "ServiceUnavailable"), 3.0),
    # intelligence: what we know about the account
    Tool("crm_lookup", "intelligence", "read-only", 70, 270, 0.01, _NET + ("NotFound",), 1.5),
    Tool("company_enrichment", "intelligence", "read-only", 150, 540, 0.03,
         _NET + ("ServiceUnavailable",), 3.0),
    Tool("news_signals", "intelligence", "read-only", 180, 720, 0.02, _NET, 2.5),
    Tool("intent_signals", "intelligence", "read-only", 120, 480, 0.02,
         _NET + ("ServiceUnavailable",), 2.5),
    # knowledge: product and competitive knowledge
    Tool("kb_search", "knowledge", "read-only", 90, 300, 0.005, ("UpstreamTimeout",), 1.0),
    Tool("product_docs_retrieval", "knowledge", "read-only", 130, 480, 0.01,
         ("UpstreamTimeout", "NotFound"), 1.5),
    Tool("battlecard_generation", "knowledge", "propose", 540, 1800, 0.02,
         ("RateLimited", "ContentFilterBlocked"), 6.0),
    # engagement: talking to the customer
    Tool("draft_email", "engagement", "propose", 420, 1500, 0.02,
         ("RateLimited", "ContentFilterBlocked"), 5.0),
    Tool("send_email", "engagement", "execute", 180, 720, 0.02,
         ("DeliveryFailed", "RateLimited"), 2.0),
    Tool("schedule_meeting", "engagement", "execute", 270, 900, 0.03,
         ("CalendarConflict", "UpstreamTimeout"), 2.0),
    # qualification: is this a real opportunity
    Tool("lead_scoring", "qualification", "read-only", 50, 180, 0.005, ("ValidationError",), 1.0),
    Tool("bant_assessment", "qualification", "propose", 360, 1200, 0.02,
         ("RateLimited", "ValidationError"), 4.5),
    Tool("opportunity_update", "qualification", "execute", 120, 420, 0.02,
         ("ValidationError", "PermissionDenied"), 1.5),
    # governance: policy, compliance and commercial guard-rails
    Tool("policy_check", "governance", "read-only", 50, 180, 0.005, ("ServiceUnavailable",), 0.5),
    Tool("compliance_screening", "governance", "read-only", 210, 840, 0.02,
         _NET + ("ServiceUnavailable",), 3.5),
    Tool("discount_request", "governance", "propose", 150, 540, 0.01, ("PolicyViolation",), 1.5),
    Tool("contract_generation", "governance", "execute", 720, 2400, 0.03,
         ("PolicyViolation", "UpstreamTimeout"), 8.0),
)

TOOLS_BY_NAME: dict[str, Tool] = {t.name: t for t in TOOLS}
TOOLS_BY_DOMAIN: dict[str, tuple[Tool, ...]] = {
    d: tuple(t for t in TOOLS if t.domain == d) for d in DOMAINS
}


def _check_registry() -> None:
    """Guard-rails on the table above; run at import so a bad edit fails loudly."""
    for t in TOOLS:
        assert t.domain in DOMAINS and t.side_effect in SIDE_EFFECTS, t
        assert 0 < t.median_ms < t.p95_ms and 0 <= t.error_rate <= 1 and t.error_types, t
        assert (t.cost / COST_QUANTUM).is_integer() and t.cost > 0, t
    assert all(TOOLS_BY_DOMAIN[d] for d in DOMAINS)


_check_registry()
