"""CUGAr telemetry library: OpenTelemetry setup and an agent-facing instrumentation API."""
