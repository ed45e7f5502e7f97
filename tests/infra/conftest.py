"""Fixtures for the template checks: the parsed template, the SAM CLI, and one `sam build`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devkit.lambda_env import load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
LOCAL = REPO / ".local"
SAM_STATE = LOCAL / "sam-infra"
BOTO3_PY313 = LOCAL / "boto3-py313"
BUILD_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """template.yaml as a dict (intrinsics in their long form, e.g. {"Ref": ...})."""
    return load_template()


@pytest.fixture(scope="session")
def sam_cli() -> str:
    """The SAM CLI: on PATH, else the project's .venv-sam. Missing is a failure, not a skip."""
    found = shutil.which("sam") or (
        str(REPO / ".venv-sam/bin/sam") if (REPO / ".venv-sam/bin/sam").exists() else None
    )
    if not found:
        pytest.fail(
            "SAM CLI not found on PATH or at .venv-sam/bin/sam; install it with "
            "`python3 -m venv .venv-sam && .venv-sam/bin/pip install aws-sam-cli==1.170.0`",
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


def _boto3_pin() -> str:
    """The boto3 requirement pinned in pyproject.toml, so the import check matches dev."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in pyproject["dependency-groups"]["dev"]:
        if requirement.replace(" ", "").startswith("boto3=="):
            return requirement
    return "boto3"


@pytest.fixture(scope="session")
def boto3_py313(python313: Path) -> Path:
    """A folder holding only boto3 and its dependencies, as the Lambda runtime provides."""
    marker = BOTO3_PY313 / ".complete"
    if not marker.exists():
        staging = BOTO3_PY313.with_name(BOTO3_PY313.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(
            [
                str(python313),
                *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *("--root-user-action=ignore", "--no-compile", "--target", str(staging)),
                _boto3_pin(),
            ],
            check=True,
            timeout=600,
        )
        shutil.rmtree(BOTO3_PY313, ignore_errors=True)
        staging.rename(BOTO3_PY313)
        marker.write_text(_boto3_pin() + "\n", encoding="utf-8")
    return BOTO3_PY313


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
def venv_bin() -> Path:
    """The bin folder of the interpreter running the tests (cfn-lint is installed there)."""
    return Path(sys.executable).parent
