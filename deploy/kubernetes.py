"""The scale-out topology of docs/scaling.md as Kubernetes manifests (docs/kubernetes.md).

Every config a pod reads is a ConfigMap holding the repository's file verbatim: the very files
the loopback tests run (otel-collector-config.yaml for the gateways, deploy/scale/* for the
agent-side collectors, the Prometheus agents, the gateway telemetry scraper and the receive
hashring, monitoring/prometheus/rules
for Thanos rule, monitoring/alertmanager, monitoring/jaeger, monitoring/grafana). The flags are
the harness' own (services/stack/scale.py, services/stack/pipeline.py), and the hostnames those
files name (gateway-0, thanos-receive-ingestor-0, thanos-receive-router, prometheus, jaeger,
alertmanager, api) are Services here, so no file needs a Kubernetes-only copy.

    agents ──OTLP──> agent-collector (DaemonSet; Service with internalTrafficPolicy: Local)
      ──OTLP, by service.name──> gateway-N (StatefulSet: collector + Prometheus agent sidecar)
      ──remote write──> thanos-receive-router (Deployment) ──> thanos-receive-ingestor-N
      (StatefulSet, replication factor 3) <── thanos-query ("prometheus") <── thanos-rule
      ──> alertmanager ──> api;  gateways ──traces──> jaeger;  grafana ──> prometheus, jaeger
    gateway-telemetry-scraper (Deployment) ──scrapes──> gateway-N:8888; ──remote write──> router

`python -m deploy` writes them to deploy/k8s/; `python -m deploy --check` fails when they differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from services.stack.components import REPO_ROOT, pinned_versions
from services.stack.pipeline import ALERTMANAGER_CONFIG, ALERTMANAGER_FLAGS
from services.stack.scale import (AGENT_COLLECTOR_CONFIG, EXPERIMENTAL_FUNCTIONS,
                                  EXTENDED_RANGE_SELECTORS, GATEWAY_SCRAPER_CONFIG,
                                  GATEWAY_SCRAPER_FLAGS, HASHRINGS, OUT_OF_ORDER_WINDOW,
                                  PROMETHEUS_AGENT_CONFIG, PROMETHEUS_AGENT_FLAGS,
                                  RECEIVE_REPLICA_LABEL, REPLICATION_FACTOR, RULE_REPLICA_LABEL)

OUT_DIR = REPO_ROOT / "deploy" / "k8s"
NAMESPACE = "cugar"
GATEWAY_CONFIG = REPO_ROOT / "otel-collector-config.yaml"
RULES_DIR = REPO_ROOT / "monitoring" / "prometheus" / "rules"
JAEGER_CONFIG = REPO_ROOT / "monitoring" / "jaeger" / "config.yaml"
GRAFANA_DIR = REPO_ROOT / "monitoring" / "grafana"
GATEWAYS = 2
ROUTERS = 2
EVALUATION_INTERVAL = "15s"  # monitoring/prometheus/prometheus.yml's

PINS = pinned_versions()
# Our own images are the ones docker-compose.yml builds (docker/*.Dockerfile); the others are the
# releases components/versions.env pins, the ones the tests run.
IMAGES = {
    "collector": "cugar/otelcol:0.1.0",
    "python": "cugar/python:0.1.0",
    "thanos": f"cugar/thanos:{PINS['THANOS_VERSION']}",
    "prometheus": f"prom/prometheus:v{PINS['PROMETHEUS_VERSION']}",
    "alertmanager": f"prom/alertmanager:v{PINS['ALERTMANAGER_VERSION']}",
    "jaeger": f"jaegertracing/jaeger:{PINS['JAEGER_VERSION']}",
    "grafana": f"grafana/grafana:{PINS['GRAFANA_VERSION']}",
}

Manifest = dict[str, Any]


# --- building blocks ---------------------------------------------------------------------------
def meta(name: str, component: str | None = None) -> dict:
    return {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "cugar",
                       "app.kubernetes.io/name": component or name}}


def selector(component: str) -> dict:
    return {"app.kubernetes.io/part-of": "cugar", "app.kubernetes.io/name": component}


def config_map(name: str, files: list[Path]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name),
            "data": {f.name: f.read_text() for f in files}}


def service(name: str, component: str, ports: dict[str, int], *, headless: bool = False,
            pod: str | None = None, local: bool = False) -> Manifest:
    spec: dict[str, Any] = {
        "selector": {**selector(component),
                     **({"statefulset.kubernetes.io/pod-name": pod} if pod else {})},
        "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
                  for n, p in ports.items()]}
    if headless:
        spec["clusterIP"] = "None"
    if local:
        spec["internalTrafficPolicy"] = "Local"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, component), "spec": spec}


def http_probe(port: str, path: str) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 10, "timeoutSeconds": 3,
            "failureThreshold": 6}


def exec_probe(url: str) -> dict:
    """For a process listening on the pod's loopback only (kubelet's httpGet goes to the pod IP)."""
    return {"exec": {"command": ["wget", "-q", "-O", "/dev/null", url]}, "periodSeconds": 10,
            "timeoutSeconds": 3, "failureThreshold": 6}


def container(name: str, image: str, args: list[str], *, ports: dict[str, int], probe: dict,
              cpu: str, memory: str, env: dict[str, Any] | None = None,
              mounts: dict[str, str] | None = None, **extra: Any) -> dict:
    spec: dict[str, Any] = {"name": name, "image": IMAGES[image], **extra}
    if args:
        spec["args"] = args
    if env:
        spec["env"] = [{"name": k, **({"value": v} if isinstance(v, str) else v)}
                       for k, v in env.items()]
    if ports:
        spec["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"}
                         for n, p in ports.items()]
    spec["readinessProbe"] = probe
    spec["livenessProbe"] = {**probe, "initialDelaySeconds": 30}
    spec["resources"] = {"requests": {"cpu": cpu, "memory": memory},
                         "limits": {"memory": memory}}
    spec["securityContext"] = {"allowPrivilegeEscalation": False,
                               "capabilities": {"drop": ["ALL"]}}
    if mounts:
        spec["volumeMounts"] = [{"name": v, "mountPath": p, **({"readOnly": True}
                                 if not v.endswith("-data") else {})} for v, p in mounts.items()]
    return spec


def pod_spec(containers: list[dict], volumes: dict[str, dict], fs_group: int | None = None) -> dict:
    spec: dict[str, Any] = {"automountServiceAccountToken": False, "containers": containers}
    if fs_group is not None:  # the non-root user of the image that writes the volume claim
        spec["securityContext"] = {"fsGroup": fs_group}
    if volumes:
        spec["volumes"] = [{"name": n, **v} for n, v in volumes.items()]
    return spec


def from_config_map(name: str) -> dict:
    return {"configMap": {"name": name}}


EMPTY = {"emptyDir": {}}
NOBODY = 65534  # prom/prometheus runs as nobody
THANOS_USER = 10001  # docker/thanos.Dockerfile
POD_NAME = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
API_KEY = {"valueFrom": {"secretKeyRef": {"name": "cugar-api-key", "key": "api-key",
                                          "optional": True}}}


def workload(kind: str, name: str, template: dict, *, replicas: int | None = None,
             service_name: str | None = None, claims: dict[str, str] | None = None) -> Manifest:
    spec: dict[str, Any] = {"selector": {"matchLabels": selector(name)}}
    if replicas is not None:
        spec["replicas"] = replicas
    if service_name:
        spec["serviceName"] = service_name
        spec["podManagementPolicy"] = "Parallel"
    spec["template"] = {"metadata": {"labels": selector(name)}, "spec": template}
    if claims:
        spec["volumeClaimTemplates"] = [
            {"metadata": {"name": claim},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}
            for claim, size in claims.items()]
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta(name), "spec": spec}


def with_api_key(binary: str, key_file: str) -> list[str]:
    """The compose entrypoint: writes the api key (Secret cugar-api-key, optional: empty when
    absent) where the config reads it, then runs the image's binary with `args`."""
    return ["/bin/sh", "-c", f"umask 077 && printf '%s' \"$CUGAR_API_KEY\" > {key_file} && "
            f"exec {binary} \"$@\"", binary.rsplit("/", 1)[1]]


