"""`python -m services.api` / `cugar-api`: serve the API with uvicorn."""

from __future__ import annotations

import argparse
import copy
import sys

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from otel.config import load_settings

from .settings import Settings
from .worker_metrics import MetricsDirError, worker_metrics_dir


def log_config() -> dict:
    """uvicorn's logging plus our `services.api` loggers (alert notifications log at INFO)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["services.api"] = {"handlers": ["default"], "level": "INFO",
                                         "propagate": False}
    return config


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
        if settings.telemetry:  # the app's setup_telemetry() would raise it in each worker
            load_settings(service_name=settings.service_name)
    except ValueError as exc:  # a bad CUGAR_* value, or otel.ConfigError for OTEL_*
        print(f"cugar-api: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="cugar-api", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="bind address (CUGAR_API_HOST)")
    parser.add_argument("--port", type=int, default=settings.port, help="port (CUGAR_API_PORT)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes; the API is stateless so any number agree, "
                             "and /metrics sums all workers")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    try:
        # Set before uvicorn spawns the workers: they read it when importing prometheus_client.
        with worker_metrics_dir(args.workers):
            uvicorn.run("services.api.app:create_app", factory=True, host=args.host,
                        port=args.port, workers=args.workers, log_level="info",
                        access_log=False, log_config=log_config())
    except MetricsDirError as exc:
        print(f"cugar-api: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
