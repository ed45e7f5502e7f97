"""Twilio webhooks, storage first: verify the signature, enqueue, answer empty TwiML.

Inbound SMS go to the inbound FIFO queue; delivery statuses of our sends (the StatusCallback
of every send) go to the reply outcome queue.
"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths

from leadlookup import sms
from leadlookup.http import create_resolver
from leadlookup.observability import emf, logger, tracer
from leadlookup.replies import delivery
from leadlookup.runtime import get_runtime

app = create_resolver()


@app.post("/webhooks/twilio/sms")
def inbound_sms() -> Response:
    sms.receive(app.current_event.raw_event, get_runtime().service)
    return Response(status_code=200, content_type=sms.TWIML_CONTENT_TYPE, body=sms.EMPTY_TWIML)


@app.post("/webhooks/twilio/status")
def delivery_status() -> Response:
    runtime = get_runtime()
    delivery.receive(app.current_event.raw_event, runtime.settings, lambda: runtime.service)
    return Response(status_code=200, content_type=sms.TWIML_CONTENT_TYPE, body=sms.EMPTY_TWIML)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
