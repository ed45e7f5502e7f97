"""Cache administration actions for direct invocation (and the daily retention purge)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadlookup.errors import InvalidInput, LookupServiceError
from leadlookup.http import error_status
from leadlookup.observability import logger
from leadlookup.service import LookupService


def _status(service: LookupService, _event: dict[str, Any]) -> Any:
    return service.cache_status()


def _flush_lead(service: LookupService, event: dict[str, Any]) -> Any:
    return {"flushed": service.flush_lead(event.get("phone"), event.get("organization_id"))}


def _flush_org(service: LookupService, event: dict[str, Any]) -> Any:
    return {"flushed": service.flush_org(event.get("phone"))}


def _flush_all(service: LookupService, _event: dict[str, Any]) -> Any:
    return {"deleted_keys": service.flush_all()}


def _upsert_org(service: LookupService, event: dict[str, Any]) -> Any:
    return service.upsert_org(event.get("organization")).to_json()


def _purge(service: LookupService, _event: dict[str, Any]) -> Any:
    return {"deleted": service.purge(), "retention_days": service.settings.retention_days}


ACTIONS: dict[str, Callable[[LookupService, dict[str, Any]], Any]] = {
    "status": _status,
    "flush_lead": _flush_lead,
    "flush_org": _flush_org,
    "flush_all": _flush_all,
    "upsert_org": _upsert_org,
    "purge": _purge,
}


def run_action(service: LookupService, event: Any) -> dict[str, Any]:
    """Run ``event["action"]``; the answer says ``ok`` and carries a result or an error."""
    action = event.get("action") if isinstance(event, dict) else None
    handler = ACTIONS.get(action) if isinstance(action, str) else None
    try:
        if handler is None:
            raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
        result = handler(service, event)
    except LookupServiceError as exc:
        return {"ok": False, "action": action, "status": error_status(exc), "message": str(exc)}
    logger.info("cache admin action done", action=action)
    return {"ok": True, "action": action, "result": result}
