"""ElevenLabs conversation-initiation webhook: who is calling which store, while it rings.

Leaner than the other API handlers on purpose: a warm answer has to stay within 2x one Redis
GET (BENCHMARKS.md), so the one route is matched without Powertools' resolver, and there is
no Powertools Tracer around it. Lambda's own X-Ray segment already times every invocation;
the Tracer's handler subsegment repeats it, and nothing below is instrumented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leadlookup.api.http import single_route
from leadlookup.container import get_runtime
from leadlookup.observability import emf, logger
from leadlookup.snapstart import register_hooks
from leadlookup.usecases import initiation

if TYPE_CHECKING:
    # For the annotation only: nothing else on this cold path imports it.
    from aws_lambda_powertools.utilities.typing import LambdaContext

ROUTE = ("POST", "/webhooks/elevenlabs/conversation-initiation")
register_hooks()  # used only when the InitiationSnapStart parameter is on


@logger.inject_lambda_context(clear_state=True)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The API request id, read directly rather than by a JMESPath query on every call.
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    return single_route(
        event, *ROUTE, lambda: initiation.respond(event, lambda: get_runtime().service)
    )
