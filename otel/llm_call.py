"""LLM calls: a `chat {model}` CLIENT span under the execution or tool call that made it, the
GenAI client metrics of both convention layouts, and the call's cost from the price table."""

from __future__ import annotations

import contextvars
import json
from typing import TYPE_CHECKING, Any

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GenAiOperationNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind

from otel.catalogue import CUGAR_LLM_COST, OTHER
from otel.config import EVENT_ONLY, SPAN_AND_EVENT, SPAN_ONLY
from otel.core import Core
from otel.scope import Scope, seconds
from otel.spans import detach, monotonic_ns

if TYPE_CHECKING:
    from otel.execution import Execution
    from otel.tool_call import ToolCall

CHAT = GenAiOperationNameValues.CHAT.value
# The semantic-conventions-genai event that carries an inference's content when content
# capture goes to events (EVENT_ONLY, SPAN_AND_EVENT).
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_ON_SPAN = (SPAN_ONLY, SPAN_AND_EVENT)
_ON_EVENT = (EVENT_ONLY, SPAN_AND_EVENT)

# The tool call running in this context (an LLM call made inside it becomes its child).
CURRENT_TOOL: contextvars.ContextVar["ToolCall | None"] = contextvars.ContextVar(
    "cugar_current_tool_call", default=None)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class LLMCall(Scope):
    """One call to a language model, from `Execution.llm_call`, `ToolCall.llm_call` or
    `AgentTelemetry.llm_call` (a sync or async context manager).

        with ex.llm_call("openai", "gpt-4o-mini") as call:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            call.record(input_tokens=reply.usage.prompt_tokens,
                        output_tokens=reply.usage.completion_tokens,
                        finish_reason=reply.choices[0].finish_reason, response_model=reply.model)

    Streaming: call `first_chunk()` when the first chunk arrives (time to first chunk). The call
    is an error when an exception leaves it (error.type = the exception's class name; it
    propagates) or after `error("429")`. Bad token counts (negative, not an int) are recorded as
    absent and counted as `invalid_input`; what becomes of bad names: see
    `AgentTelemetry.llm_call`.
    """

    __slots__ = ("_parent", "_provider", "_model", "_operation", "_stream", "_messages",
                 "_input_tokens", "_output_tokens", "_finish_reasons", "_response_model",
                 "_output", "_error_type", "_first_chunk_mono", "_token", "cost")

    def __init__(self, core: Core | None, parent: "Execution | ToolCall | None", provider: str,
                 model: str, operation: str, stream: bool, messages: Any) -> None:
        super().__init__(core)
        self._parent = parent
        self._provider = provider
        self._model = model
        self._operation = operation
        self._stream = stream
        self._messages = messages
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._finish_reasons: list[str] = []
        self._response_model: str | None = None
        self._output: Any = None
        self._error_type: str | None = None
        self._first_chunk_mono: int | None = None
        self._token = None
        self.cost: float | None = None  # USD, once the call ended with a priced usage

    def _start(self, core: Core, start: int) -> None:
        parent = self._parent._span if self._parent is not None else None
        if core.tracer is None or (self._parent is not None and parent is None):
            return  # tracing off, or the parent was not sampled: children follow it
        model = core.name(self._model)
        operation = core.name(self._operation)
        attrs: dict[str, Any] = {
            GEN_AI_OPERATION_NAME: operation,
            GEN_AI_PROVIDER_NAME: core.name(self._provider),
            GEN_AI_REQUEST_MODEL: model,
        }
        if self._stream:
            attrs[GEN_AI_REQUEST_STREAM] = True
        if core.capture_mode in _ON_SPAN and self._messages is not None:
            attrs[GEN_AI_INPUT_MESSAGES] = self._content(core, self._messages, "user")
        name = f"{operation} {model}"
        span = (parent.child(name, attrs, start) if parent is not None
                else core.tracer.start_root(name, attrs, start))
        if span is not None:
            span.kind = SpanKind.CLIENT
            self._token = span.attach()
            self._span = span

    # -- what the agent reports --------------------------------------------------------------
    def first_chunk(self) -> None:
        """The first chunk of a streaming response arrived (only the first mark counts)."""
        if self._first_chunk_mono is None:
            self._first_chunk_mono = monotonic_ns()

    def record(self, input_tokens: int | None = None, output_tokens: int | None = None,
               finish_reason: str | None = None, response_model: str | None = None,
               output: Any = None) -> None:
        """The response's usage and metadata (call once; a later call overwrites).

        `input_tokens` / `output_tokens`: the provider's billable counts; `finish_reason`:
        e.g. "stop", "length", "tool_calls"; `response_model`: the model that answered;
        `output`: the reply, captured only with content capture on.
        """
        core = self._core
        for value, what in ((input_tokens, "input_tokens"), (output_tokens, "output_tokens")):
            if value is not None and _count(value) is None and core is not None:
                core.invalid_input(f"{what} must be an int >= 0, got {value!r}")
        self._input_tokens = _count(input_tokens)
        self._output_tokens = _count(output_tokens)
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reasons = [finish_reason]
        if isinstance(response_model, str) and response_model:
            self._response_model = response_model
        self._output = output

    def error(self, error_type: str = "error") -> None:
        """Mark this call as failed without raising: `error_type` such as "429" or "timeout"
        (anything but a non-empty string records "error")."""
        self._error_type = error_type if isinstance(error_type, str) and error_type else "error"

    # -- end ---------------------------------------------------------------------------------
    def _execution(self) -> "Execution | None":
        parent = self._parent
        return getattr(parent, "_execution", parent)  # a tool call's execution, or itself

    def _content(self, core: Core, value: Any, role: str) -> str:
        text = core.capture(value)
        return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}],
                          ensure_ascii=False)

    def _finish(self, core: Core, end: int, exc_type, exc) -> None:
        if exc_type is not None and self._error_type is None:
            self._error_type = exc_type.__name__
        provider, model = core.providers(self._provider), core.models(self._model)
        error_label = None if self._error_type is None else core.error_types(self._error_type)
        first_chunk_s = (seconds(self._start_mono, self._first_chunk_mono)
                         if self._first_chunk_mono is not None else None)
        tokens_in, tokens_out = self._input_tokens, self._output_tokens
        if tokens_in is not None or tokens_out is not None:
            if provider != OTHER and model != OTHER:  # a price is for a known model only
                self.cost = core.prices.cost(self._provider, self._model, tokens_in or 0,
                                             tokens_out or 0)
        execution = self._execution()
        span = self._span
        # The call's own span is its histograms' exemplar (its trace and span id).
        core.metrics.llm_call(core.llm_operations(self._operation), provider, model,
                              error_label, seconds(self._start_mono, end), tokens_in, tokens_out,
                              first_chunk_s, getattr(execution, "_profile", OTHER), self.cost,
                              span=span.context if span is not None else None)
        if self.cost is not None and execution is not None:
            execution.spend_usd(self.cost)  # its budget in USD, if it has one
        if span is None:
            return
        if self._token is not None:
            detach(self._token)
        attrs = span.attributes
        if tokens_in is not None:
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = tokens_in
        if tokens_out is not None:
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = tokens_out
        if self._finish_reasons:
            attrs[GEN_AI_RESPONSE_FINISH_REASONS] = tuple(
                core.clean_text(r) for r in self._finish_reasons)
        if self._response_model:
            attrs[GEN_AI_RESPONSE_MODEL] = core.name(self._response_model)
        if first_chunk_s is not None:
            attrs[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk_s
        if self.cost is not None:
            attrs[CUGAR_LLM_COST] = self.cost
        if core.capture_mode in _ON_SPAN and self._output is not None:
            attrs[GEN_AI_OUTPUT_MESSAGES] = self._content(core, self._output, "assistant")
        if core.capture_mode in _ON_EVENT and (self._messages is not None
                                               or self._output is not None):
            details = {}
            if self._messages is not None:
                details[GEN_AI_INPUT_MESSAGES] = self._content(core, self._messages, "user")
            if self._output is not None:
                details[GEN_AI_OUTPUT_MESSAGES] = self._content(core, self._output, "assistant")
            span.add_event(DETAILS_EVENT, details)
        if self._error_type is not None:
            error_type = core.clean_text(self._error_type)
            attrs[ERROR_TYPE] = error_type
            if exc is not None:
                core.record_exception(span, exc)
            else:
                span.set_error(error_type)
        span.end(end)
