"""One agent run: the invoke_agent span, budget and plan events, and the execution metrics."""

from __future__ import annotations

import contextvars
import math
from typing import Any

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_AGENT_NAME,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GenAiOperationNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from otel import catalogue
from otel.catalogue import (
    BUDGET_COST_UNIT,
    BUDGET_USD,
    CUGAR_BUDGET_CEILING,
    CUGAR_BUDGET_CEILING_USD,
    CUGAR_BUDGET_UNIT,
    CUGAR_BUDGET_USED,
    CUGAR_BUDGET_USED_USD,
    CUGAR_BUDGET_UTILIZATION,
    CUGAR_DOMAIN,
    CUGAR_OUTCOME,
    CUGAR_PLAN_STEPS,
    CUGAR_PROFILE,
    CUGAR_STEPS,
    EVENT_BUDGET_EXCEEDED,
    EVENT_BUDGET_WARNING,
    EVENT_PLAN_CREATED,
    EVENT_ROUTE_DECISION,
)
from otel.core import Core
from otel.llm_call import CHAT, LLMCall
from otel.scope import Scope, seconds
from otel.spans import detach
from otel.tool_call import Approval, ToolCall

_SUCCESS, _FAILURE = catalogue.EXECUTION_OUTCOMES
_INVOKE_AGENT = GenAiOperationNameValues.INVOKE_AGENT.value

# The execution running in this context; AgentTelemetry.current_execution() reads it.
CURRENT: contextvars.ContextVar["Execution | None"] = contextvars.ContextVar(
    "cugar_execution", default=None)


def _valid_ceiling(core: Core, what: str, ceiling: float | None) -> float | None:
    if ceiling is not None and not (isinstance(ceiling, (int, float)) and ceiling > 0):
        core.invalid_input(f"{what} must be a positive number, got {ceiling!r}")
        return None
    return ceiling


