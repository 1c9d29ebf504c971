"""kubeconform (our build, components/build.sh) against the pinned Kubernetes release's schemas,
in strict mode: a field the API does not have is an error, and so is a kind with no schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from services.stack import components
from tests.support import require

KUBERNETES_VERSION = components.pinned_versions()["KUBERNETES_VERSION"]


def schema_dir() -> Path:
    """The schemas built beside the kubeconform in use (components/_build/kubernetes-schemas)."""
    return require(components.KUBECONFORM).resolve().parent / "kubernetes-schemas"


def kubeconform(*paths: Path) -> dict:
    """kubeconform's JSON report: {"resources": [...], "summary": {...}}. Every resource is listed
    (-verbose), valid or not."""
    run = subprocess.run(
        [require(components.KUBECONFORM), "-strict", "-summary", "-verbose", "-output", "json",
         "-kubernetes-version", KUBERNETES_VERSION, "-schema-location", str(schema_dir()),
         *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert run.stdout, f"kubeconform printed nothing (exit {run.returncode}):\n{run.stderr}"
    report = json.loads(run.stdout)
    invalid = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert (run.returncode == 0) == (not invalid), (run.returncode, invalid)
    return report
