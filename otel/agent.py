"""The API agent code uses: executions, tool calls, budget, approvals, plan and route events.

Every method is safe to call from agent code: telemetry problems are counted and logged,
never raised; exceptions raised by the agent's own code pass through unchanged (after being
recorded). Works as sync and async context managers and as decorators. The scopes live in
`otel.execution` (Execution) and `otel.tool_call` (ToolCall, Approval).

Trace shape (OpenTelemetry GenAI agent conventions):
  invoke_agent {agent}        INTERNAL  events: plan_created, route_decision,
                                        budget_warning, budget_exceeded
    execute_tool {tool}       INTERNAL  events: tool_call_start, tool_call_complete |
                                        tool_call_error (status ERROR, error.type)
    approval {tool}           INTERNAL  events: approval_requested,
                                        approval_received | approval_timeout
    chat {model}              CLIENT    (child of the execution or of a tool call) gen_ai.usage.*,
                                        finish reasons, time to first chunk, error.type
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from otel import catalogue
from otel.core import Core
from otel.execution import CURRENT, Execution
from otel.llm_call import CHAT, CURRENT_TOOL, LLMCall
from otel.tool_call import Approval, ToolCall

__all__ = ["AgentTelemetry", "Approval", "Execution", "LLMCall", "ToolCall"]


class AgentTelemetry:
    """Entry point for agent code: `tel.agent` of the handle `setup_telemetry()` returns.

        agent = setup_telemetry(service_name="cugar-sales").agent
        with agent.execution(profile="smb", agent_name="cugar-sales") as ex:
            ...

    With telemetry disabled every method still works and records nothing.
    """

    def __init__(self, core: Core | None) -> None:
        self._core = core

    def execution(self, profile: str = catalogue.OTHER, agent_name: str = "cugar-agent",
                  goal: str | None = None, budget_ceiling: float | None = None,
                  budget_ceiling_usd: float | None = None) -> Execution:
        """One agent run, as a sync or async context manager.

            with agent.execution(profile="smb", agent_name="cugar-sales",
                                 goal=request.text, budget_ceiling=100.0) as ex:
                ...

        - `profile`: the customer profile; one outside the configured profiles
          (`CUGAR_PROFILES`) is recorded as "other".
        - `agent_name`: the agent (`gen_ai.agent.name`, span name); a non-string or empty
          name is recorded as "unknown".
        - `goal`: the user's request, captured (redacted, truncated) only with content
          capture on (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).
        - `budget_ceiling`: cost units this run may spend (see `Execution.spend`); a value
          that is not a positive number is ignored and counted as `invalid_input`.
        - `budget_ceiling_usd`: US dollars this run may spend; its LLM calls spend their
          computed cost (`cugar.llm.cost`) by themselves (see `Execution.spend_usd`). The
          same 80% warning and exceeded events as in cost units; bad values likewise.
          Both ceilings may be set: each execution counts once in cugar.budget.warnings and
          once in cugar.budget.exceeded, whichever crosses first.
        """
        return Execution(self._core, profile, agent_name, goal, budget_ceiling,
                         budget_ceiling_usd)

    @staticmethod
    def current_execution() -> Execution | None:
        """The execution running in this context (thread or task), or None."""
        return CURRENT.get()

    def tool_call(self, tool: str, domain: str | None = None, side_effect: str = "read-only",
                  arguments: Any = None) -> ToolCall:
        """A tool call in the current execution (standalone when there is none), as a sync or
        async context manager.

            with agent.tool_call("send_email", domain="engagement", side_effect="execute",
                                 arguments={"to": address}) as call:
                call.set_result(smtp.send(address, body))

        - `tool`: the tool's name; the first `CUGAR_MAX_TOOLS` distinct names are metric
          labels, later ones "other"; a non-string or empty name is "other" ("unknown" on
          the span).
        - `domain`: one of `catalogue.DOMAINS`; anything else is recorded as "other".
        - `side_effect`: "read-only", "propose" or "execute"; anything else is "other".
        - `arguments`: the call's arguments, captured (redacted, truncated) only with
          content capture on.
        """
        return ToolCall(self._core, CURRENT.get(), tool, domain, side_effect, arguments)

    def llm_call(self, provider: str, model: str, operation: str = CHAT, stream: bool = False,
                 messages: Any = None) -> LLMCall:
        """A call to a language model made in the current tool call, else in the current
        execution (standalone when there is neither), as a sync or async context manager.

            with agent.llm_call("openai", "gpt-4o-mini", stream=True) as call:
                for chunk in client.chat.completions.create(..., stream=True):
                    call.first_chunk()
                call.record(input_tokens=900, output_tokens=120, finish_reason="stop")

        - `provider`: gen_ai.provider.name, one of `catalogue.LLM_PROVIDERS` (the conventions'
          well-known values); another is kept on the span and recorded as "other" in metrics
          (and then has no price).
        - `model`: gen_ai.request.model; the first `CUGAR_MAX_MODELS` distinct models are
          metric labels, later ones "other" (unpriced); a non-string is "unknown" on the span.
        - `operation`: gen_ai.operation.name ("chat", "text_completion", "generate_content";
          another is "other" in metrics); the span is named "{operation} {model}".
        - `stream`: a streaming request (gen_ai.request.stream; mark `first_chunk()`).
        - `messages`: the prompt, captured (redacted, truncated) only with content capture on,
          on the span or in a `gen_ai.client.inference.operation.details` event as
          `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` says.

        Cost: tokens times the price table (`CUGAR_LLM_PRICES`, else the genai-prices package)
        in USD (`cugar.llm.cost`, span attribute `cugar.llm.cost`, `call.cost`); a model
        without a price is never guessed: it counts in `cugar.llm.cost.unpriced`.
        """
        parent = CURRENT_TOOL.get() or CURRENT.get()
        return LLMCall(self._core, parent, provider, model, operation, stream, messages)

    def tool(self, name: str | None = None, *, domain: str | None = None,
             side_effect: str = "read-only") -> Callable:
        """Decorator: each call of the (sync or async) function is a tool call.

            @agent.tool("crm_lookup", domain="intelligence")
            async def crm_lookup(account): ...

        `name` defaults to the function's name; `domain` and `side_effect` as in `tool_call`.
        With content capture on, the call's arguments and return value are captured. An
        exception marks the call as error and propagates unchanged.
        """

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
                           budget_ceiling: float | None = None,
                           budget_ceiling_usd: float | None = None) -> Callable:
        """Decorator: each call of the (sync or async) function is one execution.

            @agent.execution_function(profile="smb", budget_ceiling=50)
            def handle(request):
                agent.current_execution().spend(2.5)

        `agent_name` defaults to the function's name; `profile`, `budget_ceiling` and
        `budget_ceiling_usd` as in `execution` (bad values are handled the same way). Inside, `current_execution()`
        returns the execution (for spend, approvals and events).
        """

        def decorate(fn: Callable) -> Callable:
            name = agent_name or fn.__name__
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args, **kwargs):
                    async with self.execution(profile, name, budget_ceiling=budget_ceiling,
                                              budget_ceiling_usd=budget_ceiling_usd):
                        return await fn(*args, **kwargs)
                return async_wrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                with self.execution(profile, name, budget_ceiling=budget_ceiling,
                                    budget_ceiling_usd=budget_ceiling_usd):
                    return fn(*args, **kwargs)
            return wrapper

        return decorate
