"""A throwaway PostgreSQL over TLS that checks passwords (scram), on a loopback port.

The shared test server trusts every local connection, so it cannot tell a right password
from a wrong one; tests of password-like credentials (IAM tokens) start one of these.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis_servers import free_port

_TIMEOUT_S = 60


@dataclass(frozen=True)
class PasswordServer:
    """Where the server listens, the CA file its certificate verifies with, and a superuser URL."""

    port: int
    ca_file: Path
    admin_url: str


def _bin_dir() -> Path:
    # The Debian server is built with TLS (the embedded pgserver build is not).
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql (apt postgresql)")


def _run(command: list[str], user: pwd.struct_passwd | None) -> None:
    def demote() -> None:
        if user is not None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    subprocess.run(command, check=True, capture_output=True, timeout=_TIMEOUT_S, preexec_fn=demote)


@contextmanager
def password_postgres() -> Iterator[PasswordServer]:
    """Start the server (TLS on, scram for every TCP login but the superuser's); stop it after."""
    bin_dir = _bin_dir()
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="pgpw-"))
    try:
        root.chmod(0o755)
        data, certs = root / "data", root / "certs"
        certs.mkdir()
        cert, key = certs / "server.crt", certs / "server.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=_TIMEOUT_S,
        )  # fmt: skip
        key.chmod(0o600)
        if user is not None:
            for path in (root, certs, cert, key):
                os.chown(path, user.pw_uid, user.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        _run([*initdb, "--no-sync", "--no-instructions", "--encoding=UTF8", "--no-locale"], user)
        # The superuser arranges the test over loopback without a password; everyone else
        # must present the password (here: the IAM token) over TLS.
        (data / "pg_hba.conf").write_text(
            "host all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        port = free_port()
        options = (
            f"-h 127.0.0.1 -p {port} -k '' -c ssl=on -c ssl_cert_file={cert} "
            f"-c ssl_key_file={key} -c fsync=off"
        )
        _run([str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(root / "log"),
              "-o", options, "-w", "-t", "30"], user)  # fmt: skip
        try:
            yield PasswordServer(port, cert, f"postgresql://postgres@127.0.0.1:{port}/postgres")
        finally:
            _run([str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"], user)
    finally:
        shutil.rmtree(root, ignore_errors=True)
