"""Twilio webhooks, storage first: verify the signature, enqueue, answer empty TwiML.

Inbound SMS go to the inbound FIFO queue; delivery statuses of our sends (the StatusCallback
of every send) go to the reply outcome queue. Nothing here reaches the database or the cache.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.api import webhooks
from leadlookup.api.http import create_resolver
from leadlookup.container import process_inbound_sms_here, settings, store_outcome_here
from leadlookup.observability import emf, logger, tracer

app = create_resolver()


def _twiml() -> Response[str]:
    return Response(
        status_code=200, content_type=webhooks.TWIML_CONTENT_TYPE, body=webhooks.EMPTY_TWIML
    )


@app.post("/webhooks/twilio/sms")
def inbound_sms() -> Response[str]:
    webhooks.receive_sms(app.current_event.raw_event, settings(), process_inbound_sms_here)
    return _twiml()


@app.post("/webhooks/twilio/status")
def delivery_status() -> Response[str]:
    webhooks.receive_status(app.current_event.raw_event, settings(), store_outcome_here)
    return _twiml()


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
