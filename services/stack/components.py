"""Where the pipeline's external programs live, and a clear error when one is missing."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_LINK = REPO_ROOT / "collector" / "_build" / "cugar-otelcol"
PROMETHEUS_DIR = REPO_ROOT / "monitoring" / "prometheus"
VERSIONS_FILE = REPO_ROOT / "components" / "versions.env"


def pinned_versions() -> dict[str, str]:
    """components/versions.env as a dict: the one place third-party releases are pinned."""
    pins: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


class MissingComponent(RuntimeError):
    """A program the pipeline needs is not installed; the message says how to get it."""


@dataclass(frozen=True)
class Component:
    name: str
    env_var: str          # explicit path override
    candidates: tuple[str, ...]
    install_hint: str

    def find(self) -> Path | None:
        override = os.environ.get(self.env_var)
        if override:
            path = Path(override)
            return path if path.is_file() and os.access(path, os.X_OK) else None
        for candidate in self.candidates:
            if "/" in candidate:
                path = Path(candidate)
                if path.is_file() and os.access(path, os.X_OK):
                    return path
            elif found := shutil.which(candidate):
                return Path(found)
        return None

    def require(self) -> Path:
        path = self.find()
        if path is None:
            raise MissingComponent(f"{self.name} not found ({self.env_var} unset or invalid); "
                                   f"{self.install_hint}")
        return path


COLLECTOR = Component("cugar-otelcol (our collector build)", "CUGAR_COLLECTOR_BIN",
                      (str(COLLECTOR_LINK),), "run `bash collector/build.sh` (needs Go)")
BUILDS = REPO_ROOT / "components" / "_build"
BUILD_HINT = "run `bash components/build.sh` (needs Go; `make deps` does it)"
PROMETHEUS = Component("prometheus (our build of the pinned release)", "CUGAR_PROMETHEUS_BIN",
                       (str(BUILDS / "prometheus"),), BUILD_HINT)
PROMTOOL = Component("promtool (our build of the pinned release)", "CUGAR_PROMTOOL_BIN",
                     (str(BUILDS / "promtool"),), BUILD_HINT)
ALERTMANAGER = Component("alertmanager (our build of the pinned release)", "CUGAR_ALERTMANAGER_BIN",
                         (str(BUILDS / "alertmanager"),), BUILD_HINT)
AMTOOL = Component("amtool (our build of the pinned release)", "CUGAR_AMTOOL_BIN",
                   (str(BUILDS / "amtool"),), BUILD_HINT)
JAEGER = Component("jaeger (our build of the pinned release)", "CUGAR_JAEGER_BIN",
                   (str(BUILDS / "jaeger"),), BUILD_HINT)
TELEMETRYGEN = Component("telemetrygen (the OpenTelemetry load generator, for bench/pipeline.py)",
                         "CUGAR_TELEMETRYGEN_BIN", (str(BUILDS / "telemetrygen"),),
                         "run `bash components/build.sh telemetrygen` (needs Go)")
THANOS = Component("thanos (receive, query and rule: the scale-out store of docs/scaling.md)",
                   "CUGAR_THANOS_BIN", (str(BUILDS / "thanos"),),
                   "run `bash components/build.sh thanos` (needs Go)")
KUBECONFORM = Component("kubeconform (validates deploy/k8s against the pinned Kubernetes API)",
                        "CUGAR_KUBECONFORM_BIN", (str(BUILDS / "kubeconform"),),
                        "run `bash components/build.sh kubeconform` (needs Go)")
# Its schemas (components/kubeconform-schemas.py), built beside it.
KUBERNETES_SCHEMAS = BUILDS / "kubernetes-schemas"
CHROMIUM = Component("chromium", "CUGAR_CHROMIUM_BIN", ("chromium", "chromium-browser"),
                     "run `apt-get install chromium` (or `make deps`)")
DOCKER_COMPOSE = Component("docker-compose", "CUGAR_DOCKER_COMPOSE_BIN", ("docker-compose",),
                           "run `apt-get install docker-compose` (or `make deps`)")
OPENSSL = Component("openssl", "CUGAR_OPENSSL_BIN", ("openssl",),
                    "run `apt-get install openssl` (tests make their certificates with it)")
GO = Component("go (the Go toolchain)", "CUGAR_GO_BIN", ("go",),
               "install Go (the builds need it; tests read the binaries' build info with it)")
