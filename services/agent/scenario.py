"""Pure, deterministic planning of one simulated execution (no telemetry, no clock).

`script_for(index, config)` decides everything an execution will do, from a random generator
seeded by (seed, index) alone: the profile, goal, plan, route of each step, approvals and their
waits, each tool attempt's latency, error and cost, and where the execution stops. Because no
decision depends on timing, interleaving or the worker process that plays the script, the same
seed gives the same ground truth whatever the concurrency or number of processes.

Agent policy (what a real CUGAr agent does, documented in docs/agent.md):
- the plan gathers first (read-only steps), then proposes, and at most one action (an
  `execute` tool) ends it, with a per-profile probability;
- an `execute` step waits for a human approval first: rejected -> the step is skipped and the
  plan continues; timeout -> the execution fails (the agent cannot act unattended);
- a transient tool error (rate limit, upstream timeout, unavailable) is retried once; any other
  error, or a second transient one, fails the execution;
- every attempt costs budget, errors included; spend above the profile's ceiling stops the
  execution and fails it (budget guard).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from otel.catalogue import BUDGET_WARNING_RATIO, DOMAINS, SIDE_EFFECTS

from services.agent import llm
from services.agent.llm import LLMCallPlan
from services.agent.profiles import PROFILES, PROFILES_BY_NAME, Profile
from services.agent.tools import (TOOLS_BY_DOMAIN, TOOLS_BY_NAME, TRANSIENT_ERRORS, Tool,
                                  lognormal_ms)

SIDE_EFFECT_ORDER = {side_effect: i for i, side_effect in enumerate(SIDE_EFFECTS)}
# A plan mostly gathers (read-only) and sometimes proposes; at most one action (execute) ends it.
GATHER_TOOLS = {d: [t for t in TOOLS_BY_DOMAIN[d] if not t.needs_approval] for d in DOMAINS}
GATHER_WEIGHTS = {d: [3.0 if t.side_effect == "read-only" else 1.0 for t in GATHER_TOOLS[d]]
                  for d in DOMAINS}
ACTION_TOOLS = [t for d in DOMAINS for t in TOOLS_BY_DOMAIN[d] if t.needs_approval]
MAX_ATTEMPTS = 2  # first try + one retry of a transient error

FAIL_TOOL_ERROR = "tool_error"
FAIL_APPROVAL_TIMEOUT = "approval_timeout"
FAIL_BUDGET_EXCEEDED = "budget_exceeded"
FAILURE_REASONS = (FAIL_TOOL_ERROR, FAIL_APPROVAL_TIMEOUT, FAIL_BUDGET_EXCEEDED)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that shapes the workload's decisions (not its pacing)."""

    seed: int = 0
    # error-rate overrides keyed by domain or tool name (failure injection, --fail)
    error_rates: dict[str, float] = field(default_factory=dict)
    latency_multiplier: float = 1.0
    profiles: tuple[str, ...] = ()  # restrict the mix; empty = every profile, default weights
    budget_usd: dict[str, float] = field(default_factory=dict)  # profile -> USD ceiling
    approval_reject_rate: float = 0.08
    approval_timeout_rate: float = 0.01
    approval_timeout_ms: float = 6_000.0
    approval_median_ms: float = 400.0
    approval_p95_ms: float = 2_000.0
    planning_median_ms: float = 300.0
    planning_p95_ms: float = 1_000.0

    def __post_init__(self) -> None:
        for key, rate in self.error_rates.items():
            if key not in DOMAINS and key not in TOOLS_BY_NAME:
                raise ValueError(f"unknown failure target {key!r}: use a domain "
                                 f"({', '.join(DOMAINS)}) or a tool name")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"error rate for {key!r} must be within 0..1, got {rate}")
        for name, usd in self.budget_usd.items():
            if name not in PROFILES_BY_NAME:
                raise ValueError(f"--budget-usd: unknown profile {name!r}: use one of "
                                 f"{', '.join(PROFILES_BY_NAME)}")
            if not (math.isfinite(usd) and usd > 0):
                raise ValueError(f"--budget-usd: the ceiling of {name!r} must be a positive "
                                 f"number of US dollars, got {usd}")
        for name in self.profiles:
            if name not in PROFILES_BY_NAME:
                raise ValueError(f"unknown profile {name!r}: use one of "
                                 f"{', '.join(PROFILES_BY_NAME)}")
        if not (math.isfinite(self.latency_multiplier) and self.latency_multiplier > 0):
            raise ValueError(f"latency multiplier must be > 0, got {self.latency_multiplier}")
        for rate in (self.approval_reject_rate, self.approval_timeout_rate):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"approval rates must be within 0..1, got {rate}")
        if self.approval_reject_rate + self.approval_timeout_rate > 1.0:
            raise ValueError("approval reject rate + timeout rate must not exceed 1")

    def error_rate(self, tool: Tool) -> float:
        """A tool-level override wins over a domain-level one, which wins over the default."""
        return self.error_rates.get(tool.name, self.error_rates.get(tool.domain, tool.error_rate))

    def profile_mix(self) -> tuple[list[Profile], list[float]]:
        chosen = [PROFILES_BY_NAME[n] for n in self.profiles] if self.profiles else list(PROFILES)
        chosen = [replace(p, budget_ceiling_usd=self.budget_usd[p.name])
                  if p.name in self.budget_usd else p for p in chosen]
        return chosen, [p.weight for p in chosen]


