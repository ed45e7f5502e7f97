"""HTTP plumbing shared by the API handlers: the one error-to-status mapping, bodies, headers."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError

from leadlookup.errors import (
    ConfigError,
    Conflict,
    DatabaseError,
    Forbidden,
    InvalidInput,
    LookupServiceError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from leadlookup.observability import logger

# "3", 3 or W/"3": a lead's ETag is its version; the weak form names the same version.
_ETAG_VERSION = re.compile(r'\s*(?:W/)?("?)([0-9]{1,10})\1\s*')
# Deeper JSON than this is refused before it can exhaust the stack of a recursive walk.
MAX_JSON_DEPTH = 32
TOO_DEEP_MESSAGE = f"body is nested deeper than {MAX_JSON_DEPTH} levels"
BYTE_ORDER_MARK = "\ufeff"
BOM_MESSAGE = "body starts with a byte order mark (BOM); send UTF-8 without it"
# One encoder for every response: ``json.dumps`` with options builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)

# The status of every error kind, most specific first: the one place errors meet HTTP (the
# cache-admin results are built from it too). 503 is only for a dependency that is down or
# timed out (a retry may succeed); anything not listed (a database error that is not an
# outage, a configuration error, a bug) is a 500 whose message tells the client nothing.
ERROR_STATUSES: tuple[tuple[type[LookupServiceError], int], ...] = (
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PreconditionFailed, 412),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (Unavailable, 503),
)
INTERNAL_ERROR_MESSAGE = "internal error"


def error_status(exc: LookupServiceError) -> int:
    """The HTTP status that answers ``exc``."""
    for kind, status in ERROR_STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def error_message(exc: LookupServiceError) -> str:
    """What the client is told: the error's own words, except for a 500."""
    return INTERNAL_ERROR_MESSAGE if error_status(exc) == 500 else str(exc)


def log_internal_error(exc: BaseException) -> None:
    """Log a failure that answers 500, once: its type and where it was raised, never its text.

    Database and driver messages can quote the row (personal data), so only a configuration
    error, whose message names a variable, is logged in its own words.
    """
    frame = None
    tb = exc.__traceback__
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
    logger.error(
        "internal error",
        error_type=type(exc).__name__,
        sqlstate=exc.sqlstate if isinstance(exc, DatabaseError) else None,
        reason=str(exc) if isinstance(exc, ConfigError) else None,
        raised_at=f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
        if frame is not None
        else None,
    )


class JsonText(str):
    """A body that is JSON text already: :func:`json_response` sends it as it is."""

    __slots__ = ()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    """A JSON response (``body`` encoded, unless it is :class:`JsonText`)."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=str(body) if isinstance(body, JsonText) else _JSON.encode(body),
        headers=headers,
    )


def json_text(value: Any) -> JsonText:
    """``value`` as the JSON text :func:`json_response` would send."""
    return JsonText(_JSON.encode(value))


def error_response(status: int, message: str) -> Response[str]:
    """A rejection: JSON ``{"message": ...}`` naming the problem."""
    return json_response(status, {"message": message})


def not_found_response() -> Response[str]:
    """The JSON 404 of a method and path that no route of the function serves."""
    return error_response(404, "route not found")


def service_error_response(exc: LookupServiceError) -> Response[str]:
    """The JSON rejection of ``exc``; a 500 is logged (without its text), a 503 named."""
    status = error_status(exc)
    if status == 500:
        log_internal_error(exc)
        return error_response(status, error_message(exc))
    if isinstance(exc, Unavailable):
        logger.warning("dependency unavailable", error=str(exc))
    return json_response(status, {"message": error_message(exc), **exc.details})


def unexpected_error_response(exc: Exception) -> Response[str]:
    """A bug, answered like any other 500 instead of API Gateway's non-JSON error."""
    log_internal_error(exc)
    return error_response(500, INTERNAL_ERROR_MESSAGE)


def create_resolver() -> APIGatewayHttpResolver:
    """An HTTP API (payload 2.0) resolver whose errors all map to JSON messages here."""
    app = APIGatewayHttpResolver()
    # Registered by call, not as decorators: Powertools' exception_handler is unannotated, and
    # a decorator without types would leave the handler untyped.
    app.exception_handler(LookupServiceError)(service_error_response)
    app.exception_handler(Exception)(_unexpected)
    app.not_found(_not_found)
    return app


def _unexpected(exc: Exception) -> Response[str]:
    if isinstance(exc, ServiceError):
        raise exc  # Powertools' own HTTP errors: it answers them itself
    return unexpected_error_response(exc)


def _not_found(_exc: Exception) -> Response[str]:
    return not_found_response()


