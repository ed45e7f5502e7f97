"""`devkit.toolchain browser`: Chromium and chromedriver from apt when missing, axe-core from
npm's lock, and a clear error (never a silent skip) when they cannot be had."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devkit import toolchain


def fake_tool(folder: Path, name: str, script: str) -> Path:
    """An executable ``name`` in ``folder`` that logs its arguments and runs ``script``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/{name}.log"\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def browser_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    chromium, driver = tmp_path / "usr" / "chromium", tmp_path / "usr" / "chromedriver"
    monkeypatch.setattr(toolchain, "CHROMIUM", chromium)
    monkeypatch.setattr(toolchain, "CHROMEDRIVER", driver)
    return chromium, driver


def test_browser_present_is_used_as_it_is(
    browser_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in browser_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "apt-get", "exit 1")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    assert toolchain.ensure_browser() == browser_paths
    assert not (bin_dir / "apt-get.log").exists()


def test_browser_missing_is_installed_with_apt_get_as_root(
    browser_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chromium, driver = browser_paths
    bin_dir = tmp_path / "bin"
    creates = f'mkdir -p "{chromium.parent}"; touch "{chromium}" "{driver}"'
    install = f'case "$1" in install) {creates};; esac'
    fake_tool(bin_dir, "apt-get", install)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    assert toolchain.ensure_browser() == browser_paths
    calls = (bin_dir / "apt-get.log").read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y") and calls[1].endswith("chromium chromium-driver")


def test_browser_missing_without_root_is_an_error_naming_the_packages(
    browser_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(tmp_path / "bin", "apt-get", "exit 0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(toolchain.ToolchainError, match="apt-get install chromium chromium-driver"):
        toolchain.ensure_browser()


def test_browser_apt_get_failure_is_an_error(
    browser_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(tmp_path / "bin", "apt-get", 'case "$1" in install) exit 100;; esac')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    with pytest.raises(toolchain.ToolchainError, match="exit status 100"):
        toolchain.ensure_browser()


def test_axe_is_installed_by_npm_ci_once_per_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = tmp_path / "browser"
    tests.mkdir()
    (tests / "package-lock.json").write_text('{"lockfileVersion": 3}')
    axe = tests / "node_modules" / "axe-core" / "axe.min.js"
    monkeypatch.setattr(toolchain, "BROWSER_TESTS", tests)
    monkeypatch.setattr(toolchain, "AXE", axe)
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "npm", f'mkdir -p "{axe.parent}" && echo "window.axe = {{}}" > "{axe}"')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    assert toolchain.ensure_axe() == axe
    assert toolchain.ensure_axe() == axe
    (tests / "package-lock.json").write_text('{"lockfileVersion": 3, "changed": true}')
    assert toolchain.ensure_axe() == axe

    calls = (bin_dir / "npm.log").read_text().splitlines()
    assert len(calls) == 2 and all(call.startswith("ci --ignore-scripts") for call in calls)