@dataclass(frozen=True)
class Attempt:
    latency_ms: float
    error_type: str | None
    cost: float
    llm: tuple[LLMCallPlan, ...] = ()  # the model calls this attempt makes (LLM-backed tools)


@dataclass(frozen=True)
class Approval:
    decision: str  # approved | rejected | timeout
    wait_ms: float


@dataclass(frozen=True)
class Step:
    tool: Tool
    approval: Approval | None
    attempts: tuple[Attempt, ...]  # empty when the approval was rejected or timed out


@dataclass(frozen=True)
class ExecutionScript:
    index: int
    profile: Profile
    goal: str
    account: str
    contact_email: str
    planning_ms: float
    planned_steps: int
    steps: tuple[Step, ...]  # the steps reached; the plan stops at a failure
    failure: str | None
    spent: float
    planner_llm: tuple[LLMCallPlan, ...] = ()  # the planner's model calls (its planning time)

    @property
    def llm_calls(self) -> tuple[LLMCallPlan, ...]:
        """Every model call of this execution, the planner's first."""
        return self.planner_llm + tuple(c for s in self.steps for a in s.attempts for c in a.llm)

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def tool_calls(self) -> int:
        return sum(len(s.attempts) for s in self.steps)

    @property
    def budget_warning(self) -> bool:
        return self.spent >= BUDGET_WARNING_RATIO * self.profile.budget_ceiling

    @property
    def budget_exceeded(self) -> bool:
        return self.spent > self.profile.budget_ceiling


ACCOUNTS = ("Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industrial",
            "Wayne Logistics", "Hooli", "Vandelay Imports", "Soylent Foods", "Tyrell Systems")
CONTACTS = ("jane.doe", "raj.patel", "li.wei", "maria.garcia", "tom.becker", "amara.okafor")
GOALS = (
    "Qualify the inbound lead from {account} and book a discovery call with {email}",
    "Prepare an account brief on {account} for the quarterly business review",
    "Draft a renewal proposal for {account} within discount policy",
    "Find expansion opportunities at {account} and notify the account owner",
    "Answer {email}'s technical questions about single sign-on for {account}",
    "Rebalance territory coverage for {account} after the reorg",
)


def _approval(rng: random.Random, config: SimulationConfig) -> Approval:
    draw = rng.random()
    if draw < config.approval_timeout_rate:
        return Approval("timeout", config.approval_timeout_ms)
    decision = "rejected" if draw < config.approval_timeout_rate + config.approval_reject_rate \
        else "approved"
    wait = lognormal_ms(rng, config.approval_median_ms, config.approval_p95_ms)
    # a human decision always arrives before the gate times out
    return Approval(decision, min(wait, 0.95 * config.approval_timeout_ms))


