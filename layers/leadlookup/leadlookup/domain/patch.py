"""Validation and RFC 7396 merge of lead PATCH bodies, ``human_control`` included (its home).

Staff take a lead over (``human_control: true``: the agent stops answering its texts) and
hand it back in the same PATCH as any other edit, so a PATCH commits once. They clear a
manager callback request with ``callback_requested_at: null`` (only the post-call report sets
it). Each change leaves a note in the lead's history saying what changed (never the values).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from leadlookup.domain import status
from leadlookup.domain.models import SENTIMENTS, Lead
from leadlookup.errors import InvalidInput

_TEXT_FIELDS = ("customer_name", "email", "notes")
_OBJECT_FIELDS = ("bike_interest", "qualification_data")
_ENUM_FIELDS = {"status": status.STATUSES, "sentiment": SENTIMENTS}
_FLAG_FIELDS = ("human_control",)
# Fields staff may only clear (null).
_CLEARABLE_FIELDS = ("callback_requested_at",)
PATCHABLE_FIELDS = (
    *_TEXT_FIELDS, *_OBJECT_FIELDS, *_ENUM_FIELDS, *_FLAG_FIELDS, *_CLEARABLE_FIELDS,
)  # fmt: skip
# A patch of only these, leaving them as they are, writes nothing.
_STATE_FIELDS = frozenset((*_FLAG_FIELDS, *_CLEARABLE_FIELDS))
MAX_TEXT_CHARS = 10_000
MAX_EMAIL_CHARS = 320


def validate_patch(body: Any) -> dict[str, Any]:
    """The patch if every field is known and well typed; else :class:`InvalidInput` naming it."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    if not body:
        raise InvalidInput("body must name at least one field")
    for name, value in body.items():
        if name not in PATCHABLE_FIELDS:
            raise InvalidInput(f"unknown field '{name}'")
        _check(name, value)
    return body


def control_note(on: bool) -> str:
    """The history's system note when ``human_control`` changes."""
    return "Staff took over the conversation" if on else "Conversation handed back to the agent"


CALLBACK_CLEARED_NOTE = "Callback request cleared"


def is_noop(patch: dict[str, Any], current: Lead, patched: Lead) -> bool:
    """Whether the patch only restates the lead's control and callback state (writes nothing)."""
    return set(patch) <= _STATE_FIELDS and patched == current


def patch_notes(patch: dict[str, Any], current: Lead, patched: Lead) -> list[dict[str, Any]]:
    """The history's notes of a patch: take over or hand back, a cleared callback request,
    the names of the fields edited (``{"text", "params"}`` each; no values: the notes are
    what the timeline shows of who did what)."""
    notes: list[dict[str, Any]] = []
    if patched.human_control != current.human_control:
        notes.append(
            {
                "text": control_note(patched.human_control),
                "params": {"human_control": patched.human_control},
            }
        )
    if current.callback_requested_at is not None and patched.callback_requested_at is None:
        notes.append({"text": CALLBACK_CLEARED_NOTE, "params": {"callback_requested": False}})
    edited = [
        name
        for name in patch
        if name not in _STATE_FIELDS and getattr(current, name) != getattr(patched, name)
    ]
    if edited:
        notes.append({"text": f"Edited {', '.join(edited)}", "params": {"fields": edited}})
    return notes


def _check(name: str, value: Any) -> None:
    if name in _CLEARABLE_FIELDS:
        if value is not None:
            raise InvalidInput(f"field '{name}' can only be null (it clears the request)")
    elif name in _FLAG_FIELDS:
        if not isinstance(value, bool):
            raise InvalidInput(f"field '{name}' must be true or false")
    elif name in _ENUM_FIELDS:
        allowed = _ENUM_FIELDS[name]
        if value is None and name == "status":
            raise InvalidInput("field 'status' cannot be null")
        if value is None:
            return
        if value not in allowed:
            raise InvalidInput(f"field '{name}' must be one of {', '.join(allowed)}")
    elif name in _OBJECT_FIELDS:
        if value is not None and not isinstance(value, dict):
            raise InvalidInput(f"field '{name}' must be a JSON object or null")
    elif value is not None:
        if not isinstance(value, str):
            raise InvalidInput(f"field '{name}' must be a string or null")
        limit = MAX_EMAIL_CHARS if name == "email" else MAX_TEXT_CHARS
        if len(value) > limit:
            raise InvalidInput(f"field '{name}' is longer than {limit} characters")
        if name == "email" and value and ("@" not in value or any(c.isspace() for c in value)):
            raise InvalidInput("field 'email' is not an email address")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(lead: Lead, patch: dict[str, Any]) -> Lead:
    """The lead with a validated patch applied (nullable fields cleared by ``null``)."""
    changes: dict[str, Any] = {}
    for name, value in patch.items():
        if name in _OBJECT_FIELDS:
            changes[name] = {} if value is None else merge_patch(getattr(lead, name), value)
        elif name == "sentiment" and value is None:
            changes[name] = "neutral"
        else:
            changes[name] = value
    return dataclasses.replace(lead, **changes)
