"""The built artifact run the way Lambda runs it (devkit.rehearsal): fresh python3.13
processes under awslambdaric, secrets and queues on moto, Redis as ElastiCache Serverless
(TLS, cluster mode, RBAC user), PostgreSQL over verified TLS. A handful of cold starts: these
tests assert answers, imports and the deadline bound, never timings beyond that bound."""

from __future__ import annotations

import copy
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.rehearsal.function import FunctionProcess
from devkit.rehearsal.session import Rehearsal
from tests.support import credentials
from tests.support.faults import new_phone

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
INITIATION = "ConversationInitiationFunction"
DEADLINE_MS = 1500
KNOWN_CALLER = json.loads(
    (REPO / "events/conversation_initiation/known_caller.json").read_text(encoding="utf-8")
)
SMS_SIGNED = json.loads((REPO / "events/sms_webhook/signed.json").read_text(encoding="utf-8"))
DATA_STORE_DRIVERS = {"pg8000", "redis", "phonenumbers"}


def _initiation(caller: str) -> dict[str, Any]:
    event = copy.deepcopy(KNOWN_CALLER)
    body = json.loads(event["body"])
    body["caller_id"] = caller
    event["body"] = json.dumps(body)
    return event


def _imported(fn: FunctionProcess) -> set[str]:
    """Every module the process imported (from its ``-X importtime`` lines)."""
    names = set()
    for line in fn.stderr().splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _variables(invocation: Any) -> dict[str, str]:
    assert invocation.error is None, invocation.error
    assert invocation.result["statusCode"] == 200, invocation.result
    return dict(json.loads(invocation.result["body"])["dynamic_variables"])


@pytest.fixture(scope="module")
def rehearsal(sam_build: Path) -> Iterator[Rehearsal]:
    """The stack, with the known caller's lead and store already in Redis."""
    with Rehearsal.open(build=sam_build) as opened:
        with opened.function(INITIATION) as fn:
            seeded = _variables(fn.invoke(KNOWN_CALLER))
        assert seeded["lead_id"], seeded
        yield opened


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port whose connections complete (the kernel's backlog) and never answer."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def test_rehearsal_initiation_answers_a_known_caller_from_redis_without_pg8000_or_sdk(
    rehearsal: Rehearsal,
) -> None:
    with rehearsal.function(INITIATION, importtime=True) as fn:
        first = fn.invoke(KNOWN_CALLER)
        waits = fn.waits(fn.started_at, first.done_at or 0)
        imported = _imported(fn)

    variables = _variables(first)
    assert variables["lead_id"] and variables["customer_phone"] == "+16045550142"
    assert "pg8000" not in imported
    assert "postgresql" not in waits, waits
    # Secrets came over one signed HTTP call each, not through an AWS SDK client.
    assert not {"boto3", "botocore.client"} & imported
    assert waits["redis"]["tls"] > 0 and waits["aws"]["io"] > 0


def test_rehearsal_sms_webhook_cold_path_imports_no_data_store_driver(
    rehearsal: Rehearsal,
) -> None:
    with rehearsal.function("SmsWebhookFunction", importtime=True) as fn:
        first = fn.invoke(SMS_SIGNED)
        imported = _imported(fn)

    assert first.error is None and first.result["statusCode"] == 200, first.result
    assert not DATA_STORE_DRIVERS & imported, DATA_STORE_DRIVERS & imported


