"""The Go programs we build carry the dependency releases that fix known vulnerabilities.

`go version -m` reads the module versions compiled into each binary; every one in the table
must be at least the release that carries the published fix. Bumping a pin (collector
manifest, components/versions.env) that pulls an older module fails here. Adding an advisory
means adding a line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from services.stack import components
from tests.support import require

# module -> (minimum fixed release, what it fixes)
MINIMUMS = {
    "google.golang.org/grpc": ("v1.58.3", "CVE-2023-44487, HTTP/2 rapid reset"),
    "golang.org/x/net": ("v0.33.0", "CVE-2023-45288 HTTP/2 CONTINUATION flood; CVE-2024-45338"),
    "golang.org/x/crypto": ("v0.35.0", "CVE-2024-45337 ssh auth bypass; CVE-2025-22869 ssh DoS"),
    "google.golang.org/protobuf": ("v1.33.0", "CVE-2024-24786, protojson infinite loop"),
    "github.com/golang-jwt/jwt/v5": ("v5.2.2", "CVE-2025-30204, header parsing memory use"),
}
MINIMUM_GO = "go1.25.0"  # the oldest Go release line still receiving security fixes

BINARIES = {"collector": components.COLLECTOR, "prometheus": components.PROMETHEUS,
            "promtool": components.PROMTOOL, "alertmanager": components.ALERTMANAGER,
            "jaeger": components.JAEGER, "thanos": components.THANOS}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3])


def _build_info(binary: Path) -> tuple[str, dict[str, str]]:
    out = subprocess.run([require(components.GO), "version", "-m", str(binary.resolve())], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    toolchain = out.splitlines()[0].rsplit(" ", 1)[-1]
    modules = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] in ("dep", "=>") and len(fields) >= 3:
            modules[fields[1]] = fields[2]
    return toolchain, modules


@pytest.mark.parametrize("name", BINARIES)
def test_binaries_carry_the_fixed_dependency_releases(name: str) -> None:
    toolchain, modules = _build_info(require(BINARIES[name]))
    assert _version(toolchain) >= _version(MINIMUM_GO), f"{name} built with {toolchain}"
    too_old = {module: (modules[module], minimum, advisory)
               for module, (minimum, advisory) in MINIMUMS.items()
               if module in modules and _version(modules[module]) < _version(minimum)}
    assert not too_old, f"{name} carries releases without the fix: {too_old}"
    assert "google.golang.org/grpc" in modules, f"{name}: build info not read ({sorted(modules)[:5]})"


def test_version_comparison_reads_go_module_versions() -> None:
    assert _version("v1.58.3") > _version("v1.58.2") > _version("v1.9.9")
    assert _version("v0.0.0-20240101000000-abcdef") == (0, 0, 0)
    assert _version("go1.26.8") > _version(MINIMUM_GO)
