"""events/env.json, the `sam local --env-vars` file: complete against the template, and working.

`sam local` passes a function only the variables the template declares for it, taking their
values from this file; a declared variable missing here keeps its AWS value (an RDS Proxy
host, a secret ARN). So every function of the template has an entry, every entry holds every
variable its function declares (Globals and its own), and the file is what devkit.sam_local
generates. Docker is not available here, so the last tests run the handlers in this process
with exactly a function's entry as its environment, as the container would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pg8000.native
import pytest

from devkit import lambda_env, sam_local
from leadlookup import container as runtime_module
from leadlookup.adapters.db import connect_params
from leadlookup.config import Settings
from tests.conftest import EVENTS, TEST_SECRETS
from tests.integration.test_sms import fields_of, fresh, message_rows

pytestmark = pytest.mark.infra

ENV_FILE = sam_local.ENV_FILE
Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def env_file() -> dict[str, dict[str, str]]:
    document: dict[str, dict[str, str]] = json.loads(ENV_FILE.read_text(encoding="utf-8"))
    return document


def test_sam_local_env_file_is_the_generated_one() -> None:
    assert ENV_FILE.read_text(encoding="utf-8") == sam_local.render(sam_local.env_vars()), (
        "events/env.json is out of date: run .venv/bin/python -m devkit.sam_local"
    )


def test_sam_local_env_file_has_every_variable_of_every_function(
    env_file: dict[str, dict[str, str]], template: dict[str, Any]
) -> None:
    specs = lambda_env.functions(template)

    assert set(env_file) == set(specs)
    for name, spec in specs.items():
        assert set(env_file[name]) == set(spec.environment), name
        assert all(isinstance(value, str) for value in env_file[name].values()), name


def test_sam_local_env_file_points_at_the_docker_host_without_iam_or_secrets_manager(
    env_file: dict[str, dict[str, str]],
) -> None:
    for name, env in env_file.items():
        database = urlsplit(env["DATABASE_URL"])
        assert (database.hostname, database.port) == (sam_local.DOCKER_HOST, 5432), name
        assert env["REDIS_URL"] == f"redis://{sam_local.DOCKER_HOST}:6379/0", name
        assert (env["DB_IAM_AUTH"], env["DB_SSLMODE"], env["REDIS_IAM_USER"]) == (
            "false",
            "disable",
            "",
        ), name
        assert env["REDIS_CLUSTER"] == "false", name
        assert not [v for v in env.values() if "arn:" in v or "amazonaws" in v], name
        assert not [k for k, v in env.items() if k.endswith(("_ARN", "_QUEUE_URL")) and v], name
        for secret, value in TEST_SECRETS.items():
            if secret in env:
                assert env[secret] == value, (name, secret)
    webhooks = {
        "ConversationInitiationFunction": "INITIATION_WEBHOOK_SECRET",
        "SmsWebhookFunction": "TWILIO_AUTH_TOKEN",
        "PostCallWebhookFunction": "ELEVENLABS_WEBHOOK_SECRET",
    }
    for function, secret in webhooks.items():
        assert env_file[function][secret] == TEST_SECRETS[secret], function


def test_sam_local_env_file_host_can_be_the_loopback_for_a_host_network() -> None:
    document = sam_local.env_vars(host="127.0.0.1")

    assert {urlsplit(env["DATABASE_URL"]).hostname for env in document.values()} == {"127.0.0.1"}
    assert {env["DB_HOST"] for env in document.values()} == {"127.0.0.1"}


def test_sam_local_env_file_generator_names_a_variable_without_a_local_value(
    template: dict[str, Any],
) -> None:
    changed = json.loads(json.dumps(template))
    variables = changed["Resources"]["LeadUpdateFunction"]["Properties"]["Environment"]
    variables["Variables"]["NEW_TABLE"] = {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}

    with pytest.raises(sam_local.LocalEnvError, match=r"LeadUpdateFunction: .*NEW_TABLE"):
        sam_local.env_vars(changed)


@pytest.mark.parametrize("function", sorted(lambda_env.functions()))
def test_sam_local_env_file_configures_local_connections_without_iam(
    env_file: dict[str, dict[str, str]], function: str
) -> None:
    settings = Settings.from_env(env_file[function])

    params = connect_params(settings)

    assert params.password_source is None and params.ssl_context is None
    assert params.host == sam_local.DOCKER_HOST and params.database == sam_local.DATABASE
    assert not settings.redis_cluster and settings.redis_iam_user is None


# -- the handlers under a function's entry ---------------------------------------------------


@pytest.fixture
def run_as(
    monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str, key_prefix: str
) -> Iterator[Callable[[str], None]]:
    """Set the process environment to one function's entry, as `sam local` sets a container's.

    Only where the services are differs: this suite's own database and Redis (the file names
    the `bici` database on the Docker host), and a key prefix of this test alone.
    """
    document = sam_local.env_vars(host="127.0.0.1")

    def apply(function: str) -> None:
        env = dict(document[function])
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, CACHE_KEY_PREFIX=key_prefix)
        for name in ("INBOUND_SMS_QUEUE_URL", "POWERTOOLS_TRACE_DISABLED"):
            monkeypatch.delenv(name, raising=False)
        # What `sam local` adds; Powertools' tracer switches itself off under it.
        monkeypatch.setenv("AWS_SAM_LOCAL", "true")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        runtime_module.set_runtime(None)

    yield apply
    runtime_module.set_runtime(None)


def test_sam_local_env_file_runs_the_initiation_webhook_with_its_test_secret(
    run_as: Callable[[str], None], invoke: Invoke
) -> None:
    run_as("ConversationInitiationFunction")
    event = json.loads((EVENTS / "conversation_initiation" / "new_caller.json").read_text())

    response = invoke("conversation_initiation", event)

    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["dynamic_variables"]["lead_id"] != ""


def test_sam_local_env_file_runs_the_sms_webhook_and_its_in_process_hand_off(
    run_as: Callable[[str], None], invoke: Invoke, db: pg8000.native.Connection
) -> None:
    run_as("SmsWebhookFunction")
    event = fresh()

    response = invoke("sms_webhook", event)

    assert response["statusCode"] == 200, response
    assert len(message_rows(db, fields_of(event)["MessageSid"])) == 1


def test_sam_local_env_file_is_documented() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")

    assert "--env-vars events/env.json" in readme
    assert "host.docker.internal" in readme
    assert "python -m devkit.sam_local" in readme
