"""README.md's staff walk-through, run in order as written against the runner of `make run`.

The first block of "Try it against `make run`" (a call that makes the lead), then every block
after the walk-through's marker up to the next section, in one bash: the only change is the
runner's address (a free port instead of 3000, and the token command's issuer with it). Each
command that prints `%{http_code}` must print the status its comment names.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import lambda_env
from devkit.runner import LocalApi

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "<!-- staff walk-through:"
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
STATUS_COMMENT = re.compile(r"#\s*([1-5][0-9][0-9])\b")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Try it against `make run`")
    return text[start : text.index("\n## ", start + 1)]


def walkthrough() -> list[str]:
    """The blocks to run: the call that makes the lead, then the walk-through's."""
    section = _section()
    first = BLOCK.search(section)
    assert first is not None
    after = section[section.index(MARKER) :]
    staff = [
        block
        for block in BLOCK.findall(after)
        if "/leads" in block  # the cache administration block that follows is another story
    ]
    return [first.group(1), *staff]


def expected_statuses(script: str) -> list[str]:
    """For each command printing its status, the status its comment names."""
    commands = re.sub(r"\\\n", " ", script).splitlines()
    found = []
    for command in commands:
        if "%{http_code}" in command:
            match = STATUS_COMMENT.search(command[command.find(" #") :] if " #" in command else "")
            assert match, f"no status in the comment of: {command}"
            found.append(match.group(1))
    return found


@pytest.fixture
def runner(app_env: dict[str, str]) -> Iterator[LocalApi]:
    api = LocalApi(lambda_env.functions(), "127.0.0.1", 0, log=io.StringIO())
    api.start()
    try:
        yield api
    finally:
        api.stop()


def test_the_readme_staff_walkthrough_runs_in_order_as_written(
    runner: LocalApi, db: object
) -> None:
    script = "\necho\n".join(walkthrough())
    local = script.replace("http://127.0.0.1:3000", runner.url).replace(
        "devkit.cli token ", f"devkit.cli token --base-url {runner.url} "
    )

    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", local],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines() if re.fullmatch(r"[0-9]{3}", line)]
    assert printed == expected_statuses(script), done.stdout
    assert printed == [
        "200", "202", "200", "304", "200", "412", "200", "404", "204",
    ]  # fmt: skip
    assert "unknown field 'colour'" in done.stdout
    assert '"attention"' in done.stdout and '"items"' in done.stdout
