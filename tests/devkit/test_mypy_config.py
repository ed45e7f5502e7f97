"""The type check `make lint` and `make test` run: strict on every Python file that deploys."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from devkit.lambda_env import load_template

ROOT = Path(__file__).resolve().parents[2]
# What `strict = true` turns on; an override may switch these off only for tooling.
STRICT_FLAGS = (
    "disallow_any_generics",
    "disallow_subclassing_any",
    "disallow_untyped_calls",
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "check_untyped_defs",
    "disallow_untyped_decorators",
    "warn_return_any",
    "strict_equality",
    "extra_checks",
)
TOOLING = ("devkit", "devkit.*", "tests", "tests.*")


def _mypy() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(config["tool"]["mypy"])


def _deployed_sources() -> list[Path]:
    """Every .py file of the template's layers and functions."""
    resources = load_template()["Resources"].values()
    uris = [
        r["Properties"].get("CodeUri") or r["Properties"].get("ContentUri")
        for r in resources
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")
    ]
    return sorted({p for uri in uris if isinstance(uri, str) for p in (ROOT / uri).rglob("*.py")})


def test_mypy_checks_every_deployed_file() -> None:
    checked = [ROOT / entry for entry in _mypy()["files"]]
    sources = _deployed_sources()

    unchecked = [str(p.relative_to(ROOT)) for p in sources if not _under_any(p, checked)]

    assert len(sources) > 10
    assert unchecked == []


def test_mypy_is_strict_and_relaxed_only_for_tooling() -> None:
    config = _mypy()

    relaxed = [
        (pattern, flag)
        for override in config.get("overrides", [])
        for pattern in _patterns(override["module"])
        if pattern not in TOOLING
        for flag in (*STRICT_FLAGS, "ignore_errors")
        if override.get(flag) is (flag == "ignore_errors")
    ]

    assert config.get("strict") is True
    assert relaxed == []


def _patterns(module: str | list[str]) -> list[str]:
    return [module] if isinstance(module, str) else list(module)


def _under_any(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