# --- the topology ------------------------------------------------------------------------------
COLLECTOR_LISTEN = {  # inside a pod: reachable through its Service (the files default to loopback)
    "CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT": "0.0.0.0:4317",
    "CUGAR_COLLECTOR_OTLP_HTTP_ENDPOINT": "0.0.0.0:4318",
    "CUGAR_COLLECTOR_HEALTH_ENDPOINT": "0.0.0.0:13133",
    "CUGAR_COLLECTOR_TELEMETRY_HOST": "0.0.0.0",
    "CUGAR_COLLECTOR_QUEUE_DIR": "/var/lib/otelcol/file_storage",
}
COLLECTOR_PORTS = {"otlp-grpc": 4317, "otlp-http": 4318, "health": 13133, "telemetry": 8888}


def ingestor_names() -> list[str]:
    """The ingestors deploy/scale/hashrings.json names (each a per-pod Service)."""
    return [e["address"].split(":")[0] for e in json.loads(HASHRINGS.read_text())[0]["endpoints"]]


def agent_collector() -> list[Manifest]:
    c = container("collector", "collector", ["--config", f"/etc/cugar/{AGENT_COLLECTOR_CONFIG.name}"],
                  ports=COLLECTOR_PORTS, probe=http_probe("health", "/"), cpu="100m",
                  memory="384Mi", env=COLLECTOR_LISTEN,
                  mounts={"config": "/etc/cugar", "queue-data": "/var/lib/otelcol/file_storage"})
    return [
        config_map("agent-collector-config", [AGENT_COLLECTOR_CONFIG]),
        workload("DaemonSet", "agent-collector", pod_spec([c], {
            "config": from_config_map("agent-collector-config"), "queue-data": EMPTY})),
        # Agents send to the collector on their own node.
        service("agent-collector", "agent-collector", COLLECTOR_PORTS, local=True),
    ]


