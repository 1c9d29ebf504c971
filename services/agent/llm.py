"""The simulated agent's language models: which model the planner and the LLM-backed tools call,
how many tokens a call takes, and how calls fail. In-process: no network, no real model.

Token counts are lognormal from a median and a p95 (prompts of a few thousand tokens, replies
of a few hundred, as sales-assistant calls are); a reply that hits its `max_tokens` finishes
with "length". Failures are HTTP-shaped error types: "429" (rate limited, retried once by the
caller), "timeout" and "500". A failed call reports no usage (nothing billed). The model mix
spans two providers and includes an in-house fine-tune that the price table does not know: its
calls are unpriced (counted, never guessed).

Timing: an LLM call takes a share of the time the script already gave the step (the planning
time, a tool attempt's latency), so adding models changes no duration of the simulation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from services.agent.tools import lognormal_ms

RATE_LIMITED = "429"
LLM_ERRORS: tuple[tuple[str, float], ...] = ((RATE_LIMITED, 0.03), ("timeout", 0.01), ("500", 0.005))
LENGTH_SHARE = 0.05  # replies cut at max_tokens


@dataclass(frozen=True)
class Model:
    provider: str  # gen_ai.provider.name
    name: str      # gen_ai.request.model
    input_median: float
    input_p95: float
    output_median: float
    output_p95: float
    max_tokens: int


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("openai", "gpt-4o-mini", 1800, 6000, 220, 700, 1024),
    Model("openai", "gpt-4.1", 2600, 9000, 380, 1200, 2048),
    Model("anthropic", "claude-sonnet-4-5", 2200, 8000, 450, 1500, 2048),
    # an in-house fine-tune: no public price, so its calls are counted as unpriced
    Model("openai", "cugar-sales-ft-1", 900, 2500, 160, 500, 512),
)}
# Who calls which model, with what weight; streaming callers measure time to first chunk.
PLANNER_MIX: dict[str, float] = {"gpt-4o-mini": 0.55, "claude-sonnet-4-5": 0.3, "gpt-4.1": 0.15}
TOOL_MIX: dict[str, dict[str, float]] = {
    "company_enrichment": {"gpt-4o-mini": 0.8, "cugar-sales-ft-1": 0.2},
    "battlecard_generation": {"claude-sonnet-4-5": 0.7, "gpt-4.1": 0.3},
    "draft_email": {"claude-sonnet-4-5": 0.6, "cugar-sales-ft-1": 0.4},
    "bant_assessment": {"gpt-4o-mini": 0.6, "gpt-4.1": 0.4},
    "contract_generation": {"gpt-4.1": 1.0},
}
STREAMING_TOOLS = frozenset({"battlecard_generation", "draft_email"})


@dataclass(frozen=True)
class LLMCallPlan:
    provider: str
    model: str
    stream: bool
    share: float  # of the enclosing step's time
    ttft_share: float  # of this call's time, to the first chunk (streaming only)
    error_type: str | None
    input_tokens: int | None  # None when the call failed (no usage reported)
    output_tokens: int | None
    finish_reason: str | None


def _tokens(rng: random.Random, median: float, p95: float) -> int:
    return max(1, round(lognormal_ms(rng, median, p95)))


def _call(rng: random.Random, model: Model, stream: bool, share: float) -> LLMCallPlan:
    draw, error = rng.random(), None
    for error_type, rate in LLM_ERRORS:
        if draw < rate:
            error = error_type
            break
        draw -= rate
    ttft = rng.uniform(0.1, 0.4) if stream else 0.0
    if error is not None:
        return LLMCallPlan(model.provider, model.name, stream, share, ttft, error, None, None, None)
    input_tokens = _tokens(rng, model.input_median, model.input_p95)
    output_tokens = min(_tokens(rng, model.output_median, model.output_p95), model.max_tokens)
    if rng.random() < LENGTH_SHARE:
        output_tokens = model.max_tokens
    finish = "length" if output_tokens == model.max_tokens else "stop"
    return LLMCallPlan(model.provider, model.name, stream, share, ttft, None, input_tokens,
                       output_tokens, finish)


def calls(rng: random.Random, mix: dict[str, float], stream: bool) -> tuple[LLMCallPlan, ...]:
    """One logical request: a call, and one retry after a rate limit (which took 10% of the
    time; the retry takes the rest)."""
    model = MODELS[rng.choices(list(mix), weights=list(mix.values()))[0]]
    first = _call(rng, model, stream, 1.0)
    if first.error_type != RATE_LIMITED:
        return (first,)
    return (replace(first, share=0.1), _call(rng, model, stream, 0.9))
