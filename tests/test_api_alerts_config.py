"""The contract between monitoring/alertmanager/alertmanager.yml and POST /alerts/{severity}:
every receiver posts to a severity the API serves, every webhook sends the API key from a file in
valid Alertmanager configuration (amtool check-config, Alertmanager 0.25), and the harness renders
both (loopback base URL, its own key file or none) without losing the per-severity paths."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from services.api.alerts import SEVERITIES
from services.stack import components
from services.stack.pipeline import ALERTMANAGER_CONFIG, render_alertmanager_config
from tests.support import require

DELIVERY_RECEIVER = "alert-delivery-webhook"


def config() -> dict:
    return yaml.safe_load(ALERTMANAGER_CONFIG.read_text())


def amtool_check(config: dict, path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([str(require(components.AMTOOL)), "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def webhook_urls(config: dict) -> dict[str, list[str]]:
    return {r["name"]: [h["url"] for h in r.get("webhook_configs", [])]
            for r in config["receivers"]}


def test_every_receiver_posts_to_a_severity_the_api_serves() -> None:
    urls = webhook_urls(config())
    paths = {name: [urlsplit(u).path for u in hooks] for name, hooks in urls.items()}
    # One receiver per severity, and the alert-delivery alerts' own (critical) receiver.
    assert paths == {**{f"{s}-webhook": [f"/alerts/{s}"] for s in SEVERITIES},
                     DELIVERY_RECEIVER: ["/alerts/critical"]}
    assert {urlsplit(u).netloc for hooks in urls.values() for u in hooks} == {"api:8000"}


def test_every_shipped_webhook_sends_the_api_key_and_amtool_accepts_it(tmp_path: Path) -> None:
    auths = [hook["http_config"]["authorization"] for receiver in config()["receivers"]
             for hook in receiver["webhook_configs"]]
    assert auths and all(a == auths[0] for a in auths)
    assert auths[0]["type"] == "Bearer" and auths[0]["credentials_file"]
    result = amtool_check(config(), tmp_path / "shipped.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_would_notice_a_broken_authorization(tmp_path: Path) -> None:
    """The check above can fail: amtool validates http_config."""
    broken = config()
    hook = broken["receivers"][0]["webhook_configs"][0]
    hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": "k",
                                             "credentials_file": "/k"}}
    result = amtool_check(broken, tmp_path / "broken.yml")
    assert result.returncode != 0
    assert "credentials" in (result.stdout + result.stderr)


def test_harness_rendering_keeps_paths_and_adds_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    rendered = render_alertmanager_config(config(), webhook_url=None, group_wait="1s",
                                          webhook_base_url="http://127.0.0.1:18000",
                                          credentials_file=key_file)
    assert webhook_urls(rendered) == {
        **{f"{s}-webhook": [f"http://127.0.0.1:18000/alerts/{s}"] for s in SEVERITIES},
        DELIVERY_RECEIVER: ["http://127.0.0.1:18000/alerts/critical"]}
    for receiver in rendered["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["http_config"] == {"authorization": {
                "type": "Bearer", "credentials_file": str(key_file)}}
    result = amtool_check(rendered, tmp_path / "rendered.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_harness_rendering_without_a_key_sends_no_authorization(tmp_path: Path) -> None:
    rendered = render_alertmanager_config(config(), webhook_url=None, group_wait=None,
                                          webhook_base_url="http://127.0.0.1:18000")
    hooks = [h for r in rendered["receivers"] for h in r["webhook_configs"]]
    assert hooks and all("http_config" not in h for h in hooks)
    result = amtool_check(rendered, tmp_path / "keyless.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/", "https://hooks.example:8443"])
def test_a_single_webhook_url_still_replaces_every_receiver(base: str) -> None:
    rendered = render_alertmanager_config(config(), webhook_url=base + "hook", group_wait=None,
                                          webhook_base_url="http://ignored:1")
    assert {u for hooks in webhook_urls(rendered).values() for u in hooks} == {base + "hook"}
    assert all("http_config" not in h for r in rendered["receivers"]
               for h in r["webhook_configs"])
