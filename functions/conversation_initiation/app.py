"""ElevenLabs conversation-initiation webhook: who is calling which store, while it rings."""

from aws_lambda_powertools.logging import correlation_paths

from leadlookup import initiation
from leadlookup.http import create_resolver
from leadlookup.observability import emf, logger, tracer
from leadlookup.runtime import get_runtime
from leadlookup.snapstart import register_hooks

app = create_resolver()
register_hooks()  # used only when the InitiationSnapStart parameter is on


@app.post("/webhooks/elevenlabs/conversation-initiation")
def conversation_initiation() -> dict:
    return initiation.respond(app.current_event.raw_event, lambda: get_runtime().service)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
