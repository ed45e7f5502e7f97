"""The staff inbox and a lead's timeline: query parameters, cursors, attention, the list's ETag.

The rules of ``GET /leads`` and ``GET /leads/{id}/timeline`` (README.md, "Staff API") with no
I/O: which query parameters each route takes, what their values may be, how a page's cursor is
written, why a lead needs attention, and how the inbox's ETag is made of the stores' change
counters. The SQL that applies them lives in ``adapters/repository.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadlookup.domain import status
from leadlookup.errors import InvalidInput

# Why a lead needs attention, most urgent first: one reason is shown per lead, the first that
# holds. A customer waiting for a staff reply (a text under human control that no outbound
# text followed), then a manager callback the customer asked for (until staff clear it), then
# the last outbound text not delivered, then the fixed text sent because the agent could not
# answer. A lead that opted out of texts needs no text-based attention: nobody can text it.
UNANSWERED_TEXT = "unanswered_text"
CALLBACK_REQUESTED = "callback_requested"
DELIVERY_FAILED = "delivery_failed"
FALLBACK_SENT = "fallback_sent"
ATTENTION_REASONS = (UNANSWERED_TEXT, CALLBACK_REQUESTED, DELIVERY_FAILED, FALLBACK_SENT)

LIST_PARAMETERS = ("organization_id", "status", "q", "attention", "phone", "limit", "next")
TIMELINE_PARAMETERS = ("limit", "next", "transcripts")
MESSAGES_PARAMETERS = ("limit", "next")
LIST_LIMIT = (50, 100)  # default, maximum
TIMELINE_LIMIT = (50, 100)
MESSAGES_LIMIT = (50, 200)
MAX_QUERY_CHARS = 100
# What people type between the digits of a phone number.
_PHONE_PUNCTUATION = re.compile(r"[\s+().\-]")
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def check_parameters(params: Mapping[str, str], allowed: Sequence[str]) -> None:
    """400 naming the first query parameter the route does not take."""
    for name in params:
        if name not in allowed:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise InvalidInput(f"unknown query parameter '{name}' ({takes})")


def page_size(raw: str | None, limits: tuple[int, int]) -> int:
    """``limit``: a whole number from 1 to the route's maximum; its default when absent."""
    default, maximum = limits
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        raise InvalidInput("query parameter 'limit' must be a whole number") from None
    if not 1 <= size <= maximum:
        raise InvalidInput(f"query parameter 'limit' must be 1 to {maximum}")
    return size


def flag(raw: str | None, name: str) -> bool | None:
    """A true/false query parameter; None when absent."""
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"query parameter '{name}' must be true or false")


@dataclass(frozen=True)
class LeadFilter:
    """The list's filters, as the list statement takes them (None: no such filter)."""

    statuses: tuple[str, ...] | None = None
    # ILIKE pattern of the name (``q``), and LIKE pattern of the number's digits when ``q``
    # is a phone number or a part of one.
    name_like: str | None = None
    digits_like: str | None = None
    # One number, E.164 digits (``phone``, normalized by the caller: it knows the region).
    phone: str | None = None
    attention: bool | None = None

    def key(self) -> list[Any]:
        """The filters as JSON-ready data (part of the list's ETag)."""
        return [self.statuses, self.name_like, self.digits_like, self.phone, self.attention]


def lead_filter(params: Mapping[str, str], phone: str | None) -> LeadFilter:
    """The filters of ``GET /leads``; 400 naming a bad value. ``phone`` is normalized already."""
    statuses = None
    raw_status = params.get("status")
    if raw_status:
        # API Gateway joins a repeated parameter with commas: ?status=new&status=hot.
        statuses = tuple(dict.fromkeys(s.strip() for s in raw_status.split(",")))
        for value in statuses:
            if value not in status.STATUSES:
                raise InvalidInput(
                    f"query parameter 'status' must be one of {', '.join(status.STATUSES)}"
                    f" (not {value[:40]!r})"
                )
    name_like = digits_like = None
    q = (params.get("q") or "").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query parameter 'q' is longer than {MAX_QUERY_CHARS} characters")
    if q:
        name_like = f"%{_like_escape(q)}%"
        digits = _PHONE_PUNCTUATION.sub("", q)
        if digits.isdigit() and digits.isascii():
            digits_like = f"%{digits}%"
    return LeadFilter(
        statuses=statuses,
        name_like=name_like,
        digits_like=digits_like,
        phone=phone,
        attention=flag(params.get("attention"), "attention"),
    )


def _like_escape(text: str) -> str:
    # LIKE's own characters match themselves (backslash is PostgreSQL's default escape).
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- cursors ---------------------------------------------------------------------------------


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def encode_cursor(*parts: Any) -> str:
    """An opaque cursor of a page's last row (base64url of its sort key)."""
    text = "|".join(_iso(part) for part in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(raw: str | None, kinds: str) -> tuple[Any, ...] | None:
    """The sort key a cursor carries; ``kinds`` says each part's type: ``f`` a 0/1 flag,
    ``t`` a time, ``u`` a UUID. None when absent; 400 when it is not one of ours."""
    if raw is None or raw == "":
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        parts = text.split("|")
        if len(parts) != len(kinds):
            raise ValueError(text)
        values: list[Any] = []
        for kind, part in zip(kinds, parts, strict=True):
            if kind == "f":
                if part not in ("0", "1"):
                    raise ValueError(part)
                values.append(int(part))
            elif kind == "t":
                values.append(datetime.fromisoformat(part).isoformat())
            else:
                values.append(str(uuid.UUID(part)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("query parameter 'next' is not a cursor from this API") from None
    return tuple(values)


# -- the list's ETag -------------------------------------------------------------------------


def list_etag(counters: Sequence[str], scope: Sequence[str], query: Sequence[Any]) -> str:
    """The inbox's ETag: the change counters of the stores it covers, with what was asked.

    The counters move with every write to those stores' leads, so an ETag of unchanged
    stores is the same for the same question (scope, filters, page) and differs otherwise.
    """
    text = json.dumps([list(counters), list(scope), list(query)], separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak or strong, in a list, or ``*``)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False
