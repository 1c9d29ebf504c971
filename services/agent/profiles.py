"""Agent profiles: budget ceiling, plan length, domain mix and share of the workload."""

from __future__ import annotations

from dataclasses import dataclass

from otel.catalogue import DEFAULT_PROFILES, DOMAINS


@dataclass(frozen=True)
class Profile:
    name: str
    weight: float  # share of executions in the default mix
    budget_ceiling: float  # cost units per execution
    min_steps: int
    max_steps: int
    domain_weights: dict[str, float]  # how often a plan step is routed to each domain
    action_rate: float  # share of plans that end with an action (execute tool, approval)
    # US dollars per execution that its LLM calls may spend (None: no budget in USD; the run's
    # --budget-usd sets one). Crossing it is flagged, not enforced: the guard is in cost units.
    budget_ceiling_usd: float | None = None

    def domain_weight_list(self) -> list[float]:
        return [self.domain_weights.get(d, 0.0) for d in DOMAINS]


def _mix(territory: float, intelligence: float, knowledge: float, engagement: float,
         qualification: float, governance: float) -> dict[str, float]:
    return dict(zip(DOMAINS, (territory, intelligence, knowledge, engagement, qualification,
                              governance), strict=True))


# Ceilings are tuned so that, with the default tool costs, roughly one execution in six
# crosses the 80% warning and a few percent exceed the ceiling (see docs/agent.md).
PROFILES: tuple[Profile, ...] = (
    Profile("enterprise", 0.15, 30.0, 4, 8, _mix(1, 3, 2, 1, 2, 3), 0.5),
    Profile("smb", 0.25, 26.0, 3, 6, _mix(2, 2, 1, 3, 2, 0.5), 0.4),
    Profile("technical", 0.15, 28.0, 4, 7, _mix(0.5, 2, 4, 1, 1, 1), 0.3),
    Profile("demo", 0.05, 17.0, 2, 4, _mix(1, 1, 1, 1, 1, 1), 0.5),
    Profile("sales_rep", 0.25, 25.0, 3, 6, _mix(2, 1, 1, 3, 3, 0.5), 0.5),
    Profile("sales_manager", 0.15, 29.0, 4, 8, _mix(3, 2, 0.5, 1, 1, 2.5), 0.45),
)
PROFILES_BY_NAME: dict[str, Profile] = {p.name: p for p in PROFILES}

assert tuple(PROFILES_BY_NAME) == DEFAULT_PROFILES
