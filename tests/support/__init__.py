"""Test helpers shared by the suites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