@pytest.mark.parametrize(
    ("dependency", "overrides", "caller"),
    [
        ("secrets manager", lambda port: {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}, None),
        ("redis", lambda port: {"REDIS_URL": f"rediss://localhost:{port}"}, None),
        ("postgresql", lambda port: {"DB_PORT": str(port)}, "new"),
    ],
)
def test_rehearsal_cold_initiation_answers_within_the_deadline_when_a_dependency_is_blackholed(
    rehearsal: Rehearsal, blackhole: int, dependency: str, overrides: Any, caller: str | None
) -> None:
    event = KNOWN_CALLER if caller is None else _initiation(new_phone())
    env = {**overrides(blackhole), "INITIATION_DEADLINE_MS": str(DEADLINE_MS)}

    with rehearsal.function(INITIATION, overrides=env) as fn:
        first = fn.invoke(event)

    variables = _variables(first)
    assert first.duration_ms is not None and first.duration_ms < DEADLINE_MS, (
        f"{dependency} blackholed: answered after {first.duration_ms:.0f} ms"
    )
    if dependency == "redis":
        assert variables["lead_id"], "PostgreSQL still answers when only Redis is gone"
    else:
        assert variables["lead_id"] == "", "a blackholed dependency gives the degraded answer"


# -- SnapStart ------------------------------------------------------------------------------
# The runtime interface client runs the before-snapshot hooks after init, waits in
# /restore/next, runs the after-restore hooks, then takes events. Connections are counted at
# the socket (the rehearsal's probe).

CONTAINER_TOKEN = "rehearsal-container-token"


@pytest.fixture
def credentials_uri() -> Iterator[str]:
    with credentials.credentials_endpoint() as uri:
        yield uri


def _connects(fn: FunctionProcess, start: float, end: float) -> Counter[str]:
    """Connections opened to each peer (aws, redis, postgresql) between two instants."""
    counts: Counter[str] = Counter()
    for line in fn.probe_path.read_text().splitlines() if fn.probe_path.exists() else []:
        first, _, kind, label = line.split(" ", 3)
        if kind == "connect" and start <= float(first) <= end:
            counts[label] += 1
    return counts


def test_rehearsal_snapstart_restored_container_reconnects_lazily_and_answers(
    rehearsal: Rehearsal, credentials_uri: str
) -> None:
    fn = rehearsal.function(INITIATION, snapstart=True, importtime=True)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        fn.env.pop(name, None)
    fn.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = credentials_uri
    fn.env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = CONTAINER_TOKEN

    with fn:  # init and the before-snapshot hooks ran; held in /restore/next
        snapshot_at = fn.api.snapshot_taken_at
        assert snapshot_at is not None, "awslambdaric did not ask for /restore/next"
        before_snapshot = _connects(fn, fn.started_at, snapshot_at)
        fn.restore()
        first = fn.invoke(KNOWN_CALLER)
        second = fn.invoke(KNOWN_CALLER)
        first_call = _connects(fn, snapshot_at, first.done_at or 0)
        second_call = _connects(fn, first.done_at or 0, second.done_at or 0)
        errors = (fn.api.init_error, fn.api.restore_error)
        imported = _imported(fn)

    assert errors == (None, None)
    assert before_snapshot == Counter()  # the snapshot holds no connection
    # awslambdaric ran leadlookup.snapstart's before-snapshot hook: it imported the drivers
    # (an on-demand cold start answered from Redis never imports pg8000).
    # (-X importtime prints no line for the pg8000 package itself, only for its modules.)
    assert {"pg8000.core", "redis.cluster"} <= imported
    answer = _variables(first)
    # The same answer, but for the clock: the two calls may fall either side of a minute.
    clock = {"current_time", "current_datetime", "full_datetime", "time_greeting"}
    assert {k: v for k, v in answer.items() if k not in clock} == {
        k: v for k, v in _variables(second).items() if k not in clock
    }
    assert answer["lead_id"] and answer["customer_phone"] == "+16045550142"
    # After the restore the first call connects what it needs: Secrets Manager and Redis,
    # not PostgreSQL (the answer is in Redis); the second call reuses them.
    assert first_call["aws"] >= 1 and first_call["redis"] >= 1, first_call
    assert first_call["postgresql"] == 0, first_call
    assert second_call == Counter(), second_call
    # Signed with the container endpoint's credentials, fetched once after the restore.
    assert credentials.CredentialsEndpoint.seen == [CONTAINER_TOKEN]