def prometheus_agent(config: Path, flags: tuple[str, ...], config_volume: str, *, cpu: str,
                     memory: str) -> dict:
    """Prometheus in agent mode listening on the pod's loopback only (nothing outside the pod
    pushes to it), `config` from the volume `config_volume`, its WAL in the volume wal-data."""
    return container(
        "prometheus-agent", "prometheus",
        [f"--config.file=/etc/prometheus/{config.name}", "--storage.agent.path=/prometheus",
         "--web.listen-address=127.0.0.1:9090", *flags],
        ports={}, probe=exec_probe("http://127.0.0.1:9090/-/ready"), cpu=cpu, memory=memory,
        mounts={config_volume: "/etc/prometheus", "wal-data": "/prometheus"})


def gateway() -> list[Manifest]:
    collector = container(
        "collector", "collector", ["--config", f"/etc/cugar/{GATEWAY_CONFIG.name}"],
        ports=COLLECTOR_PORTS, probe=http_probe("health", "/"), cpu="250m", memory="768Mi",
        env={**COLLECTOR_LISTEN, "CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT": "jaeger:4317",
             # the Prometheus agent beside it, as services/stack/scale_topology.py wires them
             "CUGAR_COLLECTOR_PROMETHEUS_OTLP_URL": "http://127.0.0.1:9090/api/v1/otlp/v1/metrics",
             # as docker-compose.yml: the memory_limiter's limit and GOMEMLIMIT at 80 % of it
             "CUGAR_COLLECTOR_MEMORY_LIMIT_MIB": "512", "GOMEMLIMIT": "409MiB"},
        mounts={"config": "/etc/cugar", "queue-data": "/var/lib/otelcol/file_storage"})
    agent = prometheus_agent(PROMETHEUS_AGENT_CONFIG, PROMETHEUS_AGENT_FLAGS, "agent-config",
                             cpu="100m", memory="512Mi")
    # OTLP for the agent-side collectors, telemetry for the gateway telemetry scraper
    per_pod = [service(f"gateway-{i}", "gateway", {"otlp-grpc": 4317, "telemetry": 8888},
                       pod=f"gateway-{i}") for i in range(GATEWAYS)]
    return [
        config_map("gateway-collector-config", [GATEWAY_CONFIG]),
        config_map("prometheus-agent-config", [PROMETHEUS_AGENT_CONFIG]),
        workload("StatefulSet", "gateway", pod_spec([collector, agent], {
            "config": from_config_map("gateway-collector-config"),
            "agent-config": from_config_map("prometheus-agent-config"), "queue-data": EMPTY},
            fs_group=NOBODY),
            replicas=GATEWAYS, service_name="gateway", claims={"wal-data": "10Gi"}),
        service("gateway", "gateway", COLLECTOR_PORTS, headless=True),
        # deploy/scale/agent-collector.yaml routes to gateway-0:4317, gateway-1:4317, and
        # deploy/scale/gateway-telemetry-scraper.yml scrapes gateway-0:8888, gateway-1:8888
        *per_pod,
    ]


