"""docker-compose.scale.yml, the scale-out stack on one Docker host: accepted by a real compose
implementation, every service pinned and health-checked, mounting the very config files the
loopback test of the topology runs, with the harness' flags, and every host the configs name
is one of its services."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from services.stack import components
from services.stack.pipeline import ALERTMANAGER_CONFIG, ALERTMANAGER_FLAGS
from services.stack.scale import (AGENT_COLLECTOR_CONFIG, EXPERIMENTAL_FUNCTIONS,
                                  EXTENDED_RANGE_SELECTORS, GATEWAY_SCRAPER_CONFIG,
                                  GATEWAY_SCRAPER_FLAGS, HASHRINGS, OUT_OF_ORDER_WINDOW,
                                  PROMETHEUS_AGENT_CONFIG, PROMETHEUS_AGENT_FLAGS,
                                  REPLICATION_FACTOR)
from tests.support.deployment import (arg_destinations, config_destinations, resolve_compose,
                                      url_host_port)

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.scale.yml"
MAIN = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
PINS = components.pinned_versions()
INGESTORS = [e["address"].split(":")[0] for e in json.loads(HASHRINGS.read_text())[0]["endpoints"]]


@pytest.fixture(scope="module")
def resolved() -> dict:
    return resolve_compose(COMPOSE_FILE)["services"]


def expected_image(service: str) -> tuple[str, str | None]:
    """(image, Dockerfile it is built from, or None for a pinned upstream release)."""
    if service == "agent-collector" or re.fullmatch(r"gateway-\d+", service):
        return MAIN["otel-collector"]["image"], "docker/collector.Dockerfile"
    if service.startswith("thanos-"):
        return f"cugar/thanos:{PINS['THANOS_VERSION']}", "docker/thanos.Dockerfile"
    if service in ("api", "agent"):
        return MAIN["api"]["image"], "docker/python.Dockerfile"
    return {"alertmanager": f"prom/alertmanager:v{PINS['ALERTMANAGER_VERSION']}",
            "jaeger": f"jaegertracing/jaeger:{PINS['JAEGER_VERSION']}",
            "grafana": f"grafana/grafana:{PINS['GRAFANA_VERSION']}"}.get(
        service, f"prom/prometheus:v{PINS['PROMETHEUS_VERSION']}"), None


def test_the_topology_is_complete(resolved: dict) -> None:
    assert set(resolved) == {
        "agent-collector", "gateway-0", "gateway-1", "prometheus-agent-0", "prometheus-agent-1",
        "gateway-telemetry-scraper",
        "thanos-receive-router-0", "thanos-receive-router-1", *INGESTORS, "thanos-query",
        "thanos-rule", "alertmanager", "jaeger", "grafana", "api", "agent"}


def test_images_are_the_pinned_releases_and_our_builds(resolved: dict) -> None:
    for name, service in resolved.items():
        image, dockerfile = expected_image(name)
        assert service["image"] == image, name
        if dockerfile:
            assert Path(service["build"]["context"]) == REPO, name
            assert service["build"]["dockerfile"] == dockerfile, name
        else:
            assert "build" not in service, name


def test_every_service_has_a_real_healthcheck_and_waits_for_health(resolved: dict) -> None:
    for name, service in resolved.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries") and not check.get("disable"), name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in resolved, f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"


def binds(service: dict) -> dict[str, Path]:
    """Container path -> repository path of every bind mount."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if source.startswith(("/", ".")):
                out[target] = Path(source)
        elif volume["type"] == "bind":
            out[volume["target"]] = Path(volume["source"])
    return out


def argv(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else command


def config_read(service: dict) -> list[str]:
    """The config paths a service's program reads, from its flags."""
    args = argv(service)
    paths = [a.split("=", 1)[1] for a in args if a.startswith(
        ("--config.file=", "--receive.hashrings-file="))]
    paths += [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    paths += [a.split("=", 1)[1].rsplit("/", 1)[0] for a in args if a.startswith("--rule-file=")]
    return paths


# The file (or directory) each service must read: the ones the loopback test runs.
CONFIGS = {
    "agent-collector": AGENT_COLLECTOR_CONFIG, "gateway-0": REPO / "otel-collector-config.yaml",
    "gateway-1": REPO / "otel-collector-config.yaml", "prometheus-agent-0": PROMETHEUS_AGENT_CONFIG,
    "prometheus-agent-1": PROMETHEUS_AGENT_CONFIG, "thanos-receive-router-0": HASHRINGS,
    "gateway-telemetry-scraper": GATEWAY_SCRAPER_CONFIG,
    "thanos-receive-router-1": HASHRINGS, "thanos-rule": REPO / "monitoring" / "prometheus" / "rules",
    "alertmanager": ALERTMANAGER_CONFIG, "jaeger": REPO / "monitoring" / "jaeger" / "config.yaml",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_services_read_the_configs_the_tests_run(resolved: dict, name: str) -> None:
    service = resolved[name]
    (path,) = config_read(service)
    assert binds(service)[path] == CONFIGS[name]


def test_grafana_mounts_the_repositorys_provisioning_and_dashboards(resolved: dict) -> None:
    mounts = binds(resolved["grafana"])
    assert mounts["/etc/grafana/provisioning"] == REPO / "monitoring" / "grafana" / "provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == REPO / "monitoring" / "grafana" / "dashboards"


def test_every_bind_mount_is_in_the_repository(resolved: dict) -> None:
    for name, service in resolved.items():
        for source in binds(service).values():
            assert source.exists() and REPO in source.parents, f"{name} mounts {source}"


def test_the_flags_are_the_harness_flags(resolved: dict) -> None:
    for i in range(2):
        assert set(PROMETHEUS_AGENT_FLAGS) <= set(argv(resolved[f"prometheus-agent-{i}"]))
        assert (f"--receive.replication-factor={REPLICATION_FACTOR}"
                in argv(resolved[f"thanos-receive-router-{i}"]))
    assert set(GATEWAY_SCRAPER_FLAGS) <= set(argv(resolved["gateway-telemetry-scraper"]))
    for ingestor in INGESTORS:
        assert f"--tsdb.out-of-order.time-window={OUT_OF_ORDER_WINDOW}" in argv(resolved[ingestor])
    for name in ("thanos-query", "thanos-rule"):
        assert EXTENDED_RANGE_SELECTORS in argv(resolved[name])
    assert EXPERIMENTAL_FUNCTIONS in argv(resolved["thanos-query"])  # the api's queries
    assert set(ALERTMANAGER_FLAGS) <= set(argv(resolved["alertmanager"]))
    replicas = [re.search(r'--label=\w+="?([\w-]+)', a).group(1)
                for s in resolved.values() for a in argv(s) if a.startswith("--label=")]
    assert len(replicas) == len(set(replicas)), f"replica labels repeat: {replicas}"


def _names(resolved: dict) -> set[str]:
    names = set(resolved)
    for service in resolved.values():
        for network in (service.get("networks") or {}).values():
            names |= set((network or {}).get("aliases") or [])
    return names


def test_every_host_the_configs_name_is_a_service(resolved: dict) -> None:
    found = config_destinations()
    for service in resolved.values():
        found += arg_destinations(argv(service))
        found += [url_host_port(v) for v in (service.get("environment") or {}).values()
                  if str(v).startswith("http://")]
    assert len(found) >= 20
    names = _names(resolved)
    for host_port in found:
        assert host_port.rsplit(":", 1)[0] in names, host_port


def test_publishes_on_loopback_only(resolved: dict) -> None:
    for name, service in resolved.items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
