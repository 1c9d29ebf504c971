"""Plays an execution script through the `otel` agent API (its async form).

The script has already decided everything; playing it only adds the simulated waits (scaled by
the time scale) and the telemetry calls a real agent makes at the same points.
"""

from __future__ import annotations

from typing import Any

from services.agent.llm import LLMCallPlan
from services.agent.scenario import Attempt, ExecutionScript, Step
from services.agent.stop import StopSignal


class ToolError(Exception):
    """Base of the errors simulated tools raise; the subclass name is the error type."""


_ERROR_CLASSES: dict[str, type[ToolError]] = {}


def error_class(error_type: str) -> type[ToolError]:
    """The exception class named `error_type` (so telemetry records that name as error.type)."""
    cls = _ERROR_CLASSES.get(error_type)
    if cls is None:
        cls = _ERROR_CLASSES[error_type] = type(error_type, (ToolError,), {})
    return cls


class Pacer:
    """Simulated waits: milliseconds x time scale, cut short once a stop is requested (so a
    stopping agent finishes its in-flight executions at once instead of abandoning them).
    `time_scale` comes validated from Pacing."""

    def __init__(self, time_scale: float, stop: StopSignal) -> None:
        self.time_scale = time_scale
        self.stop = stop

    async def sleep_ms(self, simulated_ms: float) -> None:
        if self.time_scale > 0:
            await self.stop.wait(simulated_ms * self.time_scale / 1000.0)


_DECIDE = {
    "approved": lambda ap: ap.approve(),
    "rejected": lambda ap: ap.reject(),
    "timeout": lambda ap: ap.time_out(),
}


async def play(agent: Any, script: ExecutionScript, pacer: Pacer, agent_name: str) -> None:
    profile = script.profile
    async with agent.execution(profile=profile.name, agent_name=agent_name, goal=script.goal,
                               budget_ceiling=profile.budget_ceiling,
                               budget_ceiling_usd=profile.budget_ceiling_usd) as ex:
        # Planning is the planner's model call(s): they take the planning time.
        await _call_models(ex, script.planner_llm, script.planning_ms, pacer)
        ex.plan_created(steps=script.planned_steps)
        for step in script.steps:
            ex.route_decision(domain=step.tool.domain)
            if step.approval:
                async with ex.approval(tool=step.tool.name) as ap:
                    await pacer.sleep_ms(step.approval.wait_ms)
                    _DECIDE[step.approval.decision](ap)
            for attempt in step.attempts:
                await _call_tool(ex, script, step, attempt, pacer)
                ex.spend(attempt.cost)
        if script.failure:
            ex.fail(script.failure, error_type=script.failure)


async def _call_tool(ex: Any, script: ExecutionScript, step: Step, attempt: Attempt,
                     pacer: Pacer) -> None:
    tool = step.tool
    # Arguments carry a contact e-mail on purpose (a PII canary): telemetry must redact it
    # when content capture is on, and must not export it at all when capture is off.
    arguments = {"account": script.account, "contact_email": script.contact_email}
    try:
        async with ex.tool_call(tool.name, domain=tool.domain, side_effect=tool.side_effect,
                                arguments=arguments) as call:
            # An LLM-backed tool spends its latency in its model call(s).
            await _call_models(call, attempt.llm, attempt.latency_ms, pacer)
            if attempt.error_type:
                # the message names the contact: exception text must be redacted too
                raise error_class(attempt.error_type)(
                    f"{tool.name} failed while handling {script.contact_email}")
            call.set_result({"status": "ok", "tool": tool.name, "account": script.account})
    except ToolError:
        pass  # recorded by the tool-call span; the script already decided what happens next


async def _call_models(scope: Any, plans: tuple[LLMCallPlan, ...], total_ms: float,
                       pacer: Pacer) -> None:
    """Play the model calls of a step inside `scope` (the execution or a tool call): each takes
    its share of `total_ms`; whatever is left is the step's own work."""
    left = total_ms
    for plan in plans:
        ms = total_ms * plan.share
        left -= ms
        async with scope.llm_call(plan.provider, plan.model, stream=plan.stream) as call:
            if plan.stream:
                await pacer.sleep_ms(ms * plan.ttft_share)
                call.first_chunk()
                ms *= 1 - plan.ttft_share
            await pacer.sleep_ms(ms)
            if plan.error_type:
                call.error(plan.error_type)
            else:
                call.record(input_tokens=plan.input_tokens, output_tokens=plan.output_tokens,
                            finish_reason=plan.finish_reason, response_model=plan.model)
    await pacer.sleep_ms(max(left, 0.0))