def gateway_telemetry_scraper() -> list[Manifest]:
    """One Prometheus agent scraping every gateway's telemetry through its per-pod Service (static
    targets: no Kubernetes API access, no service-account token); its WAL on an emptyDir (a
    rescheduled pod loses at most the self-metrics not yet written to the store)."""
    scraper = prometheus_agent(GATEWAY_SCRAPER_CONFIG, GATEWAY_SCRAPER_FLAGS, "config",
                               cpu="50m", memory="256Mi")
    deployment = workload("Deployment", "gateway-telemetry-scraper", pod_spec([scraper], {
        "config": from_config_map("gateway-telemetry-scraper-config"), "wal-data": EMPTY}),
        replicas=1)
    # one scraper at a time, also during a rollout: two would write the same series
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    return [config_map("gateway-telemetry-scraper-config", [GATEWAY_SCRAPER_CONFIG]), deployment]


THANOS_PROBE = http_probe("http", "/-/ready")


def receive() -> list[Manifest]:
    ingestors = ingestor_names()
    ingestor = container(
        "thanos", "thanos",
        ["receive", "--grpc-address=0.0.0.0:10901", "--http-address=0.0.0.0:10902",
         "--receive.capnproto-address=0.0.0.0:19391", "--remote-write.address=127.0.0.1:19291",
         f'--label={RECEIVE_REPLICA_LABEL}="$(POD_NAME)"', "--tsdb.path=/var/thanos/receive",
         f"--tsdb.out-of-order.time-window={OUT_OF_ORDER_WINDOW}"],
        ports={"grpc": 10901, "http": 10902, "capnproto": 19391}, probe=THANOS_PROBE, cpu="250m",
        memory="1Gi", env={"POD_NAME": POD_NAME}, mounts={"tsdb-data": "/var/thanos/receive"})
    router = container(
        "thanos", "thanos",
        ["receive", "--grpc-address=127.0.0.1:10901", "--http-address=0.0.0.0:10902",
         "--receive.capnproto-address=127.0.0.1:19391", "--remote-write.address=0.0.0.0:19291",
         f'--label={RECEIVE_REPLICA_LABEL}="$(POD_NAME)"',
         f"--receive.hashrings-file=/etc/thanos/{HASHRINGS.name}",
         f"--receive.replication-factor={REPLICATION_FACTOR}"],
        ports={"http": 10902, "remote-write": 19291}, probe=THANOS_PROBE, cpu="250m",
        memory="512Mi", env={"POD_NAME": POD_NAME}, mounts={"hashrings": "/etc/thanos"})
    ingestor_ports = {"grpc": 10901, "http": 10902, "capnproto": 19391}
    return [
        config_map("thanos-hashrings", [HASHRINGS]),
        workload("StatefulSet", "thanos-receive-ingestor", pod_spec([ingestor], {}, THANOS_USER),
                 replicas=len(ingestors), service_name="thanos-receive-ingestor",
                 claims={"tsdb-data": "20Gi"}),
        service("thanos-receive-ingestor", "thanos-receive-ingestor", ingestor_ports,
                headless=True),
        # deploy/scale/hashrings.json names each ingestor: thanos-receive-ingestor-0:10901, ...
        *(service(name, "thanos-receive-ingestor", ingestor_ports, pod=name) for name in ingestors),
        workload("Deployment", "thanos-receive-router", pod_spec([router], {
            "hashrings": from_config_map("thanos-hashrings")}), replicas=ROUTERS),
        # deploy/scale/prometheus-agent.yml writes to thanos-receive-router:19291
        service("thanos-receive-router", "thanos-receive-router",
                {"http": 10902, "remote-write": 19291}),
    ]


