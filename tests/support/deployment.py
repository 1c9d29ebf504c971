"""What the shipped configs of the scale-out topology name, for the tests of its deployments
(deploy/k8s/, docker-compose.scale.yml): every host:port they send to must be a Service there."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from services.stack.components import DOCKER_COMPOSE, REPO_ROOT
from services.stack.pipeline import ALERTMANAGER_CONFIG
from services.stack.scale import (AGENT_COLLECTOR_CONFIG, GATEWAY_SCRAPER_CONFIG, HASHRINGS,
                                  PROMETHEUS_AGENT_CONFIG)
from tests.support import require

GRAFANA_DATASOURCES = REPO_ROOT / "monitoring" / "grafana" / "provisioning" / "datasources"


def env_default(path: Path, variable: str) -> str:
    """The default of `${env:VARIABLE:-default}` in a config file."""
    return re.search(r"\$\{env:" + variable + r":-([^}]*)\}", path.read_text()).group(1)


def url_host_port(url: str) -> str:
    return re.match(r"https?://([^/]+)", url).group(1)


def config_destinations() -> list[str]:
    """host:port of every destination the shipped configs name: the agent-side collector's
    gateways, the hashring's ingestors, the Prometheus agents' remote write, the gateway telemetry
    scraper's targets and remote write, Grafana's datasources, Alertmanager's webhooks."""
    found = list(yaml.safe_load(env_default(AGENT_COLLECTOR_CONFIG,
                                            "CUGAR_COLLECTOR_GATEWAY_ENDPOINTS")))
    found += [e[k] for ring in json.loads(HASHRINGS.read_text())
              for e in ring["endpoints"] for k in ("address", "capnproto_address")]
    for path in (PROMETHEUS_AGENT_CONFIG, GATEWAY_SCRAPER_CONFIG):
        agent = yaml.safe_load(path.read_text())
        found += [url_host_port(rw["url"]) for rw in agent["remote_write"]]
        found += [t for job in agent.get("scrape_configs") or []
                  for static in job.get("static_configs", []) for t in static["targets"]]
    for datasources in sorted(GRAFANA_DATASOURCES.iterdir()):
        found += [url_host_port(d["url"])
                  for d in yaml.safe_load(datasources.read_text())["datasources"]]
    am = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    found += [url_host_port(h["url"]) for r in am["receivers"] for h in r.get("webhook_configs", [])]
    return found


def arg_destinations(args: list[str]) -> list[str]:
    """host:port of the Thanos flags that name a peer (--endpoint, --query, --alertmanagers.url)."""
    found = []
    for arg in args:
        if arg.startswith(("--endpoint=", "--query=")):
            found.append(arg.split("=", 1)[1])
        elif arg.startswith("--alertmanagers.url="):
            found.append(url_host_port(arg.split("=", 1)[1]))
    return found


def resolve_compose(compose_file: Path) -> dict:
    """A compose file as Debian's docker-compose resolves it (anchors, defaults, paths); fails
    the test when docker-compose rejects it."""
    binary = require(DOCKER_COMPOSE)
    check = subprocess.run([binary, "-f", compose_file, "config", "-q"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"docker-compose rejects {compose_file.name}:\n{check.stderr}"
    out = subprocess.run([binary, "-f", compose_file, "config"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return yaml.safe_load(out.stdout)
