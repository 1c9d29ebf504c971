"""The standard ports of `make run`, each moved to a free port only when it is busy."""

from __future__ import annotations

from collections.abc import Iterable

from services.stack.process import claim_port, free_port

# name (as Pipeline(ports=...) and Collector take it, plus "api") -> (standard port, what)
STANDARD_PORTS: dict[str, tuple[int, str]] = {
    "otlp_grpc": (4317, "collector OTLP gRPC"),
    "otlp_http": (4318, "collector OTLP HTTP"),
    "telemetry": (8888, "collector telemetry"),
    "exporter": (8889, "collector Prometheus exporter"),
    "health": (13133, "collector health check"),
    "prometheus": (9090, "Prometheus"),
    "alertmanager": (9093, "Alertmanager"),
    "jaeger_ui": (16686, "Jaeger UI"),
    "api": (8000, "API"),
}


def choose_ports(names: Iterable[str], any_ports: bool = False,
                 fixed: dict[str, int] | None = None) -> tuple[dict[str, int], list[str]]:
    """A port for each name: its standard port (or the one in `fixed`), or a free one when
    that is busy, or a free one for all with `any_ports`. Also one line per moved port:
    "port 9090 (Prometheus) is busy; using 12345"."""
    ports: dict[str, int] = {}
    moved: list[str] = []
    for name in names:
        wanted, what = STANDARD_PORTS[name]
        wanted = (fixed or {}).get(name, wanted)
        if any_ports or not wanted:
            ports[name] = free_port()
        elif claim_port(wanted):
            ports[name] = wanted
        else:
            ports[name] = free_port()
            moved.append(f"port {wanted} ({what}) is busy; using {ports[name]}")
    return ports, moved