def query_and_rule() -> list[Manifest]:
    rules = sorted(RULES_DIR.glob("*.yml"))
    query = container(
        "thanos", "thanos",
        ["query", "--http-address=0.0.0.0:9090", "--grpc-address=127.0.0.1:10901",
         *(f"--endpoint={name}:10901" for name in ingestor_names()), "--endpoint=thanos-rule:10901",
         f"--query.replica-label={RECEIVE_REPLICA_LABEL}",
         f"--query.replica-label={RULE_REPLICA_LABEL}", EXTENDED_RANGE_SELECTORS,
         EXPERIMENTAL_FUNCTIONS],
        ports={"http": 9090}, probe=THANOS_PROBE, cpu="250m", memory="1Gi")
    rule = container(
        "thanos", "thanos",
        ["rule", "--grpc-address=0.0.0.0:10901", "--http-address=0.0.0.0:10902",
         "--data-dir=/var/thanos/rule", "--rule-file=/etc/thanos/rules/*.yml",
         "--query=prometheus:9090", "--alertmanagers.url=http://alertmanager:9093",
         f"--eval-interval={EVALUATION_INTERVAL}", f"--resend-delay={EVALUATION_INTERVAL}",
         f'--label={RULE_REPLICA_LABEL}="$(POD_NAME)"', f"--alert.label-drop={RULE_REPLICA_LABEL}",
         EXTENDED_RANGE_SELECTORS],
        ports={"grpc": 10901, "http": 10902}, probe=THANOS_PROBE, cpu="250m", memory="512Mi",
        env={"POD_NAME": POD_NAME}, mounts={"rules": "/etc/thanos/rules", "rule-data": "/var/thanos/rule"})
    return [
        workload("Deployment", "thanos-query", pod_spec([query], {}), replicas=1),
        # The stack's PromQL endpoint, under the name the Grafana datasource and the api use.
        service("prometheus", "thanos-query", {"http": 9090}),
        config_map("prometheus-rules", rules),
        workload("StatefulSet", "thanos-rule", pod_spec([rule], {
            "rules": from_config_map("prometheus-rules")}, THANOS_USER), replicas=1,
            service_name="thanos-rule", claims={"rule-data": "1Gi"}),
        service("thanos-rule", "thanos-rule", {"grpc": 10901, "http": 10902}),
    ]


