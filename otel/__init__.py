"""CUGAr telemetry library: OpenTelemetry setup and an agent-facing instrumentation API.

    from otel import setup_telemetry
    tel = setup_telemetry(service_name="cugar-sales")
    with tel.agent.execution(profile="smb", agent_name="cugar-sales") as ex:
        with ex.tool_call("crm_lookup", domain="intelligence") as call:
            ...
    tel.shutdown()

Only a bad OTEL_* / CUGAR_* value raises, at setup (`ConfigError`, naming the variable).
Nothing else raises for telemetry problems or bad arguments (each entry point's docstring says
what becomes of them); exceptions of the agent's own code propagate unchanged.
"""

from otel.agent import AgentTelemetry, Approval, Execution, LLMCall, ToolCall
from otel.config import ConfigError
from otel.setup import Telemetry, create_telemetry, setup_telemetry

__all__ = [
    "AgentTelemetry", "Approval", "ConfigError", "Execution", "LLMCall", "Telemetry", "ToolCall",
    "create_telemetry",
    "setup_telemetry",
]
