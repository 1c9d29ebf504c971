"""docker-compose.yml: accepted by a real compose implementation, every service pinned and
health-checked, and wired to the very config files the tests run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from services.stack import components, pipeline
from services.stack.collector import COLLECTOR_CONFIG
from services.stack.scale import AGENT_COLLECTOR_CONFIG
from tests.support import require
from tests.support.deployment import resolve_compose

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
EXPECTED_SERVICES = {"api", "agent", "otel-collector", "prometheus", "alertmanager", "grafana",
                     "jaeger"}
OUR_IMAGES = {"otel-collector": "docker/collector.Dockerfile",
              "api": "docker/python.Dockerfile", "agent": "docker/python.Dockerfile"}


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The compose file as docker-compose itself resolves it (anchors, defaults, paths)."""
    return resolve_compose(COMPOSE_FILE)


PINS = components.pinned_versions()
# compose service -> the image components/versions.env pins for it (the tests start the same)
PINNED_IMAGES = {
    "prometheus": f"prom/prometheus:v{PINS['PROMETHEUS_VERSION']}",
    "alertmanager": f"prom/alertmanager:v{PINS['ALERTMANAGER_VERSION']}",
    "jaeger": f"jaegertracing/jaeger:{PINS['JAEGER_VERSION']}",
    "grafana": f"grafana/grafana:{PINS['GRAFANA_VERSION']}",
}


@pytest.mark.parametrize("service", PINNED_IMAGES)
def test_compose_ships_the_pinned_releases(resolved: dict, service: str) -> None:
    assert resolved["services"][service]["image"] == PINNED_IMAGES[service]


def test_compose_starts_prometheus_with_the_flags_the_tests_use(resolved: dict) -> None:
    command = resolved["services"]["prometheus"]["command"]
    assert set(pipeline.PROMETHEUS_FLAGS) <= set(command)


def test_compose_starts_alertmanager_with_the_flags_the_tests_use(resolved: dict) -> None:
    command = resolved["services"]["alertmanager"]["command"]
    assert set(pipeline.ALERTMANAGER_FLAGS) <= set(command)


def test_all_services_present(resolved: dict) -> None:
    assert set(resolved["services"]) == EXPECTED_SERVICES


