"""Lead updates: staff read, merge-patch, text, call and erase leads."""

from __future__ import annotations

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
from leadlookup.domain.models import Lead
from leadlookup.errors import InvalidInput, NotFound
from leadlookup.observability import emf, logger, tracer

PATCH_MEDIA_TYPES = ("application/json", "application/merge-patch+json")

app = create_resolver()


@app.get("/leads")
def find_lead() -> Response[str]:
    params = app.current_event.query_string_parameters or {}
    phone, organization_id = _required(params, "phone"), _required(params, "organization_id")
    lead = get_runtime().service.find_lead_by_phone(phone, organization_id)
    if lead is None:
        raise NotFound("lead not found")
    return _lead(lead)


@app.get("/leads/<lead_id>")
def get_lead(lead_id: str) -> Response[str]:
    return _lead(get_runtime().service.get_lead(lead_id))


@app.patch("/leads/<lead_id>")
def patch_lead(lead_id: str) -> Response[str]:
    event = app.current_event.raw_event
    require_media_type(event, PATCH_MEDIA_TYPES)
    if_match = if_match_version(event)
    runtime = get_runtime()
    body = json_object(event, runtime.settings.max_body_bytes)
    return _lead(runtime.staff.patch_lead(lead_id, body, if_match))


@app.get("/leads/<lead_id>/messages")
def list_messages(lead_id: str) -> dict[str, Any]:
    params = app.current_event.query_string_parameters or {}
    return get_runtime().staff.messages(lead_id, params.get("limit"), params.get("before"))


@app.post("/leads/<lead_id>/messages")
def send_message(lead_id: str) -> Response[str]:
    event = app.current_event.raw_event
    require_media_type(event, ("application/json",))
    runtime = get_runtime()
    body = json_object(event, runtime.settings.max_body_bytes)
    key = runtime.staff.send_staff_text(lead_id, body.get("body"), header(event, "idempotency-key"))
    return json_response(202, {"key": key, "status": "queued"})


@app.post("/leads/<lead_id>/calls")
def place_call(lead_id: str) -> Response[str]:
    event = app.current_event.raw_event
    member = staff_member(event)
    call_id, status = get_runtime().calls.request(member, lead_id, header(event, "idempotency-key"))
    return json_response(202, {"call_id": call_id, "status": status})


@app.delete("/leads/<lead_id>")
def delete_lead(lead_id: str) -> Response[str]:
    get_runtime().service.delete_lead(lead_id)
    return Response(status_code=204, body="")


def _lead(lead: Lead) -> Response[str]:
    return json_response(200, lead.to_json(), {"ETag": f'"{lead.version}"'})


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or not value.strip():
        raise InvalidInput(f"query parameter '{name}' is required")
    return value


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