def single_route(
    event: dict[str, Any], method: str, path: str, answer: Callable[[], Any]
) -> dict[str, Any]:
    """The HTTP API (payload 2.0) result of a function that serves one route, sans resolver.

    What :func:`create_resolver` answers, status for status and byte for byte: ``answer()``'s
    JSON with 200, the same error mapping, a JSON 404 for any other method or path. It is for
    the initiation webhook, whose warm answer has to stay within 2x one Redis GET: the
    resolver's routing and response building were about a sixth of a warm request in
    ``python -m devkit.bench.profile initiation_warm``; matching the one route by hand is
    under 1% there.
    """
    context = event.get("requestContext") or {}
    stage = context.get("stage") or "$default"
    raw_path = event.get("rawPath") or ""
    if stage != "$default" and raw_path.startswith(f"/{stage}"):
        raw_path = raw_path[len(stage) + 1 :]  # the stage is in rawPath unless it is $default
    if ((context.get("http") or {}).get("method") or "").upper() != method or raw_path != path:
        return _proxy_result(not_found_response())
    try:
        response = json_response(200, answer())
    except LookupServiceError as exc:
        response = service_error_response(exc)
    except Exception as exc:
        response = unexpected_error_response(exc)
    return _proxy_result(response)


def _proxy_result(response: Response[str]) -> dict[str, Any]:
    # Payload 2.0's result, shaped as the resolver shapes it (no cookies are ever set here).
    return {
        "statusCode": response.status_code,
        "body": response.body,
        "isBase64Encoded": False,
        "headers": dict(response.headers),
        "cookies": [],
    }


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than {limit} bytes")


def raw_body(event: dict[str, Any], limit: int) -> bytes:
    """The request body as bytes (base64 undone), or 413 when it is over ``limit`` bytes."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise InvalidInput("body must be text")
    # Cheap early refusal: base64 is 4/3 the size of what it encodes.
    if len(body) > limit * 4 // 3 + 4:
        raise _too_large(limit)
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("body is not valid base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > limit:
        raise _too_large(limit)
    return data


def body_text(event: dict[str, Any], limit: int) -> str:
    """The body as UTF-8 text; 400 when it is not UTF-8."""
    body = event.get("body")
    if isinstance(body, str) and body.isascii() and not event.get("isBase64Encoded"):
        # ASCII text is its own UTF-8: its length is its size, and there is nothing to decode.
        if len(body) > limit:
            raise _too_large(limit)
        return body
    try:
        return raw_body(event, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid UTF-8") from None


def parse_json(text: str, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``text`` parsed as JSON; a 400 that names the cause otherwise (every JSON body's parse).

    The two causes a sender cannot guess from "not valid JSON" are named: a UTF-8 byte order
    mark in front (editors and some HTTP clients on Windows add one; JSON forbids it), and
    nesting deeper than the parser's recursion allows. They are told apart only once parsing
    failed, so a good body pays nothing for it.
    """
    try:
        return json.loads(text, parse_constant=parse_constant)
    except RecursionError:
        raise InvalidInput(TOO_DEEP_MESSAGE) from None
    except ValueError:
        if text.startswith(BYTE_ORDER_MARK):
            raise InvalidInput(BOM_MESSAGE) from None
        raise InvalidInput("body is not valid JSON") from None


def json_object(event: dict[str, Any], limit: int) -> dict[str, Any]:
    """The body parsed as a JSON object; 400 naming what is wrong otherwise."""
    text = body_text(event, limit)
    value = parse_json(text)
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object")
    # Each level opens with "{" or "[", so a body with few of them needs no walk (most don't).
    openers = text.count("{") + text.count("[")
    if openers > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise InvalidInput(TOO_DEEP_MESSAGE)
    return value


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header by case-insensitive name (HTTP API lower-cases them already)."""
    headers = event.get("headers") or {}
    wanted = name.lower()
    exact = headers.get(wanted)
    if exact is not None:
        return str(exact)
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def require_media_type(event: dict[str, Any], accepted: tuple[str, ...]) -> None:
    """415 unless the Content-Type (parameters such as charset aside) is one of ``accepted``."""
    media_type = (header(event, "Content-Type") or "").split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(accepted)}")


def if_match_version(event: dict[str, Any]) -> int | None:
    """The version named by ``If-Match`` (quoted, bare or weak); None when absent or ``*``."""
    value = header(event, "If-Match")
    if value is None or value.strip() == "*":
        return None
    match = _ETAG_VERSION.fullmatch(value)
    if match is None:
        raise InvalidInput('If-Match must be one lead version, e.g. "3"')
    return int(match.group(2))


def _depth(value: Any) -> int:
    # Iterative, so hostile nesting cannot overflow the interpreter stack.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest
