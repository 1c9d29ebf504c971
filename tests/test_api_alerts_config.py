"""The contract between monitoring/alertmanager/alertmanager.yml and POST /alerts/{severity}:
every receiver posts to a severity the API serves, the documented way to give Alertmanager the
API key is valid Alertmanager configuration (amtool check-config, Alertmanager 0.25), and the
harness renders both (loopback base URL, key file) without losing the per-severity paths."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from services.api.alerts import SEVERITIES
from services.stack import components
from services.stack.pipeline import ALERTMANAGER_CONFIG, render_alertmanager_config
from tests.support import require

START = "# --- example: a webhook with the API key ---"
END = "# --- end of example ---"


def config() -> dict:
    return yaml.safe_load(ALERTMANAGER_CONFIG.read_text())


def documented_webhook() -> dict:
    """The commented example in alertmanager.yml, uncommented."""
    text = ALERTMANAGER_CONFIG.read_text()
    assert START in text and END in text, "the API key example is missing from alertmanager.yml"
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [line.removeprefix("#") for line in block.strip("\n").splitlines()]
    (hook,) = yaml.safe_load(textwrap.dedent("\n".join(lines)))
    return hook


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
    assert paths == {f"{s}-webhook": [f"/alerts/{s}"] for s in SEVERITIES}
    assert {urlsplit(u).netloc for hooks in urls.values() for u in hooks} == {"api:8000"}


def test_the_documented_api_key_example_is_valid_alertmanager_config(tmp_path: Path) -> None:
    hook = documented_webhook()
    assert urlsplit(hook["url"]).path == "/alerts/critical"
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"]
    keyed = config()
    for receiver in keyed["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["http_config"] = hook["http_config"]
    result = amtool_check(keyed, tmp_path / "keyed.yml")
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
    assert webhook_urls(rendered) == {f"{s}-webhook": [f"http://127.0.0.1:18000/alerts/{s}"]
                                      for s in SEVERITIES}
    for receiver in rendered["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["http_config"] == {"authorization": {
                "type": "Bearer", "credentials_file": str(key_file)}}
    result = amtool_check(rendered, tmp_path / "rendered.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/", "https://hooks.example:8443"])
def test_a_single_webhook_url_still_replaces_every_receiver(base: str) -> None:
    rendered = render_alertmanager_config(config(), webhook_url=base + "hook", group_wait=None,
                                          webhook_base_url="http://ignored:1")
    assert {u for hooks in webhook_urls(rendered).values() for u in hooks} == {base + "hook"}
    assert all("http_config" not in h for r in rendered["receivers"]
               for h in r["webhook_configs"])
