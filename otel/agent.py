"""The API agent code uses: executions, tool calls, budget, approvals, plan and route events.

Every method is safe to call from agent code: telemetry problems are counted and logged,
never raised; exceptions raised by the agent's own code pass through unchanged (after being
recorded). Works as sync and async context managers and as decorators.

Trace shape (OpenTelemetry GenAI agent conventions):
  invoke_agent {agent}        INTERNAL  events: plan_created, route_decision,
                                        budget_warning, budget_exceeded
    execute_tool {tool}       INTERNAL  events: tool_call_start, tool_call_complete |
                                        tool_call_error (status ERROR, error.type)
    approval {tool}           INTERNAL  events: approval_requested,
                                        approval_received | approval_timeout
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
from typing import Any, Callable

from otel import catalogue
from otel.core import Core
from otel.spans import FastSpan, detach, monotonic_ns

_SUCCESS, _FAILURE = catalogue.EXECUTION_OUTCOMES

_CURRENT: contextvars.ContextVar["Execution | None"] = contextvars.ContextVar(
    "cugar_execution", default=None)


def _ms(start_mono: int, end_mono: int) -> float:
    return (end_mono - start_mono) / 1e6


class _Scope:
    """Shared sync/async context-manager plumbing.

    Subclasses implement `_start(core, start)` and `_finish(core, end, exc_type, exc)`; both
    run only with telemetry enabled, at most once, and any telemetry error inside them is
    counted instead of raised.
    """

    __slots__ = ("_core", "_start_mono", "_span", "_done")

    def __init__(self, core: Core | None) -> None:
        self._core = core
        self._span: FastSpan | None = None
        self._done = False

    def __enter__(self):
        self._enter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._exit(exc_type, exc)
        return False  # the agent's exception, if any, propagates unchanged

    async def __aenter__(self):
        self._enter()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._exit(exc_type, exc)
        return False

    def _enter(self) -> None:
        core = self._core
        if core is None:
            return
        self._start_mono = start = monotonic_ns()
        try:
            self._start(core, start)
        except Exception:  # noqa: BLE001
            core.internal_error(f"{type(self).__name__} start")

    def _exit(self, exc_type, exc) -> None:
        core = self._core
        if core is None or self._done:
            return
        self._done = True
        end = monotonic_ns()
        try:
            self._finish(core, end, exc_type, exc)
        except Exception:  # noqa: BLE001
            core.internal_error(f"{type(self).__name__} end")

    def _start(self, core: Core, start: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:  # pragma: no cover
        raise NotImplementedError


class ToolCall(_Scope):
    """One tool call (plan step). Leaving with an exception marks it as an error."""

    __slots__ = ("_execution", "_tool", "_domain", "_side_effect", "_arguments",
                 "_error_type", "_token")

    def __init__(self, core: Core | None, execution: "Execution | None", tool: str,
                 domain: str | None, side_effect: str, arguments: Any) -> None:
        super().__init__(core)
        self._execution = execution
        self._tool = tool
        self._domain = domain
        self._side_effect = side_effect
        self._arguments = arguments
        self._error_type: str | None = None
        self._token = None

    def _start(self, core: Core, start: int) -> None:
        parent = self._execution._span if self._execution is not None else None
        if core.tracer is None or (self._execution is not None and parent is None):
            return  # tracing off, or the execution was not sampled: children follow it
        tool = core.name(self._tool)
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
            "cugar.domain": core.domains(self._domain),
            "cugar.side_effect": core.side_effects(self._side_effect),
        }
        if core.capture_content and self._arguments is not None:
            attrs["gen_ai.tool.call.arguments"] = core.capture(self._arguments)
        name = "execute_tool " + tool
        span = (parent.child(name, attrs, start) if parent is not None
                else core.tracer.start_root(name, attrs, start))
        if span is not None:
            span.add_event("tool_call_start")
            self._token = span.attach()
            self._span = span

    def set_result(self, result: Any) -> None:
        core, span = self._core, self._span
        if core is None or span is None or not core.capture_content:
            return
        try:
            span.attributes["gen_ai.tool.call.result"] = core.capture(result)
        except Exception:  # noqa: BLE001
            core.internal_error("tool_call result")

    def error(self, error_type: str = "error") -> None:
        """Mark this call as failed without raising (error.type = `error_type`)."""
        self._error_type = error_type if isinstance(error_type, str) and error_type else "error"

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        if exc_type is not None and self._error_type is None:
            self._error_type = exc_type.__name__
        error_label = None if self._error_type is None else core.error_types(self._error_type)
        core.metrics.tool_call(core.tools(self._tool), core.domains(self._domain),
                               core.side_effects(self._side_effect), error_label,
                               _ms(self._start_mono, end))
        if self._execution is not None:
            self._execution.steps += 1
        span = self._span
        if span is None:
            return
        detach(self._token)
        if self._error_type is None:
            span.add_event("tool_call_complete")
        else:
            error_type = core.clean_text(self._error_type)
            span.attributes["error.type"] = error_type
            span.add_event("tool_call_error", {"error.type": error_type})
            if exc is not None:
                core.record_exception(span, exc)
            else:
                span.set_error(error_type)
        span.end(end)


class Approval(_Scope):
    """A human-in-the-loop gate. Leaving without a decision records a timeout."""

    __slots__ = ("_execution", "_tool", "_decision")

    def __init__(self, core: Core | None, execution: "Execution", tool: str | None) -> None:
        super().__init__(core)
        self._execution = execution
        self._tool = tool
        self._decision: str | None = None

    def _start(self, core: Core, start: int) -> None:
        parent = self._execution._span
        if parent is None:
            return
        tool = core.name(self._tool)
        span = parent.child("approval " + tool, {
            "gen_ai.operation.name": "approval", "cugar.approval.tool": tool}, start)
        span.add_event("approval_requested", {"cugar.approval.tool": tool})
        self._span = span

    def approve(self) -> None:
        self._decision = "approved"

    def reject(self) -> None:
        self._decision = "rejected"

    def time_out(self) -> None:
        self._decision = "timeout"

    @property
    def decision(self) -> str | None:
        return self._decision

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        decision = self._decision or "timeout"
        wait_ms = _ms(self._start_mono, end)
        core.metrics.approval(decision, wait_ms)
        span = self._span
        if span is None:
            return
        span.attributes["cugar.approval.decision"] = decision
        span.attributes["cugar.approval.wait_ms"] = wait_ms
        if decision == "timeout":
            span.add_event("approval_timeout")
        else:
            span.add_event("approval_received", {"cugar.approval.decision": decision})
        span.end(end)


class Execution(_Scope):
    """One agent run. Succeeds unless `fail()` is called or an exception escapes it."""

    __slots__ = ("_profile_raw", "_profile", "_agent_name", "_goal", "_ceiling", "_token",
                 "_cv_token", "_failed", "_failure", "_error_type", "_warned", "_exceeded",
                 "steps", "spent")

    def __init__(self, core: Core | None, profile: str, agent_name: str, goal: str | None,
                 budget_ceiling: float | None) -> None:
        super().__init__(core)
        self._profile_raw = profile
        self._profile = catalogue.OTHER
        self._agent_name = agent_name
        self._goal = goal
        self._ceiling = budget_ceiling
        self._token = None
        self._cv_token = None
        self._failed = False
        self._failure: str | None = None
        self._error_type: str | None = None
        self._warned = False
        self._exceeded = False
        self.steps = 0
        self.spent = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def _enter(self) -> None:
        # Current even with telemetry disabled: decorated tools and agent code rely on it.
        self._cv_token = _CURRENT.set(self)
        super()._enter()

    def _exit(self, exc_type, exc) -> None:
        if self._cv_token is not None:
            _CURRENT.reset(self._cv_token)
            self._cv_token = None
        super()._exit(exc_type, exc)

    def _start(self, core: Core, start: int) -> None:
        self._profile = core.profiles(self._profile_raw)
        ceiling = self._ceiling
        if ceiling is not None and not (isinstance(ceiling, (int, float)) and ceiling > 0):
            core.invalid_input(f"budget_ceiling must be a positive number, got {ceiling!r}")
            self._ceiling = None
        if core.tracer is None:
            return
        agent = core.name(self._agent_name)
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "cugar.profile": self._profile,
        }
        if self._ceiling is not None:
            attrs["cugar.budget.ceiling"] = float(self._ceiling)
        if core.capture_content and self._goal is not None:
            attrs["gen_ai.input.messages"] = core.capture_messages(self._goal)
        span = core.tracer.start_root("invoke_agent " + agent, attrs, start)
        if span is not None:
            self._token = span.attach()
            self._span = span

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        if exc_type is not None:
            self._failed = True
            self._error_type = self._error_type or exc_type.__name__
        success = not self._failed
        utilization = self.spent / self._ceiling if self._ceiling else None
        core.metrics.execution(self._profile, success, _ms(self._start_mono, end), self.steps,
                               utilization)
        span = self._span
        if span is None:
            return
        detach(self._token)
        attrs = span.attributes
        attrs["cugar.outcome"] = _SUCCESS if success else _FAILURE
        attrs["cugar.steps"] = self.steps
        attrs["cugar.budget.used"] = self.spent
        if utilization is not None:
            attrs["cugar.budget.utilization"] = utilization
        if not success:
            attrs["error.type"] = core.clean_text(self._error_type or "execution_failed")
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
        return ToolCall(self._core, self, tool, domain, side_effect, arguments)

    def approval(self, tool: str | None = None) -> Approval:
        return Approval(self._core, self, tool)

    def plan_created(self, steps: int) -> None:
        if self._span is not None:
            self._event("plan_created", {"cugar.plan.steps": steps if isinstance(
                steps, int) and not isinstance(steps, bool) else -1})

    def route_decision(self, domain: str) -> None:
        if self._span is not None:
            self._event("route_decision", {"cugar.domain": self._core.domains(domain)})

    def spend(self, amount: float) -> None:
        """Add cost units; budget_warning once at >=80% of the ceiling, exceeded once at >100%."""
        core = self._core
        if core is None:
            return
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                math.isfinite(amount) and amount >= 0):
            core.invalid_input(f"spend amount must be a finite number >= 0, got {amount!r}")
            return
        try:
            self.spent += amount
            profile = (self._profile,)
            core.metrics.add("cugar_budget_used_total", profile, amount)
            ceiling = self._ceiling
            if not ceiling:
                return
            if not self._warned and self.spent >= catalogue.BUDGET_WARNING_RATIO * ceiling:
                self._warned = True
                core.metrics.add("cugar_budget_warnings_total", profile)
                self._event("budget_warning", self._budget_attrs())
            if not self._exceeded and self.spent > ceiling:
                self._exceeded = True
                core.metrics.add("cugar_budget_exceeded_total", profile)
                self._event("budget_exceeded", self._budget_attrs())
        except Exception:  # noqa: BLE001
            core.internal_error("spend")

    def fail(self, reason: str = "execution failed", error_type: str | None = None) -> None:
        """Mark the execution as failed without raising."""
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

    def _budget_attrs(self) -> dict:
        return {"cugar.budget.used": self.spent, "cugar.budget.ceiling": float(self._ceiling)}

    def _event(self, name: str, attributes: dict | None = None) -> None:
        if self._span is not None:
            self._span.add_event(name, attributes)


class AgentTelemetry:
    """Entry point for agent code (`tel.agent`)."""

    def __init__(self, core: Core | None) -> None:
        self._core = core

    def execution(self, profile: str = catalogue.OTHER, agent_name: str = "cugar-agent",
                  goal: str | None = None, budget_ceiling: float | None = None) -> Execution:
        return Execution(self._core, profile, agent_name, goal, budget_ceiling)

    @staticmethod
    def current_execution() -> Execution | None:
        return _CURRENT.get()

    def tool_call(self, tool: str, domain: str | None = None, side_effect: str = "read-only",
                  arguments: Any = None) -> ToolCall:
        """A tool call inside the current execution (or standalone when there is none)."""
        return ToolCall(self._core, _CURRENT.get(), tool, domain, side_effect, arguments)

    def tool(self, name: str | None = None, *, domain: str | None = None,
             side_effect: str = "read-only") -> Callable:
        """Decorator: each call of the function is a tool call (sync or async)."""

        def decorate(fn: Callable) -> Callable:
            tool_name = name or fn.__name__

            def arguments(args, kwargs):
                core = self._core
                if core is None or not core.capture_content:
                    return None
                return {"args": list(args), "kwargs": kwargs}

            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args, **kwargs):
                    async with self.tool_call(tool_name, domain, side_effect,
                                              arguments(args, kwargs)) as call:
                        result = await fn(*args, **kwargs)
                        call.set_result(result)
                        return result
                return async_wrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                with self.tool_call(tool_name, domain, side_effect,
                                    arguments(args, kwargs)) as call:
                    result = fn(*args, **kwargs)
                    call.set_result(result)
                    return result
            return wrapper

        return decorate

    def execution_function(self, profile: str = catalogue.OTHER,
                           agent_name: str | None = None,
                           budget_ceiling: float | None = None) -> Callable:
        """Decorator: each call of the function is one execution (sync or async).

        Inside, `agent.current_execution()` returns it (for spend, approvals, events).
        """

        def decorate(fn: Callable) -> Callable:
            name = agent_name or fn.__name__
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args, **kwargs):
                    async with self.execution(profile, name, budget_ceiling=budget_ceiling):
                        return await fn(*args, **kwargs)
                return async_wrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                with self.execution(profile, name, budget_ceiling=budget_ceiling):
                    return fn(*args, **kwargs)
            return wrapper

        return decorate