def _plan(rng: random.Random, profile: Profile) -> list[Tool]:
    """Gathering/proposing steps routed by the profile's domain mix, then maybe one action."""
    n = rng.randint(profile.min_steps, profile.max_steps)
    act = rng.random() < profile.action_rate
    domains = rng.choices(DOMAINS, weights=profile.domain_weight_list(), k=n - act)
    tools = [rng.choices(GATHER_TOOLS[d], weights=GATHER_WEIGHTS[d])[0] for d in domains]
    tools.sort(key=lambda t: SIDE_EFFECT_ORDER[t.side_effect])
    if act:
        tools.append(rng.choices(ACTION_TOOLS, weights=[
            profile.domain_weights.get(t.domain, 0.0) + 0.1 for t in ACTION_TOOLS])[0])
    return tools


def _attempts(rng: random.Random, tool: Tool, config: SimulationConfig, spent: float,
              ceiling: float) -> tuple[list[Attempt], float, str | None]:
    """The attempts of one approved step, the new spend, and the failure it causes (if any)."""
    attempts: list[Attempt] = []
    rate = config.error_rate(tool)
    for attempt_no in range(1, MAX_ATTEMPTS + 1):
        latency = tool.sample_latency_ms(rng) * config.latency_multiplier
        error = rng.choice(tool.error_types) if rng.random() < rate else None
        cost = tool.sample_cost(rng)
        attempts.append(Attempt(latency, error, cost))
        spent += cost
        if spent > ceiling:
            return attempts, spent, FAIL_BUDGET_EXCEEDED
        if error is None:
            return attempts, spent, None
        if error not in TRANSIENT_ERRORS or attempt_no == MAX_ATTEMPTS:
            return attempts, spent, FAIL_TOOL_ERROR
    raise AssertionError("unreachable")  # pragma: no cover


def script_for(index: int, config: SimulationConfig) -> ExecutionScript:
    """Decide execution number `index` of the run seeded with `config.seed`."""
    rng = random.Random(f"cugar-agent:{config.seed}:{index}")
    profiles, weights = config.profile_mix()
    profile = rng.choices(profiles, weights=weights)[0]
    account = rng.choice(ACCOUNTS)
    email = f"{rng.choice(CONTACTS)}@{account.split()[0].lower()}.example.com"
    goal = rng.choice(GOALS).format(account=account, email=email)
    planning_ms = lognormal_ms(rng, config.planning_median_ms, config.planning_p95_ms)
    plan = _plan(rng, profile)

    steps: list[Step] = []
    spent, failure = 0.0, None
    for tool in plan:
        approval = _approval(rng, config) if tool.needs_approval else None
        if approval and approval.decision != "approved":
            steps.append(Step(tool, approval, ()))
            if approval.decision == "timeout":
                failure = FAIL_APPROVAL_TIMEOUT
                break
            continue
        attempts, spent, failure = _attempts(rng, tool, config, spent, profile.budget_ceiling)
        steps.append(Step(tool, approval, tuple(attempts)))
        if failure:
            break
    # Model calls come from a generator of their own: the decisions above stay what they were.
    llm_rng = random.Random(f"cugar-agent-llm:{config.seed}:{index}")
    planner = llm.calls(llm_rng, llm.PLANNER_MIX, stream=False)
    steps = [replace(step, attempts=tuple(
        replace(a, llm=llm.calls(llm_rng, llm.TOOL_MIX[step.tool.name],
                                 step.tool.name in llm.STREAMING_TOOLS))
        for a in step.attempts)) if step.tool.name in llm.TOOL_MIX else step for step in steps]
    return ExecutionScript(index, profile, goal, account, email, planning_ms, len(plan),
                           tuple(steps), failure, spent, planner)
