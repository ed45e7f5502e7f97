"""ElevenLabs post-call webhook, storage first: verify the signature, enqueue, answer 200.

Outside the VPC like the Twilio webhooks: nothing here reaches the database or the cache; the
post-call processor stores each queued report once.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.api import webhooks
from leadlookup.api.http import create_resolver
from leadlookup.container import process_post_call_here, settings
from leadlookup.observability import emf, logger, tracer

app = create_resolver()


@app.post("/webhooks/elevenlabs/post-call")
def post_call() -> dict[str, str]:
    event = app.current_event.raw_event
    return {"status": webhooks.receive_post_call(event, settings(), process_post_call_here)}


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
