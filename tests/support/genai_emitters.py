"""Real third-party GenAI agents, run against tests/support/fake_openai.py, exporting OTLP.

    python -m tests.support.genai_emitters pydantic-ai --base-url URL --runs 3 --text "..."
    python -m tests.support.genai_emitters openai-agents --base-url URL --runs 3 --text "..."

No CUGAr code is involved: the process sets up a plain OpenTelemetry SDK exporting with the
standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), then runs the
framework's own instrumentation:

- pydantic-ai: PydanticAI's native instrumentation (its `Instrumentation` capability, defaults), model
  `OpenAIChatModel` on an OpenAI-compatible provider pointed at the fake (chat completions; the
  first run streamed);
- openai-agents: the OpenAI Agents SDK with the official
  opentelemetry-instrumentation-genai-openai-agents (workflow, agent and tool spans) and
  opentelemetry-instrumentation-genai-openai (the LLM calls), model on the Responses API.

Each run is one agent invocation with one tool (`lookup_account`) that the fake calls once,
then a text answer: 1 agent run, 1 tool call, 2 LLM calls. `--failing-tool-runs` adds runs
whose tool raises (pydantic-ai: the run fails), `--failing-model-runs` runs on a model the
fake refuses (HTTP 400: the LLM call and the run fail). `--text` goes into the prompt, hence
into the tool arguments the fake sends back (the PII canaries). `--repeat-for SECONDS` runs the
set again until that long has passed (tests/test_grafana_live.py's steady workload). Prints one
JSON line with what it ran; exit status 0 once everything is exported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

AGENT_NAME = "account_helper"
TOOL_NAME = "lookup_account"
MODEL = "fake-gpt-mini"
FAILING_MODEL = "fail-fake-gpt"


# What each emitter needs in its environment besides the OTLP settings: the OpenAI
# instrumentations record the newer span layout and content only when asked.
EMITTER_ENV = {
    "pydantic-ai": {},
    "openai-agents": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                      "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
}


def command(emitter: str, base_url: str, *, runs: int = 1, failing_tool_runs: int = 0,
            failing_model_runs: int = 0, text: str = "Ada", repeat_for: float = 0) -> list[str]:
    """The argv that runs `emitter` as a process of its own (one framework per process: each
    installs its instrumentation globally)."""
    return [sys.executable, "-m", "tests.support.genai_emitters", emitter, "--base-url", base_url,
            "--runs", str(runs), "--failing-tool-runs", str(failing_tool_runs),
            "--failing-model-runs", str(failing_model_runs), "--text", text,
            "--repeat-for", str(repeat_for)]


def environment(otlp_env: dict[str, str], emitter: str, service: str) -> dict[str, str]:
    """The process environment of `emitter` sending as `service` (OTEL_SERVICE_NAME) with
    `otlp_env` (a Pipeline's agent_env())."""
    return {**os.environ, **otlp_env, "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_SERVICE_NAME": service, **EMITTER_ENV[emitter]}


class ToolFailed(RuntimeError):
    pass


def setup() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


async def pydantic_ai(args) -> dict:
    from pydantic_ai import Agent
    from pydantic_ai.capabilities import Instrumentation
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=args.base_url, api_key="fake-key")
    failures = {"tool": 0}

    def make(model_name: str, failing_tool: bool) -> Agent:
        agent = Agent(OpenAIChatModel(model_name, provider=provider), name=AGENT_NAME,
                      instructions="Look the account up, then answer.",
                      capabilities=[Instrumentation()])

        @agent.tool_plain(name=TOOL_NAME, retries=0)
        def lookup(query: str) -> str:
            if failing_tool:
                failures["tool"] += 1
                raise ToolFailed("the account store is down")
            return f"account found for: {query}"

        return agent

    ok, failing_tool, failing_model = make(MODEL, False), make(MODEL, True), make(FAILING_MODEL, False)
    done = {"runs": 0, "failed_runs": 0}
    for agent, n in ((ok, args.runs), (failing_tool, args.failing_tool_runs),
                     (failing_model, args.failing_model_runs)):
        for i in range(n):
            prompt = f"Find the account of {args.text}"
            try:
                if agent is ok and i == 0:  # one streamed run (server-sent events, usage last)
                    async with agent.run_stream(prompt) as result:
                        await result.get_output()
                else:
                    await agent.run(prompt)
                done["runs"] += 1
            except Exception:  # noqa: BLE001 - the failure is what this run drives
                done["failed_runs"] += 1
    return done


async def openai_agents(args) -> dict:
    from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
    from openai import AsyncOpenAI
    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
    from opentelemetry.instrumentation.genai.openai_agents import OpenAIAgentsInstrumentor

    OpenAIInstrumentor().instrument()
    OpenAIAgentsInstrumentor().instrument(disable_openai_trace_export=True)
    client = AsyncOpenAI(base_url=args.base_url, api_key="fake-key", max_retries=0)

    @function_tool(name_override=TOOL_NAME)
    def lookup(query: str) -> str:
        """Look an account up."""
        return f"account found for: {query}"

    def make(model_name: str) -> Agent:
        return Agent(name=AGENT_NAME, instructions="Look the account up, then answer.",
                     model=OpenAIResponsesModel(model=model_name, openai_client=client), tools=[lookup])

    done = {"runs": 0, "failed_runs": 0}
    for agent, n in ((make(MODEL), args.runs), (make(FAILING_MODEL), args.failing_model_runs)):
        for _ in range(n):
            try:
                await Runner.run(agent, f"Find the account of {args.text}",
                                 run_config=RunConfig(workflow_name="account workflow"))
                done["runs"] += 1
            except Exception:  # noqa: BLE001
                done["failed_runs"] += 1
    return done


EMITTERS = {"pydantic-ai": pydantic_ai, "openai-agents": openai_agents}


async def _repeat(emitter, args) -> dict:
    deadline = time.monotonic() + args.repeat_for
    done = await emitter(args)
    while time.monotonic() < deadline:
        for key, value in (await emitter(args)).items():
            done[key] += value
    return done


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="genai_emitters")
    parser.add_argument("emitter", choices=sorted(EMITTERS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--failing-tool-runs", type=int, default=0)
    parser.add_argument("--failing-model-runs", type=int, default=0)
    parser.add_argument("--text", default="Ada")
    parser.add_argument("--repeat-for", type=float, default=0, metavar="SECONDS",
                        help="run the set of runs again and again until SECONDS have passed "
                             "(a steady workload for live dashboards); 0: once")
    args = parser.parse_args(argv)
    tracer_provider, meter_provider = setup()
    done = asyncio.run(_repeat(EMITTERS[args.emitter], args))
    tracer_provider.force_flush(30_000)
    meter_provider.force_flush(30_000)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    print(json.dumps({"emitter": args.emitter, **done}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
