"""Test helpers shared by the suites."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

import pytest

from services.api import runbooks
from services.stack.components import Component, MissingComponent

IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(what: str, exc: Exception) -> NoReturn:
    """Something a test needs is absent: skip locally, FAIL in CI (no silent skips)."""
    if IN_CI:
        pytest.fail(f"{what} missing in CI: {exc}", pytrace=False)
    pytest.skip(str(exc))


def require(component: Component) -> Path:
    """Path of a required program."""
    try:
        return component.require()
    except MissingComponent as exc:
        _missing("required component", exc)


def require_module(name: str) -> None:
    """A test dependency from pyproject.toml's test extras is importable."""
    try:
        __import__(name)
    except ImportError as exc:
        _missing("test dependency", exc)


def runbook_anchors() -> set[str]:
    """The anchors GET /runbooks gives the sections of docs/runbooks.md."""
    text = runbooks.DEFAULT_PATH.read_text()
    return {runbooks.anchor(h) for h in re.findall(r"^#+\s+(.+)$", text, re.M)}
