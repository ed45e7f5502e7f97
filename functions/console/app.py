"""The staff console: its page, modules and styles (static/), and where to sign in.

No database, cache or secret: the page calls the staff API from the browser with the signed-in
member's token. What each path answers: leadlookup.api.console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.api import console
from leadlookup.api.http import unexpected_error_response
from leadlookup.container import settings
from leadlookup.observability import logger

# The template's routes for this function (tests/infra checks the two agree).
ROUTES = frozenset({("GET", "/console"), ("GET", "/console/{proxy+}")})
# Read once per container: a few small files, answered from memory.
ASSETS = console.load_assets(Path(__file__).resolve().parent / "static")


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return console.respond(event, ASSETS, settings())
    except Exception as exc:
        response = unexpected_error_response(exc)
        return {
            "statusCode": response.status_code,
            "headers": dict(response.headers),
            "body": response.body,
            "isBase64Encoded": False,
        }
