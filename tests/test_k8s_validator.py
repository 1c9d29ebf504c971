"""The validator of the Kubernetes manifests is real: our kubeconform build at the pinned release,
with schemas generated from the pinned Kubernetes release's OpenAPI spec, rejects what an API
server of that release would reject (unknown fields, wrong types, missing required fields, kinds
it does not serve) and accepts a correct object."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from services.stack import components
from tests.support import require
from tests.support.kubernetes import KUBERNETES_VERSION, kubeconform, schema_dir

VALID = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe"},
    "spec": {"selector": {"matchLabels": {"app": "probe"}},
             "template": {"metadata": {"labels": {"app": "probe"}},
                          "spec": {"containers": [{
                              "name": "c", "image": "busybox:1.37",
                              "ports": [{"containerPort": 80}],
                              "resources": {"limits": {"memory": "64Mi", "cpu": 1}},
                              "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}}}


def _container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def _set(doc: dict, change: str) -> dict:
    if change == "unknown container field":
        _container(doc)["imagePullPolicyy"] = "Always"
    elif change == "unknown top-level field":
        doc["status2"] = {}
    elif change == "wrong type":
        _container(doc)["ports"][0]["containerPort"] = "eighty"
    elif change == "missing required field":
        del _container(doc)["name"]
    elif change == "bad quantity type":
        _container(doc)["resources"]["limits"]["memory"] = {"Mi": 64}
    elif change == "int-or-string as a list":
        _container(doc)["readinessProbe"]["httpGet"]["port"] = [80]
    elif change == "kind the release does not serve":
        doc["apiVersion"] = "apps/v1beta1"
    return doc


def _check(tmp_path: Path, doc: dict) -> dict:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc))
    (resource,) = kubeconform(path)["resources"]
    return resource


def test_the_validator_is_the_pinned_release() -> None:
    out = subprocess.run([require(components.KUBECONFORM), "-v"], capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    assert out == "v" + components.pinned_versions()["KUBECONFORM_VERSION"]


def test_the_schemas_are_the_pinned_kubernetes_release() -> None:
    strict = schema_dir() / f"v{KUBERNETES_VERSION}-standalone-strict"
    names = {p.name for p in strict.glob("*.json")}
    assert {"deployment-apps-v1.json", "statefulset-apps-v1.json", "daemonset-apps-v1.json",
            "service-v1.json", "configmap-v1.json", "namespace-v1.json"} <= names
    assert len(names) > 200, len(names)


def test_a_correct_object_is_valid(tmp_path: Path) -> None:
    assert _check(tmp_path, VALID)["status"] == "statusValid"


@pytest.mark.parametrize("change", [
    "unknown container field", "unknown top-level field", "wrong type", "missing required field",
    "bad quantity type", "int-or-string as a list", "kind the release does not serve"])
def test_a_broken_object_is_rejected(tmp_path: Path, change: str) -> None:
    resource = _check(tmp_path, _set(yaml.safe_load(yaml.safe_dump(VALID)), change))
    assert resource["status"] in ("statusInvalid", "statusError"), resource
