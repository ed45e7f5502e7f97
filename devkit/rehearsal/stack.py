"""The AWS side of the rehearsal, on loopback: what the deployed functions would talk to.

- Secrets Manager and SQS: moto in server mode (``AWS_ENDPOINT_URL``), holding every secret
  and queue of template.yaml, created under their logical ids.
- ElastiCache Serverless: a Redis in cluster mode (one node holding every slot, as the
  serverless endpoint presents itself), TLS only, the default user off, the application user
  of the template's ``CacheAppUser`` access string, its password in ``CacheAuthSecret``.
- RDS Proxy: a private PostgreSQL cluster (initdb, a free port, ``ssl=on``, TLS-only
  ``scram-sha-256`` logins) whose certificate names ``localhost``, signed by a local CA; the
  functions verify it with ``DB_SSLMODE=verify-full`` against that CA (``SSL_CERT_FILE``).

Everything lives under ``.local/rehearsal`` and is stopped by :meth:`Stack.close`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit import services
from devkit.lambda_env import LOCAL_ACCOUNT_ID, LOCAL_REGION, ROOT

STATE = ROOT / ".local" / "rehearsal"
HOST = "localhost"
CACHE_USER = "bici-app"
DB_ADMIN = "bici_admin"
DB_APP = "bici_app"  # created by migration 0004
START_TIMEOUT_S = 30.0
# The demo secrets `make run` uses too: the sample events are signed with them.
WEBHOOK_SECRETS = {
    "INITIATION_WEBHOOK_SECRET": "test-initiation-secret",
    "TWILIO_AUTH_TOKEN": "test-twilio-auth-token",
    "ELEVENLABS_WEBHOOK_SECRET": "test-elevenlabs-secret",
}


@dataclass
class Tls:
    """A local CA and one server certificate for ``localhost`` and 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the local CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(directory: Path) -> Tls:
    """The CA and server certificate in ``directory`` (made once, valid for 30 days)."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if tls.cert.exists() and time.time() - tls.cert.stat().st_mtime < 20 * 86400:
        return tls
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    openssl = ["openssl"]
    _run(
        [
            *openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-keyout",
            str(ca_key),
            "-out",
            str(tls.ca),
            "-subj",
            "/CN=bici rehearsal local CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    _run(
        [
            *openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tls.key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={HOST}",
        ]
    )
    _run(
        [
            *openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(tls.ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            str(tls.cert),
            "-extfile",
            str(extensions),
        ]
    )
    return tls


def _run(command: list[str], **kwargs: Any) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120, **kwargs)


@dataclass
class Stack:
    """The running local services and the values the template's references resolve to."""

    tls: Tls
    moto_url: str
    redis_port: int
    pg_port: int
    cache_password: str
    db_password: str
    secret_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    _stop: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    @property
    def database_url(self) -> str:
        """The admin URL over verified TLS (the CA must be trusted: ``SSL_CERT_FILE``)."""
        return (
            f"postgresql://{DB_ADMIN}:{self.db_password}@{HOST}:{self.pg_port}/bici"
            "?sslmode=verify-full"
        )

    def close(self) -> None:
        """Stop every service started here."""
        self._stop.close()


@contextlib.contextmanager
def running_stack(template: dict[str, Any]) -> Iterator[Stack]:
    """Start moto, the TLS Redis cluster node and the TLS PostgreSQL; create the template's
    secrets and queues; migrate the database. Stops everything on exit."""
    STATE.mkdir(parents=True, exist_ok=True)
    tls = make_tls(STATE / "tls")
    with contextlib.ExitStack() as stop:
        moto_url = stop.enter_context(_moto())
        cache_password, db_password = secrets.token_hex(16), secrets.token_hex(16)
        redis_port = stop.enter_context(_redis(tls, cache_password, cache_users(template)))
        pg_port = stop.enter_context(_postgres(tls, db_password))
        stack = Stack(tls, moto_url, redis_port, pg_port, cache_password, db_password)
        _create_aws_resources(stack, template)
        _migrate(stack)
        stack._stop = stop.pop_all()
    try:
        yield stack
    finally:
        stack.close()


# -- moto ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = services._free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.stop()


def _boto(stack: Stack, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=stack.moto_url,
        region_name=LOCAL_REGION,
        aws_access_key_id="rehearsal",
        aws_secret_access_key="rehearsal",  # noqa: S106 - moto accepts any
    )


def _create_aws_resources(stack: Stack, template: dict[str, Any]) -> None:
    """Every AWS::SecretsManager::Secret and AWS::SQS::Queue of the template, in moto."""
    resources = template["Resources"]
    secrets_client, sqs = _boto(stack, "secretsmanager"), _boto(stack, "sqs")
    env_names = _secret_env_names(template)
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind == "AWS::SecretsManager::Secret":
            value = _secret_value(stack, logical_id, resource, env_names.get(logical_id))
            arn = secrets_client.create_secret(Name=f"rehearsal/{logical_id}", SecretString=value)
            stack.secret_arns[logical_id] = arn["ARN"]
        elif kind == "AWS::SQS::Queue":
            fifo = bool((resource.get("Properties") or {}).get("FifoQueue"))
            name = logical_id + (".fifo" if fifo else "")
            attributes = {"FifoQueue": "true"} if fifo else {}
            stack.queue_urls[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)[
                "QueueUrl"
            ]


def _secret_env_names(template: dict[str, Any]) -> dict[str, str]:
    """Secret logical id -> the variable (without ``_ARN``) a function reads it as."""
    names: dict[str, str] = {}
    for resource in template["Resources"].values():
        variables = ((resource.get("Properties") or {}).get("Environment") or {}).get(
            "Variables"
        ) or {}
        for name, value in variables.items():
            if isinstance(value, dict) and name.endswith("_ARN") and "Ref" in value:
                names.setdefault(str(value["Ref"]), name.removesuffix("_ARN"))
    return names


def _secret_value(stack: Stack, logical_id: str, resource: dict[str, Any], env: str | None) -> str:
    if env in WEBHOOK_SECRETS:
        return WEBHOOK_SECRETS[env]
    generate = (resource.get("Properties") or {}).get("GenerateSecretString") or {}
    template_json = generate.get("SecretStringTemplate")
    if isinstance(template_json, str):
        value = json.loads(template_json)
        user = str(value.get("username") or "")
        value[generate.get("GenerateStringKey", "password")] = (
            stack.db_password if user == DB_ADMIN else stack.cache_password
        )
        return json.dumps(value)
    return secrets.token_hex(24)


# -- Redis: ElastiCache Serverless as the functions see it ---------------------------------


def cache_user_name(logical_id: str, resource: dict[str, Any]) -> str:
    """The local name of an ``AWS::ElastiCache::User`` (its ``Ref``, the user id, in AWS)."""
    name = (resource.get("Properties") or {}).get("UserName")
    if isinstance(name, str):
        return name
    join = name.get("Fn::Join") if isinstance(name, dict) else None
    if isinstance(join, list) and join[1] and isinstance(join[1][0], str):
        return f"{join[1][0]}{join[0]}rehearsal"  # the stack-id suffix, locally "rehearsal"
    return logical_id.lower()


def cache_users(template: dict[str, Any]) -> list[str]:
    """ACL rules for the template's cache users, with their own access strings. IAM users get
    ``nopass``: Redis cannot check an IAM token (ElastiCache does), but the function still
    signs one per connection, so its cost is in the rehearsal's numbers."""
    rules: list[str] = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::ElastiCache::User":
            continue
        props = resource.get("Properties") or {}
        access = str(props.get("AccessString") or "off").split()
        mode = (props.get("AuthenticationMode") or {}).get("Type")
        secret = "nopass" if mode == "iam" else f">{secrets.token_hex(16)}"
        rules += ["--user", cache_user_name(logical_id, resource), *access, secret]
    return rules


@contextlib.contextmanager
def _redis(tls: Tls, password: str, users: list[str]) -> Iterator[int]:
    import redis

    port, bus = services._free_port(), services._free_port()
    admin_password = secrets.token_hex(16)
    directory = Path(tempfile.mkdtemp(prefix="redis-", dir=STATE))
    # fmt: off
    command = [
        services.redis_server_binary(), "--bind", "127.0.0.1", "--port", "0",
        "--tls-port", str(port), "--tls-cert-file", str(tls.cert),
        "--tls-key-file", str(tls.key), "--tls-ca-cert-file", str(tls.ca),
        "--tls-auth-clients", "no", "--tls-cluster", "yes",
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(bus), "--save", "", "--appendonly", "no", "--dir", str(directory),
        # The template's users (default off); an RBAC password user for REDIS_AUTH_ARN setups;
        # "admin" only forms the cluster.
        *users,
        "--user", CACHE_USER, "on", f">{password}", "~bici:*", "+@all",
        "--user", "admin", "on", f">{admin_password}", "~*", "&*", "+@all",
    ]
    # fmt: on
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = _wait(
            lambda: redis.Redis(
                host="127.0.0.1",
                port=port,
                ssl=True,
                ssl_ca_certs=str(tls.ca),
                username="admin",
                password=admin_password,
                socket_timeout=2,
            ).ping(),
            "the TLS Redis",
        )
        del admin
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            ssl=True,
            ssl_ca_certs=str(tls.ca),
            username="admin",
            password=admin_password,
            socket_timeout=2,
            decode_responses=True,
        )
        client.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
        _wait(lambda: _cluster_ok(client.execute_command("CLUSTER INFO")), "the Redis cluster")
        client.close()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(directory, ignore_errors=True)


def _cluster_ok(info: Any) -> bool:
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    return "cluster_state:ok" in str(info)


def _wait(check: Any, what: str) -> Any:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


# -- PostgreSQL: RDS Proxy as the functions see it -----------------------------------------


@contextlib.contextmanager
def _postgres(tls: Tls, password: str) -> Iterator[int]:
    import os

    import pg8000.native

    bin_dir = _pg_bin_dir()
    user = services._pg_run_user()
    pgdata = STATE / f"pgdata-{bin_dir.parent.name}"
    if not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata, ignore_errors=True)
        services._prepare_pgdata(pgdata, bin_dir, user)
        initdb = [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"]
        initdb += ["--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        services._check(services._run(initdb, user=user, cwd=pgdata, timeout_s=120), "initdb")
    # PostgreSQL wants its key private to the account it runs as.
    for source, name in ((tls.cert, "server.crt"), (tls.key, "server.key")):
        target = pgdata / name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        if user is not None:
            os.chown(target, user.pw_uid, user.pw_gid)
    # TLS only: no plain TCP logins at all. The superuser (trust) only sets the stack up. The
    # application role logs in with an IAM token (DB_IAM_AUTH), which only RDS Proxy can check:
    # here it is signed and sent, and not checked.
    (pgdata / "pg_hba.conf").write_text(
        "hostssl all postgres 127.0.0.1/32 trust\n"
        f"hostssl all {DB_APP} 127.0.0.1/32 trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    )
    stop = [str(bin_dir / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"]
    if (pgdata / "postmaster.pid").exists():
        # Left running by a rehearsal that was killed: its port and data are ours.
        services._run(stop, user=user, cwd=pgdata, timeout_s=60)
    port = services._free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k '' -c ssl=on -c ssl_cert_file=server.crt"
        " -c ssl_key_file=server.key -c fsync=off"
    )
    log = pgdata / "server.log"
    start = [str(bin_dir / "pg_ctl"), "start", "-D", str(pgdata), "-l", str(log), "-o", options]
    start += ["-w", "-t", str(int(START_TIMEOUT_S))]
    services._check(
        services._run(start, user=user, cwd=pgdata, timeout_s=START_TIMEOUT_S + 10),
        "pg_ctl start (rehearsal PostgreSQL)",
        log,
    )
    try:
        admin = pg8000.native.Connection(
            "postgres", host=HOST, port=port, ssl_context=tls.client_context(), timeout=10
        )
        admin.run("DROP DATABASE IF EXISTS bici WITH (FORCE)")
        admin.run(f"DROP ROLE IF EXISTS {DB_ADMIN}")
        admin.run(
            f"CREATE ROLE {DB_ADMIN} LOGIN SUPERUSER PASSWORD {pg8000.native.literal(password)}"
        )
        admin.run(f"CREATE DATABASE bici OWNER {DB_ADMIN}")
        admin.close()
        yield port
    finally:
        services._run(stop, user=user, cwd=pgdata, timeout_s=60)


def _pg_bin_dir() -> Path:
    """The newest system PostgreSQL (Debian's, built with TLS; pgserver's build has none)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise services.ServiceError(
            "the rehearsal needs PostgreSQL server binaries built with TLS "
            "(apt-get install postgresql)"
        )
    return found[-1].parent


def _migrate(stack: Stack) -> None:
    """Apply the layer's migrations over verified TLS, as MigrateFunction would."""
    import os

    from devkit.lambda_env import add_layers_to_path

    add_layers_to_path()
    from leadlookup.adapters.db import Database
    from leadlookup.adapters.migrate import migrate
    from leadlookup.config import Settings

    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(stack.tls.ca)
    try:
        db = Database(Settings(database_url=stack.database_url))
        try:
            migrate(db)
        finally:
            db.close()
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved


__all__ = ["LOCAL_ACCOUNT_ID", "Stack", "Tls", "make_tls", "running_stack"]
