"""Tool calls and approval gates inside an execution (or, for tool calls, standalone)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_RESULT,
    GEN_AI_TOOL_NAME,
    GEN_AI_TOOL_TYPE,
    GenAiOperationNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from otel import catalogue
from otel.catalogue import (
    APPROVAL_OPERATION,
    CUGAR_APPROVAL_DECISION,
    CUGAR_APPROVAL_TOOL,
    CUGAR_APPROVAL_WAIT_MS,
    CUGAR_DOMAIN,
    CUGAR_SIDE_EFFECT,
    EVENT_APPROVAL_RECEIVED,
    EVENT_APPROVAL_REQUESTED,
    EVENT_APPROVAL_TIMEOUT,
    EVENT_TOOL_CALL_COMPLETE,
    EVENT_TOOL_CALL_ERROR,
    EVENT_TOOL_CALL_START,
    TOOL_TYPE_FUNCTION,
)
from otel.core import Core
from otel.llm_call import CHAT, CURRENT_TOOL, LLMCall
from otel.scope import Scope, seconds
from otel.spans import detach

if TYPE_CHECKING:
    from otel.execution import Execution

_APPROVED, _REJECTED, _TIMEOUT = catalogue.APPROVAL_DECISIONS
_EXECUTE_TOOL = GenAiOperationNameValues.EXECUTE_TOOL.value


class ToolCall(Scope):
    """One tool call (plan step), from `Execution.tool_call` or `AgentTelemetry.tool_call`.

        with ex.tool_call("crm_lookup", domain="intelligence") as call:
            call.set_result(crm.lookup(account))   # an exception here marks the call as error

    It counts as an error when an exception leaves it (error.type = the exception's class
    name; the exception propagates) or after `error()`. What becomes of bad names: see
    `AgentTelemetry.tool_call`.
    """

    __slots__ = ("_execution", "_tool", "_domain", "_side_effect", "_arguments",
                 "_error_type", "_token", "_cv_token")

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
        self._cv_token = None

    def _enter(self) -> None:
        self._cv_token = CURRENT_TOOL.set(self)  # LLM calls made inside nest under this call
        super()._enter()

    def _exit(self, exc_type, exc) -> None:
        if self._cv_token is not None:
            CURRENT_TOOL.reset(self._cv_token)
            self._cv_token = None
        super()._exit(exc_type, exc)

    def llm_call(self, provider: str, model: str, operation: str = CHAT, stream: bool = False,
                 messages: Any = None) -> LLMCall:
        """An LLM call made by this tool (a context manager; its span is this call's child);
        arguments as in `AgentTelemetry.llm_call`."""
        return LLMCall(self._core, self, provider, model, operation, stream, messages)

    def _start(self, core: Core, start: int) -> None:
        parent = self._execution._span if self._execution is not None else None
        if core.tracer is None or (self._execution is not None and parent is None):
            return  # tracing off, or the execution was not sampled: children follow it
        tool = core.name(self._tool)
        attrs = {
            GEN_AI_OPERATION_NAME: _EXECUTE_TOOL,
            GEN_AI_TOOL_NAME: tool,
            GEN_AI_TOOL_TYPE: TOOL_TYPE_FUNCTION,
            CUGAR_DOMAIN: core.domains(self._domain),
            CUGAR_SIDE_EFFECT: core.side_effects(self._side_effect),
        }
        if core.capture_content and self._arguments is not None:
            attrs[GEN_AI_TOOL_CALL_ARGUMENTS] = core.capture(self._arguments)
        name = f"{_EXECUTE_TOOL} {tool}"
        span = (parent.child(name, attrs, start) if parent is not None
                else core.tracer.start_root(name, attrs, start))
        if span is not None:
            span.add_event(EVENT_TOOL_CALL_START)
            self._token = span.attach()
            self._span = span

    def set_result(self, result: Any) -> None:
        """The tool's result, captured (redacted, truncated) only when content capture is on."""
        core, span = self._core, self._span
        if core is None or span is None or not core.capture_content:
            return
        try:
            span.attributes[GEN_AI_TOOL_CALL_RESULT] = core.capture(result)
        except Exception:  # noqa: BLE001
            core.internal_error("tool_call result")

    def error(self, error_type: str = "error") -> None:
        """Mark this call as failed without raising (error.type = `error_type`; anything but
        a non-empty string records "error")."""
        self._error_type = error_type if isinstance(error_type, str) and error_type else "error"

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        if exc_type is not None and self._error_type is None:
            self._error_type = exc_type.__name__
        error_label = None if self._error_type is None else core.error_types(self._error_type)
        span = self._span
        core.metrics.tool_call(core.tools(self._tool), core.domains(self._domain),
                               core.side_effects(self._side_effect), error_label,
                               seconds(self._start_mono, end),
                               span=span.context if span else None)
        if self._execution is not None:
            self._execution.steps += 1
        if span is None:
            return
        detach(self._token)
        if self._error_type is None:
            span.add_event(EVENT_TOOL_CALL_COMPLETE)
        else:
            error_type = core.clean_text(self._error_type)
            span.attributes[ERROR_TYPE] = error_type
            span.add_event(EVENT_TOOL_CALL_ERROR, {ERROR_TYPE: error_type})
            if exc is not None:
                core.record_exception(span, exc)
            else:
                span.set_error(error_type)
        span.end(end)


class Approval(Scope):
    """A human-in-the-loop gate, from `Execution.approval`; its span measures the wait.

        with ex.approval(tool="send_email") as ap:
            ap.approve() if human.says_yes() else ap.reject()

    Leaving without a decision (or after `time_out()`) records a timeout; the last decision
    made wins. A tool name that is not a string is recorded as "unknown".
    """

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
        span = parent.child(f"{APPROVAL_OPERATION} {tool}", {
            GEN_AI_OPERATION_NAME: APPROVAL_OPERATION, CUGAR_APPROVAL_TOOL: tool}, start)
        span.add_event(EVENT_APPROVAL_REQUESTED, {CUGAR_APPROVAL_TOOL: tool})
        self._span = span

    def approve(self) -> None:
        self._decision = _APPROVED

    def reject(self) -> None:
        self._decision = _REJECTED

    def time_out(self) -> None:
        self._decision = _TIMEOUT

    @property
    def decision(self) -> str | None:
        return self._decision

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        decision = self._decision or _TIMEOUT
        wait_s = seconds(self._start_mono, end)
        span = self._span
        core.metrics.approval(decision, wait_s, span=span.context if span else None)
        if span is None:
            return
        span.attributes[CUGAR_APPROVAL_DECISION] = decision
        span.attributes[CUGAR_APPROVAL_WAIT_MS] = wait_s * 1000
        if decision == _TIMEOUT:
            span.add_event(EVENT_APPROVAL_TIMEOUT)
        else:
            span.add_event(EVENT_APPROVAL_RECEIVED, {CUGAR_APPROVAL_DECISION: decision})
        span.end(end)
