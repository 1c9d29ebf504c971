"""The programs of the shipped deployments accept what they are given there: every flag in
deploy/k8s/ and docker-compose.scale.yml is one the pinned release of its program has (our builds
of the same releases, `--help`), and each collector's and Jaeger's config validates
(`validate --config`) with the variables the deployment sets."""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from services.stack import components
from services.stack.components import Component
from tests.support import require
from tests.support.deployment import resolve_compose

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"

# image (without tag) -> the program it runs
PROGRAMS: dict[str, Component] = {
    "cugar/thanos": components.THANOS, "prom/prometheus": components.PROMETHEUS,
    "prom/alertmanager": components.ALERTMANAGER, "cugar/otelcol": components.COLLECTOR,
    "jaegertracing/jaeger": components.JAEGER,
}
VALIDATED = ("cugar/otelcol", "jaegertracing/jaeger")  # config files checked with `validate`


def _k8s_runs() -> list[tuple[str, str, list[str], dict[str, str], dict[str, Path]]]:
    """(id, image, args, env, container path -> repository file) of every k8s container."""
    docs = [yaml.safe_load(f.read_text()) for f in sorted(K8S.glob("*.yaml"))]
    sources = {}  # ConfigMap name -> {key: repository file}, by content (verbatim, tested)
    repo_files = {p.read_text(): p for p in [*REPO.glob("*.yaml"), *(REPO / "deploy" / "scale").iterdir(),
                                             *(REPO / "monitoring").rglob("*.y*ml")]}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            sources[doc["metadata"]["name"]] = {k: repo_files.get(v) for k, v in doc["data"].items()}
    runs = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            files = {}
            for mount in c.get("volumeMounts", []):
                if "configMap" in volumes.get(mount["name"], {}):
                    for key, path in sources[volumes[mount["name"]]["configMap"]["name"]].items():
                        files[f"{mount['mountPath']}/{key}"] = path
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            runs.append((f"k8s:{doc['metadata']['name']}/{c['name']}", c["image"].rsplit(":", 1)[0],
                         c.get("args", []), env, files))
    return runs


def _compose_runs() -> list[tuple[str, str, list[str], dict[str, str], dict[str, Path]]]:
    services = resolve_compose(REPO / "docker-compose.scale.yml")["services"]
    runs = []
    for name, s in services.items():
        files = {}
        for volume in s.get("volumes", []):
            source, target = (volume.split(":")[:2] if isinstance(volume, str)
                              else (volume["source"], volume["target"]))
            if Path(source).is_file():
                files[target] = Path(source)
        runs.append((f"compose:{name}", s["image"].rsplit(":", 1)[0], list(s.get("command") or []),
                     {k: str(v) for k, v in (s.get("environment") or {}).items()}, files))
    return runs


RUNS = [r for r in _k8s_runs() if r[1] in PROGRAMS]


@cache
def flags_of(image: str, subcommand: str | None) -> frozenset[str]:
    binary = require(PROGRAMS[image])
    argv = [binary, *([subcommand] if subcommand else []), "--help"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    # kingpin lists a boolean flag as --[no-]name
    flags = frozenset("--" + f for f in re.findall(r"--(?:\[no-\])?([a-z0-9][a-z0-9.-]*)",
                                                    out.stdout + out.stderr))
    assert len(flags) > 3, f"{argv}: no flags in --help"
    return flags


def _check_flags(image: str, args: list[str]) -> None:
    subcommand = args[0] if image == "cugar/thanos" else None
    known = flags_of(image, subcommand)
    used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert used <= known, f"{image} {subcommand or ''}: unknown flags {sorted(used - known)}"


def _validate(image: str, args: list[str], env: dict[str, str], files: dict[str, Path]) -> None:
    config = files[args[args.index("--config") + 1]]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("CUGAR_")}
    run = subprocess.run([require(PROGRAMS[image]), "validate", "--config", str(config)],
                         env={**run_env, **env}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{config.name} with {env}:\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r[0])
def test_kubernetes_containers_use_flags_their_program_has(run: tuple) -> None:
    _, image, args, env, files = run
    _check_flags(image, args)
    if image in VALIDATED:
        _validate(image, args, env, files)


def test_compose_services_use_flags_their_program_has() -> None:
    runs = [r for r in _compose_runs() if r[1] in PROGRAMS]
    assert len(runs) >= 14
    for _, image, args, env, files in runs:
        _check_flags(image, args)
        if image in VALIDATED:
            _validate(image, args, env, files)
