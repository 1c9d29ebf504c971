"""A simulated CUGAr sales agent: the workload that drives the telemetry pipeline.

`python -m services.agent run --executions N` (or `--rate R --duration D`) plays executions
through `otel.setup_telemetry()` and prints its own ground-truth summary as one JSON object.
"""
