"""samconfig.toml: `sam sync` reaches only the dev stack; the production stack never syncs.

The SAM CLI takes a command's settings from ``[<env>.<command>.parameters]``, then from
``[<env>.global.parameters]``; `sam sync` needs a stack name from one of them or the command
line. The last test asks the SAM CLI itself.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = "bici-lookups"


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))


def _setting(config: dict[str, Any], env: str, command: str, key: str) -> Any:
    for section in (command, "global"):
        value = config.get(env, {}).get(section, {}).get("parameters", {}).get(key)
        if value is not None:
            return value
    return None


def test_samconfig_default_environment_names_no_stack_to_sync(
    samconfig: dict[str, Any],
) -> None:
    assert "sync" not in samconfig["default"]
    assert _setting(samconfig, "default", "sync", "stack_name") is None


@pytest.mark.parametrize("command", ["deploy", "logs", "remote_invoke"])
def test_samconfig_default_environment_is_the_production_stack(
    samconfig: dict[str, Any], command: str
) -> None:
    assert _setting(samconfig, "default", command, "stack_name") == PRODUCTION


def test_samconfig_dev_environment_watches_a_stack_of_its_own(samconfig: dict[str, Any]) -> None:
    stack = _setting(samconfig, "dev", "sync", "stack_name")

    assert _setting(samconfig, "dev", "sync", "watch") is True
    assert stack == f"{PRODUCTION}-dev"
    assert _setting(samconfig, "dev", "deploy", "stack_name") == stack


def test_samconfig_dev_overrides_name_template_parameters(
    samconfig: dict[str, Any], template: dict[str, Any]
) -> None:
    text = _setting(samconfig, "dev", "sync", "parameter_overrides")
    overrides = dict(item.split("=", 1) for item in text.split())

    assert set(overrides) <= set(template["Parameters"])
    assert overrides["DatabaseDeletionProtection"] == "false"
    # No replies leave a dev stack: the parameters that would send texts keep their empty default.
    assert not {"ElevenLabsAgentId", "TwilioAccountSid"} & set(overrides)
    assert template["Parameters"]["TwilioAccountSid"]["Default"] == ""


def test_samconfig_sam_sync_without_dev_stops_before_touching_any_stack(
    sam_cli: str, sam_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sam_cli, "sync"],
        cwd=REPO,
        env=sam_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "Missing option '--stack-name'" in result.stderr
