"""What `make test` runs once the virtualenvs exist: services, lint, types, then the suite.

Extra arguments are passed to pytest (`python -m devkit.check -k lead`). Exits non-zero
when any step fails, when pytest collects no tests, and, with CI=true, when any test was
skipped (a skipped suite in CI is a suite that did not run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from devkit import toolchain
from devkit.services import ServiceError, ensure_services

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
JUNIT = LOCAL / "junit.xml"
SAM_BIN = toolchain.VENVS["sam"].bin
# In a virtualenv of its own (requirements/checkov.txt): its pins clash with the development one's.
CHECKOV = toolchain.VENVS["checkov"].bin / "checkov"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
PYTEST_NO_TESTS = 5


def main(argv: list[str] | None = None) -> int:
    """Run every check in order; return the process exit status."""
    pytest_args = sys.argv[1:] if argv is None else argv
    os.chdir(ROOT)
    if pytest_args == ["--checkov-only"]:
        return 1 if checkov() else 0
    _step("services (PostgreSQL, Redis)")
    try:
        urls = ensure_services(LOCAL)
    except ServiceError as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    os.environ.update(urls)
    for name, url in urls.items():
        print(f"{name}={url}", flush=True)

    python = sys.executable
    failures = [
        name
        for name, command in (
            ("ruff check", [python, "-m", "ruff", "check", "."]),
            ("ruff format --check", [python, "-m", "ruff", "format", "--check", "."]),
            ("mypy", [python, "-m", "mypy"]),
        )
        if _run_step(name, command) != 0
    ]
    failures += checkov()
    failures += _pytest(python, pytest_args)

    if failures:
        print(f"\nmake test FAILED: {', '.join(failures)}", flush=True)
        return 1
    print("\nmake test passed", flush=True)
    return 0


def _pytest(python: str, args: list[str]) -> list[str]:
    JUNIT.unlink(missing_ok=True)
    env = {**os.environ, "PATH": _test_path()}
    command = [python, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={JUNIT}", *args]
    status = _run_step("pytest", command, env)
    if status == PYTEST_NO_TESTS:
        print("FAILED: pytest collected no tests (check testpaths and file names)", flush=True)
        return ["pytest (no tests collected)"]
    failures = [f"pytest (exit status {status})"] if status != 0 else []
    if os.environ.get("CI", "").lower() == "true":
        skipped = skipped_tests(JUNIT)
        if skipped:
            print(f"FAILED: CI=true and {len(skipped)} test(s) were skipped:", flush=True)
            for line in skipped:
                print(f"  {line}", flush=True)
            failures.append(f"pytest ({len(skipped)} skipped under CI=true)")
    return failures


def templates() -> list[Path]:
    """The stack's templates: template.yaml and its nested ones (templates/*.yaml)."""
    return [ROOT / "template.yaml", *sorted((ROOT / "templates").glob("*.yaml"))]


def checkov(files: list[Path] | None = None) -> list[str]:
    """Run checkov on the templates; any failed check, parse error or empty scan fails the step.

    The stack-wide skips and their reasons are in .checkov.yaml; a skip that concerns one
    resource is in that resource's Metadata. checkov answers 0 when it could not parse a file
    (it scanned nothing), so the verdict comes from its JSON summary, not its exit status alone.
    """
    try:
        toolchain.ensure_venv("checkov")
    except toolchain.ToolchainError as exc:
        print(f"FAILED: {exc}", flush=True)
        return ["checkov (could not be installed)"]
    _step(f"checkov {toolchain.pinned('checkov', 'checkov')} (CloudFormation)")
    started = time.monotonic()
    # --skip-download: no platform account here, and nothing to fetch from the network.
    command = [str(CHECKOV), "--config-file", str(CHECKOV_CONFIG), "--framework", "cloudformation"]
    for path in templates() if files is None else files:
        command += ["-f", str(path)]
    command += ["--skip-download", "--quiet", "--compact", "-o", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    failures = checkov_verdict(result.stdout)
    for line in failures:
        print(f"  {line}", flush=True)
    verdict = "ok" if not failures else f"FAILED ({len(failures)} problem(s))"
    print(f"--- checkov: {verdict} in {time.monotonic() - started:.1f} s", flush=True)
    if failures and not result.stdout.strip():
        print(result.stderr[-2000:], flush=True)
    return ["checkov"] if failures else []


def checkov_verdict(report: str) -> list[str]:
    """The problems in a checkov JSON report: failed checks, parse errors, nothing scanned."""
    try:
        data = json.loads(report)
    except ValueError:
        return ["checkov printed no JSON report"]
    reports = data if isinstance(data, list) else [data]
    problems: list[str] = []
    scanned = 0
    for one in reports:
        summary = one.get("summary", {})
        scanned += int(summary.get("resource_count", 0))
        if summary.get("parsing_errors"):
            problems.append(f"{summary['parsing_errors']} file(s) checkov could not parse")
        for check in one.get("results", {}).get("failed_checks", []):
            problems.append(f"{check['check_id']} {check['resource']}: {check['check_name']}")
        counts = {k: summary.get(k, 0) for k in ("passed", "failed", "skipped")}
        print("checkov: {passed} passed, {failed} failed, {skipped} skipped".format(**counts))
    if scanned == 0:
        problems.append("checkov scanned no resource")
    return problems


def skipped_tests(junit: Path) -> list[str]:
    """`test id: reason` for every skipped (not xfailed) test in a pytest JUnit XML report."""
    if not junit.exists():
        return []
    skipped = []
    # Our own pytest's report, not untrusted input.
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314
        for skip in case.findall("skipped"):
            if skip.get("type") == "pytest.xfail":
                continue
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
            skipped.append(f"{test_id}: {skip.get('message', '')}")
    return skipped


def _test_path() -> str:
    """PATH for pytest: the venv, the SAM CLI, and `python3.13` (infra tests run `sam build`)."""
    entries = [str(Path(sys.executable).parent)]
    if SAM_BIN.is_dir():
        entries.append(str(SAM_BIN))
    python313 = find_python313()
    if python313 is None:
        print("warning: no python3.13 found; `sam build` will fail", flush=True)
    else:
        # Only python3.13 itself: its folder also holds python3 and pip, which must not
        # shadow the virtualenv's in the tests' subprocesses.
        shim_dir = LOCAL / "python3.13-bin"
        shim_dir.mkdir(parents=True, exist_ok=True)
        link = shim_dir / "python3.13"
        link.unlink(missing_ok=True)
        link.symlink_to(python313)
        entries.append(str(shim_dir))
    return os.pathsep.join([*entries, os.environ.get("PATH", "")])


def find_python313() -> str | None:
    """A working python3.13 executable: $PY313_DIR, PATH, `pyenv prefix 3.13`, ~/.pyenv."""
    return toolchain.find_python("3.13")


def _run_step(name: str, command: list[str], env: dict[str, str] | None = None) -> int:
    _step(name)
    started = time.monotonic()
    status = subprocess.run(command, env=env, check=False).returncode
    verdict = "ok" if status == 0 else f"FAILED (exit status {status})"
    print(f"--- {name}: {verdict} in {time.monotonic() - started:.1f} s", flush=True)
    return status


def _step(name: str) -> None:
    print(f"\n==> {name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
