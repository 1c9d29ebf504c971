"""Test helpers shared by the suites."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from services.api import runbooks
from services.stack.components import Component, MissingComponent

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(component: Component) -> Path:
    """Path of a required program. Missing: skip locally, FAIL in CI (no silent skips)."""
    try:
        return component.require()
    except MissingComponent as exc:
        if IN_CI:
            pytest.fail(f"required component missing in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


def runbook_anchors() -> set[str]:
    """The anchors GET /runbooks gives the sections of docs/runbooks.md."""
    text = runbooks.DEFAULT_PATH.read_text()
    return {runbooks.anchor(h) for h in re.findall(r"^#+\s+(.+)$", text, re.M)}
