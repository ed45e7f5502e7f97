"""The webhooks verify and enqueue: deployed, they never load the data layer or a use case.

Each webhook runs in a fresh interpreter, configured as in AWS (its queue on SQS, here moto in
server mode), answers a signed sample event, and reports every module it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from devkit.postcall_events import signature_timestamp
from tests.conftest import EVENTS, ROOT, TEST_SECRETS
from tests.support.moto_server import CREDENTIALS, REGION, moto_server

# What storage first keeps out of a webhook: the data layer and the processors.
FORBIDDEN_PREFIXES = (
    "leadlookup.adapters.db",
    "leadlookup.adapters.repository",
    "leadlookup.adapters.cache",
    "leadlookup.usecases",
    "pg8000",
    "redis",
)
# Run in the child: invoke the function's real handler once, print status and modules.
CHILD = """
import json, sys
from devkit import lambda_env
spec = lambda_env.function_for_code(sys.argv[1])
module = lambda_env.load_module(spec)
event = json.loads(open(sys.argv[2]).read())
if sys.argv[3]:  # a signed sample is dated: answer at the time it was signed
    from leadlookup.api import webhooks
    webhooks.wall_clock = lambda: float(sys.argv[3])
response = module.lambda_handler(event, lambda_env.LambdaContext(spec))
print(json.dumps({"status": response["statusCode"], "modules": sorted(sys.modules)}))
"""
CASES = [
    ("sms_webhook", "sms_webhook/signed.json", "INBOUND_SMS_QUEUE_URL", "inbound.fifo"),
    ("sms_webhook", "twilio_status/delivered.json", "REPLY_OUTCOME_QUEUE_URL", "outcomes"),
    (
        "post_call_webhook",
        "post_call_webhook/post_call_signed.json",
        "POST_CALL_QUEUE_URL",
        "post-call",
    ),
]


def _loaded(function_dir: str, event: Path, env: dict[str, str]) -> dict[str, object]:
    sample = json.loads(event.read_text())
    signed_at = (
        str(signature_timestamp(sample)) if "elevenlabs-signature" in sample["headers"] else ""
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, function_dir, str(event), signed_at],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("function_dir", "event", "queue_variable", "queue"), CASES)
def test_webhook_loads_no_database_cache_or_use_case_module(
    function_dir: str, event: str, queue_variable: str, queue: str
) -> None:
    with moto_server() as endpoint:
        sqs = boto3.client(
            "sqs",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        attributes = {"FifoQueue": "true"} if queue.endswith(".fifo") else {}
        url = sqs.create_queue(QueueName=queue, Attributes=attributes)["QueueUrl"]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "leadlookup"), str(ROOT)]),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
            **TEST_SECRETS,
            queue_variable: url,
            # As the template sets it for the webhooks: never try the Redis client.
            "REDIS_ENABLED": "false",
            "POWERTOOLS_TRACE_DISABLED": "1",
        }

        result = _loaded(function_dir, EVENTS / event, env)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])

    loaded = [str(m) for m in result["modules"]]  # type: ignore[attr-defined]
    forbidden = [m for m in loaded if m.startswith(FORBIDDEN_PREFIXES)]
    assert result["status"] == 200
    assert len(received) == 1, "the webhook queued the message"
    assert forbidden == []
    assert "leadlookup.api.webhooks" in loaded  # the check looked at the real path
