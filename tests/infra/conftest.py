"""Fixtures for the template checks: the parsed template, the SAM CLI, and one `sam build`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devkit import toolchain
from devkit.lambda_env import MONITORING_TEMPLATE, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
LOCAL = REPO / ".local"
SAM_STATE = LOCAL / "sam-infra"
BUILD_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as a dict (intrinsics in their long form, e.g. {"Ref": ...})."""
    return load_template()


@pytest.fixture(scope="session")
def monitoring() -> dict[str, Any]:
    """templates/monitoring.yaml (the dashboard and the alarms), as the template fixture."""
    return load_template(MONITORING_TEMPLATE)


@pytest.fixture(scope="session")
def sam_cli() -> str:
    """The SAM CLI: on PATH, else the project's .venv-sam. Missing is a failure, not a skip."""
    found = shutil.which("sam") or (
        str(REPO / ".venv-sam/bin/sam") if (REPO / ".venv-sam/bin/sam").exists() else None
    )
    if not found:
        pytest.fail(
            "SAM CLI not found on PATH or at .venv-sam/bin/sam; install it with `make sam-cli` "
            f"(aws-sam-cli {toolchain.pinned('aws-sam-cli', 'sam')} from requirements/sam.txt)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def sam_env() -> dict[str, str]:
    """Environment for SAM CLI runs: no telemetry, a region, no credentials needed."""
    return {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


@pytest.fixture(scope="session")
def python313() -> Path:
    """A python3.13 interpreter (pyenv's first): `sam build` and the import checks need it."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv_root / "versions/3.13*/bin/python3.13")), reverse=True)
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return Path(candidate)
    pytest.fail(
        "python3.13 not found (pyenv versions or PATH); `sam build` needs it", pytrace=False
    )


@pytest.fixture(scope="session")
def boto3_py313(python313: Path) -> Path:
    """A folder holding only boto3 and its dependencies, as the Lambda runtime provides."""
    return toolchain.runtime_boto3(str(python313))


@pytest.fixture(scope="session")
def sam_build(
    sam_cli: str,
    sam_env: dict[str, str],
    python313: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Run `sam build` once per session into a temporary folder; return the build folder.

    sam keeps its cache index (build.toml) beside the build folder, so it is carried in and
    out of .local/sam-infra to make `--cached` work across sessions.
    """
    work = tmp_path_factory.mktemp("sam")
    build_dir = work / "build"
    SAM_STATE.mkdir(parents=True, exist_ok=True)
    saved_graph = SAM_STATE / "build.toml"
    if saved_graph.exists():
        shutil.copy2(saved_graph, work / "build.toml")
    env = dict(sam_env)
    env["PATH"] = f"{python313.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [
            *(sam_cli, "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)),
            *("--cached", "--cache-dir", str(SAM_STATE / "cache"), "--parallel"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"sam build failed ({result.returncode}):\n{result.stdout[-6000:]}\n"
            f"{result.stderr[-6000:]}",
            pytrace=False,
        )
    if (work / "build.toml").exists():
        shutil.copy2(work / "build.toml", saved_graph)
    return build_dir


@pytest.fixture(scope="session")
def cfn_lint() -> Path:
    """The SAM CLI's cfn-lint (.venv-sam): the project's only one, as `make validate` runs."""
    found = toolchain.VENVS["sam"].bin / "cfn-lint"
    if not found.exists():
        pytest.fail(f"{found} not found; install it with `make sam-cli`", pytrace=False)
    return found