def test_every_image_is_pinned(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        image = service.get("image", "")
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: unpinned {image!r}"
        if name in OUR_IMAGES:
            assert Path(service["build"]["context"]) == REPO
            assert service["build"]["dockerfile"] == OUR_IMAGES[name]


def test_every_service_has_a_real_healthcheck(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name
        assert check.get("interval") and check.get("retries"), name


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            kind = "bind" if source.startswith(("/", ".")) else "volume"
        else:
            source, target, kind = volume["source"], volume["target"], volume["type"]
        if kind == "bind":
            mounts.append((Path(source), target))
    return mounts


def test_bind_mounts_exist_in_the_repository(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source}, which is not in the repository"
            assert REPO in source.parents, f"{name} mounts {source} from outside the repository"


def mount_source(resolved: dict, service: str, target: str) -> Path:
    for source, mounted_at in bind_mounts(resolved["services"][service]):
        if mounted_at == target:
            return source
    raise AssertionError(f"{service} does not mount anything at {target}")


def test_the_configs_the_tests_use_are_the_ones_compose_mounts(resolved: dict) -> None:
    collector = resolved["services"]["otel-collector"]
    config_arg = collector["command"][collector["command"].index("--config") + 1]
    assert mount_source(resolved, "otel-collector", config_arg) == COLLECTOR_CONFIG
    prometheus = resolved["services"]["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mount_source(resolved, "prometheus", config_path) == pipeline.PROMETHEUS_DIR / "prometheus.yml"
    rules_glob = yaml.safe_load((pipeline.PROMETHEUS_DIR / "prometheus.yml").read_text())["rule_files"]
    for pattern in rules_glob:  # relative to the config file's directory in the container
        rules_dir = str(Path(config_path).parent / Path(pattern).parent)
        assert mount_source(resolved, "prometheus", rules_dir) == pipeline.PROMETHEUS_DIR / "rules"
    alertmanager = resolved["services"]["alertmanager"]
    am_flag = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    assert mount_source(resolved, "alertmanager", am_flag.split("=", 1)[1]) == pipeline.ALERTMANAGER_CONFIG


def _hosts(targets: list[str]) -> set[str]:
    return {t.rsplit(":", 1)[0] for t in targets}


def test_every_hostname_the_configs_use_is_a_compose_service(resolved: dict) -> None:
    services = set(resolved["services"])
    prom = yaml.safe_load((pipeline.PROMETHEUS_DIR / "prometheus.yml").read_text())
    scrape_hosts = {h for job in prom["scrape_configs"] for sc in job["static_configs"]
                    for h in _hosts(sc["targets"])} - {"localhost"}
    alert_hosts = {h for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"]
                   for h in _hosts(sc["targets"])}
    assert scrape_hosts | alert_hosts <= services
    trace_default = re.search(r"CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT:-([\w.-]+):\d+",
                              COLLECTOR_CONFIG.read_text())
    assert trace_default and trace_default.group(1) in services
    env_urls = [v for s in resolved["services"].values()
                for v in (s.get("environment") or {}).values() if str(v).startswith("http://")]
    assert env_urls
    for url in env_urls:
        assert url.split("//")[1].split(":")[0].split("/")[0] in services, url


def test_dependencies_wait_for_health(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in resolved["services"], f"{name} depends on unknown {dependency}"
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"


DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pin_their_bases_and_copy_existing_files(dockerfile: Path) -> None:
    stages: set[str] = set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            image = words[1]
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest", f"unpinned base image {image}"
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
        elif words[0] == "COPY" and not any(w.startswith("--from=") for w in words):
            for source in words[1:-1]:
                assert (REPO / source).exists(), f"{dockerfile.name} copies missing {source}"


def test_collector_image_uses_the_same_builder_and_manifest_as_the_local_build() -> None:
    build_sh = (REPO / "collector" / "build.sh").read_text()
    local = re.search(r"^BUILDER_VERSION=(\S+)$", build_sh, re.M).group(1)
    dockerfile = (REPO / "docker" / "collector.Dockerfile").read_text()
    assert f"ARG BUILDER_VERSION={local}" in dockerfile
    assert "COPY collector/manifest.yaml" in dockerfile


# The images' own entrypoints (prom/prometheus, prom/alertmanager Dockerfiles), which ours wrap.
KEY_WRITERS = {"prometheus": ("/bin/prometheus", "/prometheus"),
               "alertmanager": ("/bin/alertmanager", "/alertmanager")}


def key_file_the_configs_read() -> dict[str, set[str]]:
    prom = yaml.safe_load((pipeline.PROMETHEUS_DIR / "prometheus.yml").read_text())
    (api_job,) = [j for j in prom["scrape_configs"] if j["job_name"] == pipeline.API_JOB]
    am = yaml.safe_load(pipeline.ALERTMANAGER_CONFIG.read_text())
    return {"prometheus": {api_job["authorization"]["credentials_file"]},
            "alertmanager": {h["http_config"]["authorization"]["credentials_file"]
                             for r in am["receivers"] for h in r["webhook_configs"]}}


@pytest.mark.parametrize("service", sorted(KEY_WRITERS))
def test_the_api_key_reaches_prometheus_and_alertmanager(resolved: dict, service: str,
                                                        tmp_path: Path) -> None:
    """With CUGAR_API_KEY set, the api refuses Prometheus' scrape and Alertmanager's webhooks
    without it: compose hands the same variable to both, whose entrypoint writes it to the file
    their configs read, on their writable data volume, then runs the image's binary."""
    binary, data_dir = KEY_WRITERS[service]
    spec = resolved["services"][service]
    assert spec["environment"]["CUGAR_API_KEY"] == resolved["services"]["api"]["environment"][
        "CUGAR_API_KEY"] == ""  # same variable, empty by default
    (key_file,) = key_file_the_configs_read()[service]
    assert Path(key_file).parent == Path(data_dir)
    named_volumes = {v.split(":")[1] for v in spec["volumes"] if not v.startswith(("/", "."))}
    assert data_dir in named_volumes, f"{service} has no data volume at {data_dir}"
    shell, flag, script, argv0 = spec["entrypoint"]
    assert (shell, flag, argv0) == ("/bin/sh", "-c", service)
    script = script.replace("$$", "$")  # `docker-compose config` prints `$` escaped
    assert key_file in script and f"exec {binary} " in script
    # Run the very script with a local sh: the key lands byte for byte, private, and the
    # arguments reach the binary (here the Debian build of the same program).
    local_key, local_binary = tmp_path / "key", require(
        components.PROMETHEUS if service == "prometheus" else components.ALERTMANAGER)
    key = 'k$y "with" spaces\\n'
    run = subprocess.run(["sh", "-c", script.replace(key_file, str(local_key)).replace(
        binary, str(local_binary)), argv0, "--version"], env={"CUGAR_API_KEY": key},
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "version" in run.stdout + run.stderr
    assert local_key.read_text() == key and (local_key.stat().st_mode & 0o077) == 0


@pytest.mark.parametrize("variable", ["CUGAR_PROMETHEUS_URL", "CUGAR_COLLECTOR_HEALTH_URL",
                                      "CUGAR_TRACE_BACKEND_URL"])
def test_the_apis_dependencies_are_compose_services(resolved: dict, variable: str) -> None:
    """What the api reads and its readiness checks: a compose hostname each (the defaults,
    127.0.0.1, would point inside the api's own container)."""
    url = resolved["services"]["api"]["environment"][variable]
    host = re.match(r"https?://([^:/]+)", url).group(1)
    assert host in resolved["services"], f"{variable}={url}"


# Endpoints the collector sends to (not listen addresses).
DESTINATIONS = {"CUGAR_COLLECTOR_TRACES_OTLP_ENDPOINT", "CUGAR_VENDOR_OTLP_ENDPOINT"}
LISTEN_DEFAULT = re.compile(r"\$\{env:(CUGAR_[A-Z_]+(?:ENDPOINT|HOST)):-([^}]*)\}")
SHIPPED_CONFIGS = [COLLECTOR_CONFIG, REPO / "monitoring" / "jaeger" / "config.yaml",
                   *sorted((REPO / "collector").rglob("*.yaml")), AGENT_COLLECTOR_CONFIG]


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shipped_configs_listen_on_loopback_unless_configured(config: Path) -> None:
    for variable, default in LISTEN_DEFAULT.findall(config.read_text()):
        if variable in DESTINATIONS:
            continue
        assert default.startswith(("127.0.0.1", "localhost")), f"{variable} defaults to {default}"


def test_compose_publishes_on_loopback_and_opens_containers_explicitly(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    collector = resolved["services"]["otel-collector"]["environment"]
    assert collector["CUGAR_COLLECTOR_OTLP_GRPC_ENDPOINT"] == "0.0.0.0:4317"
    assert resolved["services"]["jaeger"]["environment"]["CUGAR_JAEGER_OTLP_GRPC_ENDPOINT"] == (
        "0.0.0.0:4317")