class Execution(Scope):
    """One agent run, from `AgentTelemetry.execution`: the root span and the execution metrics.

        with tel.agent.execution(profile="smb", agent_name="cugar-sales") as ex:
            with ex.tool_call("crm_lookup", domain="intelligence"):
                ...

    It succeeds unless `fail()` is called or an exception escapes it (the exception
    propagates). While it runs, `AgentTelemetry.current_execution()` returns it. Arguments and
    what becomes of bad values: see `AgentTelemetry.execution`.
    """

    __slots__ = ("_profile_raw", "_profile", "_agent_name", "_goal", "_ceiling", "_ceiling_usd",
                 "_token", "_cv_token", "_failed", "_failure", "_error_type", "_warned",
                 "_exceeded", "steps", "spent", "spent_usd")

    def __init__(self, core: Core | None, profile: str, agent_name: str, goal: str | None,
                 budget_ceiling: float | None, budget_ceiling_usd: float | None = None) -> None:
        super().__init__(core)
        self._profile_raw = profile
        self._profile = catalogue.OTHER
        self._agent_name = agent_name
        self._goal = goal
        self._ceiling = budget_ceiling
        self._ceiling_usd = budget_ceiling_usd
        self._token = None
        self._cv_token = None
        self._failed = False
        self._failure: str | None = None
        self._error_type: str | None = None
        self._warned = False
        self._exceeded = False
        self.steps = 0
        self.spent = 0.0
        self.spent_usd = 0.0  # what its LLM calls cost (and spend_usd added)

    # -- lifecycle ------------------------------------------------------------------------------
    def _enter(self) -> None:
        # Current even with telemetry disabled: decorated tools and agent code rely on it.
        self._cv_token = CURRENT.set(self)
        super()._enter()

    def _exit(self, exc_type, exc) -> None:
        if self._cv_token is not None:
            CURRENT.reset(self._cv_token)
            self._cv_token = None
        super()._exit(exc_type, exc)

    def _start(self, core: Core, start: int) -> None:
        self._profile = core.profiles(self._profile_raw)
        self._ceiling = _valid_ceiling(core, "budget_ceiling", self._ceiling)
        self._ceiling_usd = _valid_ceiling(core, "budget_ceiling_usd", self._ceiling_usd)
        if core.tracer is None:
            return
        agent = core.name(self._agent_name)
        attrs = {
            GEN_AI_OPERATION_NAME: _INVOKE_AGENT,
            GEN_AI_AGENT_NAME: agent,
            CUGAR_PROFILE: self._profile,
        }
        if self._ceiling is not None:
            attrs[CUGAR_BUDGET_CEILING] = float(self._ceiling)
        if self._ceiling_usd is not None:
            attrs[CUGAR_BUDGET_CEILING_USD] = float(self._ceiling_usd)
        if core.capture_content and self._goal is not None:
            attrs[GEN_AI_INPUT_MESSAGES] = core.capture_messages(self._goal)
        span = core.tracer.start_root(f"{_INVOKE_AGENT} {agent}", attrs, start)
        if span is not None:
            self._token = span.attach()
            self._span = span

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        if exc_type is not None:
            self._failed = True
            self._error_type = self._error_type or exc_type.__name__
        success = not self._failed
        shares = [spent / ceiling for spent, ceiling in ((self.spent, self._ceiling),
                                                         (self.spent_usd, self._ceiling_usd))
                  if ceiling]
        utilization = max(shares) if shares else None
        span = self._span
        # Recorded with the execution's span (still current here): the duration's exemplar
        # carries its trace id.
        core.metrics.execution(self._profile, success, seconds(self._start_mono, end),
                               self.steps, utilization, span=span.context if span else None)
        if span is None:
            return
        detach(self._token)
        attrs = span.attributes
        attrs[CUGAR_OUTCOME] = _SUCCESS if success else _FAILURE
        attrs[CUGAR_STEPS] = self.steps
        attrs[CUGAR_BUDGET_USED] = self.spent
        if self._ceiling_usd is not None or self.spent_usd:
            attrs[CUGAR_BUDGET_USED_USD] = self.spent_usd
        if utilization is not None:
            attrs[CUGAR_BUDGET_UTILIZATION] = utilization
        if not success:
            attrs[ERROR_TYPE] = core.clean_text(self._error_type or "execution_failed")
            if exc is not None:
                core.record_exception(span, exc)
            else:
                span.set_error(core.clean_text(self._failure or "execution failed"))
        span.end(end)

    # -- inside the execution ---------------------------------------------------------------
    @property
    def trace_id(self) -> str | None:
        """Hex trace id of this execution's span (None when not traced)."""
        return format(self._span.context.trace_id, "032x") if self._span is not None else None

    @property
    def failed(self) -> bool:
        return self._failed

    def tool_call(self, tool: str, domain: str | None = None, side_effect: str = "read-only",
                  arguments: Any = None) -> ToolCall:
        """A tool call in this execution (a context manager); arguments as in
        `AgentTelemetry.tool_call`."""
        return ToolCall(self._core, self, tool, domain, side_effect, arguments)

    def llm_call(self, provider: str, model: str, operation: str = CHAT, stream: bool = False,
                 messages: Any = None) -> LLMCall:
        """An LLM call made by the agent itself, e.g. its planner (a context manager; its span
        is this execution's child); arguments as in `AgentTelemetry.llm_call`.

            with ex.llm_call("anthropic", "claude-sonnet-4-5") as call:
                call.record(input_tokens=1800, output_tokens=240, finish_reason="end_turn")
        """
        return LLMCall(self._core, self, provider, model, operation, stream, messages)

    def approval(self, tool: str | None = None) -> Approval:
        """A human approval gate in this execution (a context manager).

            with ex.approval(tool="send_email") as ap:
                ap.approve()

        `tool`: the tool waiting for the decision (span attribute only; a name that is not
        a string is recorded as "unknown").
        """
        return Approval(self._core, self, tool)

    def plan_created(self, steps: int) -> None:
        """The plan_created event with the number of planned steps.

            ex.plan_created(steps=len(plan))

        `steps` that is not an int is recorded as -1.
        """
        if self._span is not None:
            self._event(EVENT_PLAN_CREATED, {CUGAR_PLAN_STEPS: steps if isinstance(
                steps, int) and not isinstance(steps, bool) else -1})

    def route_decision(self, domain: str) -> None:
        """The route_decision event: the next step goes to `domain`.

            ex.route_decision(domain="intelligence")

        A domain outside `catalogue.DOMAINS` is recorded as "other".
        """
        if self._span is not None:
            self._event(EVENT_ROUTE_DECISION, {CUGAR_DOMAIN: self._core.domains(domain)})

    def spend(self, amount: float) -> None:
        """Add `amount` cost units to this execution's budget.

            ex.spend(12.5)

        With a ceiling (`budget_ceiling`), the budget_warning event fires once at >= 80% of it
        and budget_exceeded once above 100%. A negative, NaN, infinite or non-numeric amount
        is ignored and counted as `invalid_input` in `tel.stats()`.
        """
        if self._valid_amount(amount, "spend"):
            self._spend(amount, BUDGET_COST_UNIT)

    def spend_usd(self, amount: float) -> None:
        """Add `amount` US dollars to this execution's budget in USD (`budget_ceiling_usd`).

            ex.spend_usd(0.012)  # a model call another instrumentation priced

        The LLM calls made in this execution (`ex.llm_call`, `call.llm_call`,
        `agent.llm_call` inside it) spend their computed cost here by themselves; call this
        only for spend our library does not see. budget_warning / budget_exceeded as for
        `spend` (an execution counts once in each, whichever budget crosses first). Bad
        amounts as for `spend`. The dollars are not added to any metric (cugar.llm.cost
        counts the LLM calls).
        """
        if self._valid_amount(amount, "spend_usd"):
            self._spend(amount, BUDGET_USD)

    def _valid_amount(self, amount: float, what: str) -> bool:
        core = self._core
        if core is None:
            return False
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                math.isfinite(amount) and amount >= 0):
            core.invalid_input(f"{what} amount must be a finite number >= 0, got {amount!r}")
            return False
        return True

    def _spend(self, amount: float, unit: str) -> None:
        """Add to the budget in `unit` (cost units also count in cugar.budget.used);
        budget_warning once at >= 80% of a ceiling, budget_exceeded once above it."""
        core = self._core
        try:
            profile = (self._profile,)
            if unit == BUDGET_USD:
                self.spent_usd += amount
                spent, ceiling = self.spent_usd, self._ceiling_usd
            else:
                self.spent += amount
                core.metrics.add(catalogue.BUDGET_USED, profile, amount)
                spent, ceiling = self.spent, self._ceiling
            if not ceiling:
                return
            attrs = {CUGAR_BUDGET_USED: spent, CUGAR_BUDGET_CEILING: float(ceiling),
                     CUGAR_BUDGET_UNIT: unit}
            if not self._warned and spent >= catalogue.BUDGET_WARNING_RATIO * ceiling:
                self._warned = True
                core.metrics.add(catalogue.BUDGET_WARNINGS, profile)
                self._event(EVENT_BUDGET_WARNING, attrs)
            if not self._exceeded and spent > ceiling:
                self._exceeded = True
                core.metrics.add(catalogue.BUDGET_EXCEEDED, profile)
                self._event(EVENT_BUDGET_EXCEEDED, attrs)
        except Exception:  # noqa: BLE001
            core.internal_error("spend")

    def fail(self, reason: str = "execution failed", error_type: str | None = None) -> None:
        """Mark the execution as failed without raising.

            ex.fail("no qualified lead", error_type="no_lead")

        `reason` becomes the span's error status (redacted; a non-string is recorded as its
        repr), `error_type` its error.type (default "execution_failed").
        """
        self._failed = True
        self._failure = reason if isinstance(reason, str) else repr(reason)
        if error_type:
            self._error_type = error_type

    def set_attribute(self, key: str, value: Any) -> None:
        """Extra span attribute (redacted by key and value like everything else)."""
        if self._span is not None:
            try:
                self._span.attributes.update(self._core.redact({key: value}))
            except Exception:  # noqa: BLE001
                self._core.internal_error("set_attribute")

    def _event(self, name: str, attributes: dict | None = None) -> None:
        if self._span is not None:
            self._span.add_event(name, attributes)