def alerting_and_ui() -> list[Manifest]:
    am = container(
        "alertmanager", "alertmanager",
        [f"--config.file=/etc/alertmanager/{ALERTMANAGER_CONFIG.name}",
         "--storage.path=/alertmanager", "--cluster.listen-address=", *ALERTMANAGER_FLAGS],
        command=with_api_key("/bin/alertmanager", "/alertmanager/cugar-api-key"),
        ports={"http": 9093}, probe=http_probe("http", "/-/ready"), cpu="50m", memory="128Mi",
        env={"CUGAR_API_KEY": API_KEY},
        mounts={"config": "/etc/alertmanager", "alertmanager-data": "/alertmanager"})
    jaeger_ports = {"otlp-grpc": 4317, "query-http": 16686, "health": 13133}
    jaeger = container(
        "jaeger", "jaeger", ["--config", f"/etc/jaeger/{JAEGER_CONFIG.name}"],
        ports=jaeger_ports, probe=http_probe("health", "/status"), cpu="100m", memory="512Mi",
        env={"CUGAR_JAEGER_OTLP_GRPC_ENDPOINT": "0.0.0.0:4317",
             "CUGAR_JAEGER_QUERY_HTTP_ENDPOINT": "0.0.0.0:16686",
             "CUGAR_JAEGER_HEALTH_ENDPOINT": "0.0.0.0:13133"},
        mounts={"config": "/etc/jaeger"})
    grafana = container(
        "grafana", "grafana", [], ports={"http": 3000}, probe=http_probe("http", "/api/health"),
        cpu="100m", memory="256Mi",
        env={"GF_SECURITY_ADMIN_PASSWORD": {"valueFrom": {"secretKeyRef": {
                 "name": "grafana-admin", "key": "password", "optional": True}}},
             "GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
             "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH":
                 "/var/lib/grafana/dashboards/cugar-golden-signals.json",
             "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false"},
        mounts={"datasources": "/etc/grafana/provisioning/datasources",
                "providers": "/etc/grafana/provisioning/dashboards",
                "dashboards": "/var/lib/grafana/dashboards", "grafana-data": "/var/lib/grafana"})
    api = container(
        "api", "python", ["python", "-m", "services.api", "--host", "0.0.0.0", "--port", "8000",
                          "--workers", "2"],
        ports={"http": 8000}, probe=http_probe("http", "/health"), cpu="250m", memory="512Mi",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://agent-collector:4317",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "cugar-api",
             "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=kubernetes",
             "CUGAR_PROMETHEUS_URL": "http://prometheus:9090",
             "CUGAR_COLLECTOR_HEALTH_URL": "http://agent-collector:13133/",
             "CUGAR_TRACE_BACKEND_URL": "http://jaeger:16686", "CUGAR_API_KEY": API_KEY})
    provisioning = GRAFANA_DIR / "provisioning"
    return [
        config_map("alertmanager-config", [ALERTMANAGER_CONFIG]),
        workload("Deployment", "alertmanager", pod_spec([am], {
            "config": from_config_map("alertmanager-config"), "alertmanager-data": EMPTY}),
            replicas=1),
        service("alertmanager", "alertmanager", {"http": 9093}),
        config_map("jaeger-config", [JAEGER_CONFIG]),
        workload("Deployment", "jaeger", pod_spec([jaeger], {
            "config": from_config_map("jaeger-config")}), replicas=1),
        service("jaeger", "jaeger", jaeger_ports),
        config_map("grafana-datasources", sorted((provisioning / "datasources").iterdir())),
        config_map("grafana-dashboard-providers", sorted((provisioning / "dashboards").iterdir())),
        config_map("grafana-dashboards", sorted((GRAFANA_DIR / "dashboards").glob("*.json"))),
        workload("Deployment", "grafana", pod_spec([grafana], {
            "datasources": from_config_map("grafana-datasources"),
            "providers": from_config_map("grafana-dashboard-providers"),
            "dashboards": from_config_map("grafana-dashboards"), "grafana-data": EMPTY}),
            replicas=1),
        service("grafana", "grafana", {"http": 3000}),
        workload("Deployment", "api", pod_spec([api], {}), replicas=1),
        service("api", "api", {"http": 8000}),
    ]


def manifests() -> list[Manifest]:
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "cugar"}}}
    return [namespace, *agent_collector(), *gateway(), *gateway_telemetry_scraper(), *receive(),
            *query_and_rule(), *alerting_and_ui()]


# --- files -------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = ("# Generated by `python -m deploy` (deploy/kubernetes.py) from the repository's configs;\n"
          "# do not edit: change the source file and regenerate (docs/kubernetes.md).\n")


def file_name(manifest: Manifest) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def render() -> dict[str, str]:
    files = {}
    for manifest in manifests():
        name = file_name(manifest)
        assert name not in files, f"two manifests named {name}"
        files[name] = HEADER + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100)
    return files


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Files in out_dir that differ from what the configs generate (or are missing, or extra)."""
    want = render()
    have = {p.name for p in out_dir.glob("*.yaml")} if out_dir.is_dir() else set()
    return sorted(n for n in want.keys() | have
                  if n not in have or n not in want or (out_dir / n).read_text() != want[n])


def write(out_dir: Path = OUT_DIR) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    want = render()
    for old in out_dir.glob("*.yaml"):
        if old.name not in want:
            old.unlink()
    for name, text in want.items():
        (out_dir / name).write_text(text)
    return sorted(want)
