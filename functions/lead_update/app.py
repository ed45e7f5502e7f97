"""The staff API: the inbox, a lead's timeline and history, edits, texts and erasure.

Every route runs under the HTTP API's JWT authorizer; the signed-in member (api/claims.py)
goes into every call of the staff use case, which checks the lead's store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.api.claims import staff_member
from leadlookup.api.http import (
    create_resolver,
    header,
    if_match_version,
    json_object,
    json_response,
    require_media_type,
)
from leadlookup.container import get_runtime
from leadlookup.domain import inbox
from leadlookup.domain.access import StaffMember
from leadlookup.domain.models import Lead
from leadlookup.observability import emf, logger, tracer

PATCH_MEDIA_TYPES = ("application/json", "application/merge-patch+json")
# The inbox is read again and again: the browser keeps it, but asks every time (ETag).
LIST_CACHE_CONTROL = "private, no-cache"

app = create_resolver()


def _member(allowed: Sequence[str] = ()) -> tuple[StaffMember, dict[str, str]]:
    """The signed-in member (401/403) and the query parameters, none the route does not take."""
    event = app.current_event.raw_event
    member = staff_member(event)
    params = app.current_event.query_string_parameters or {}
    inbox.check_parameters(params, allowed)
    return member, params


@app.get("/leads")
def list_leads() -> Response[str]:
    member, params = _member(inbox.LIST_PARAMETERS)
    event = app.current_event.raw_event
    page = get_runtime().staff.leads(member, params, header(event, "if-none-match"))
    headers = {"Cache-Control": LIST_CACHE_CONTROL}
    if page.etag is not None:
        headers["ETag"] = page.etag
    if page.body is None:
        return Response(status_code=304, body="", headers=headers)
    return json_response(200, page.body, headers)


@app.get("/leads/<lead_id>")
def get_lead(lead_id: str) -> Response[str]:
    member, _ = _member()
    return _lead(get_runtime().staff.lead(member, lead_id))


@app.patch("/leads/<lead_id>")
def patch_lead(lead_id: str) -> Response[str]:
    member, _ = _member()
    event = app.current_event.raw_event
    require_media_type(event, PATCH_MEDIA_TYPES)
    if_match = if_match_version(event)
    runtime = get_runtime()
    body = json_object(event, runtime.settings.max_body_bytes)
    return _lead(runtime.staff.patch_lead(member, lead_id, body, if_match))


@app.delete("/leads/<lead_id>")
def delete_lead(lead_id: str) -> Response[str]:
    member, _ = _member()
    get_runtime().staff.delete_lead(member, lead_id)
    return Response(status_code=204, body="")


@app.get("/leads/<lead_id>/timeline")
def timeline(lead_id: str) -> dict[str, Any]:
    member, params = _member(inbox.TIMELINE_PARAMETERS)
    return get_runtime().staff.timeline(member, lead_id, params)


@app.get("/leads/<lead_id>/messages")
def list_messages(lead_id: str) -> dict[str, Any]:
    member, params = _member(inbox.MESSAGES_PARAMETERS)
    return get_runtime().staff.messages(member, lead_id, params.get("limit"), params.get("next"))


@app.post("/leads/<lead_id>/messages")
def send_message(lead_id: str) -> Response[str]:
    member, _ = _member()
    event = app.current_event.raw_event
    require_media_type(event, ("application/json",))
    runtime = get_runtime()
    body = json_object(event, runtime.settings.max_body_bytes)
    key = runtime.staff.send_staff_text(
        member, lead_id, body.get("body"), header(event, "idempotency-key")
    )
    return json_response(202, {"key": key, "status": "queued"})


def _lead(lead: Lead) -> Response[str]:
    return json_response(200, lead.to_json(), {"ETag": f'"{lead.version}"'})


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
