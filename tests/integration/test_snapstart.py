"""SnapStart runtime hooks through the real initiation handler, PostgreSQL and Redis.

The hooks are run the way the Lambda runtime interface client runs them (awslambdaric's
lambda_runtime_hooks_runner: the before-snapshot registry last-registered first, then the
after-restore registry in order), and connections are counted at the socket by loopback
proxies in front of both servers.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from snapshot_restore_py import get_after_restore, get_before_snapshot

from devkit.proxy import TcpProxy
from leadlookup import container as runtime_module
from leadlookup import snapstart
from leadlookup.adapters.aws import iam, secretsmanager
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from tests.conftest import load_handler
from tests.support import credentials
from tests.support.faults import initiation_event, insert_lead, new_phone
from tests.support.moto_server import REGION, moto_server

ROOT = Path(__file__).resolve().parents[2]
FN = "conversation_initiation"
Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


def run_before_snapshot() -> None:
    for func, args, kwargs in reversed(list(get_before_snapshot())):
        func(*args, **kwargs)


def run_after_restore() -> None:
    for func, args, kwargs in list(get_after_restore()):
        func(*args, **kwargs)


def wait_closed(proxy: TcpProxy, timeout_s: float = 5.0) -> int:
    """Open connections through ``proxy`` once the closes have drained (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while proxy.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    return proxy.open_connections


def variables(response: dict[str, Any]) -> dict[str, str]:
    assert response["statusCode"] == 200, response
    return dict(json.loads(response["body"])["dynamic_variables"])


@pytest.fixture
def proxied(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    """The handler's PostgreSQL and Redis behind counting proxies."""
    with (
        TcpProxy.from_url(app_env["DATABASE_URL"]) as pg,
        TcpProxy.from_url(app_env["REDIS_URL"]) as cache,
    ):
        monkeypatch.setenv("DATABASE_URL", pg.rewrite_url(app_env["DATABASE_URL"]))
        monkeypatch.setenv("REDIS_URL", cache.rewrite_url(app_env["REDIS_URL"]))
        load_handler(FN)  # its import registers the hooks, as on Lambda
        yield pg, cache
        runtime_module.set_runtime(None)


def test_snapstart_hooks_drop_connections_and_the_next_call_reconnects_lazily(
    proxied: tuple[TcpProxy, TcpProxy], invoke: Invoke, database_url: str
) -> None:
    pg, cache = proxied
    caller = new_phone()
    insert_lead(database_url, caller, DEFAULT_ORGANIZATION_ID)
    before = variables(invoke(FN, initiation_event(caller)))
    warm = runtime_module.get_runtime()
    assert (pg.connections, cache.connections) == (1, 1)

    run_before_snapshot()
    left_open = (wait_closed(pg), wait_closed(cache))
    pg.reset_counters()
    cache.reset_counters()
    run_after_restore()
    after = variables(invoke(FN, initiation_event(caller)))
    reconnected = (pg.connections, cache.connections)
    stranger = variables(invoke(FN, initiation_event(new_phone())))

    assert left_open == (0, 0)  # nothing in the snapshot holds a socket
    # The same answer, but for the clock: the two calls may fall either side of a minute.
    clock = {"current_time", "current_datetime", "full_datetime", "time_greeting"}
    assert {k: v for k, v in after.items() if k not in clock} == {
        k: v for k, v in before.items() if k not in clock
    }
    assert after["lead_id"] and after["customer_phone"] == caller
    # One new Redis connection; the lead and the organization came from Redis, so
    # PostgreSQL is not even connected until a call needs it.
    assert reconnected == (0, 1)
    assert runtime_module.get_runtime() is not warm  # breaker, L1, settings: all new
    assert stranger["lead_id"] != after["lead_id"]
    assert (pg.connections, cache.connections) == (1, 1)


def test_snapstart_before_snapshot_forgets_cached_secrets(
    proxied: tuple[TcpProxy, TcpProxy],
) -> None:
    cached = secretsmanager.client()

    run_before_snapshot()

    assert secretsmanager.client() is not cached
    assert runtime_module._runtime is None


def test_snapstart_after_restore_reseeds_random(proxied: tuple[TcpProxy, TcpProxy]) -> None:
    random.seed(7)
    in_snapshot = random.random()
    random.seed(7)

    run_after_restore()

    assert random.random() != in_snapshot


def test_snapstart_hooks_are_registered_once(proxied: tuple[TcpProxy, TcpProxy]) -> None:
    snapstart.register_hooks()

    before = [func for func, _, _ in get_before_snapshot()]
    after = [func for func, _, _ in get_after_restore()]
    assert before.count(snapstart.before_snapshot) == 1
    assert after.count(snapstart.after_restore) == 1


@pytest.fixture
def credentials_endpoint() -> Iterator[str]:
    with credentials.credentials_endpoint() as uri:
        yield uri


def test_snapstart_secrets_are_read_with_the_container_endpoint_credentials(
    credentials_endpoint: str,
) -> None:
    # A SnapStart function has no AWS_ACCESS_KEY_ID: they would be stale after a restore.
    with moto_server() as endpoint:
        arn = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_secret(Name="bici/snapstart", SecretString="webhook-secret")["ARN"]
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_endpoint,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token",
        }
        iam.reset()

        first = secretsmanager.SecretsClient(env).get(arn)
        snapstart.before_snapshot()
        after_restore = secretsmanager.SecretsClient(env).get(arn)

    assert first == after_restore == "webhook-secret"
    # Fetched once, then again after the snapshot dropped them.
    assert credentials.CredentialsEndpoint.seen == ["container-token", "container-token"]


# The initiation handler imported as Lambda's init does, then the before-snapshot hooks,
# with every socket connect and DNS lookup recorded: the snapshot must hold no connection
# (and so no secret read from Secrets Manager, no token), whatever the configuration says.
SNAPSHOT_SCRIPT = """
import json, sys
events = []
def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        events.append([event, repr(args[1:])])
sys.addaudithook(audit)
function_dir, layer_dir = sys.argv[1:3]
sys.path[:0] = [function_dir, layer_dir]
import app
from snapshot_restore_py import get_before_snapshot
for func, args, kwargs in reversed(list(get_before_snapshot())):
    func(*args, **kwargs)
from leadlookup import snapstart
print(json.dumps({
    "network": events,
    "missing": [m for m in snapstart.SNAPSHOT_IMPORTS if m not in sys.modules],
}))
"""


def test_snapstart_init_and_snapshot_open_no_connection(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        # The deployed configuration: every credential is a Secrets Manager ARN.
        "DB_HOST": "db.invalid",
        "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        "REDIS_URL": "rediss://cache.invalid:6379",
        "REDIS_CLUSTER": "true",
        "REDIS_AUTH_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:redis",
        "INITIATION_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:w",
    }

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SNAPSHOT_SCRIPT,
            str(ROOT / "functions" / FN),
            str(ROOT / "layers" / "leadlookup"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"network": [], "missing": []}
