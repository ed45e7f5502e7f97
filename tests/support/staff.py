"""Signed-in staff for the staff API's tests: members, and events carrying their claims."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from devkit.local_auth import SAMPLE_STAFF, gateway_claims
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.domain.access import StaffMember

# Every store (the owners' group), and the staff of the default store (store A).
OWNER = StaffMember.from_groups("owner-sub", ["owners"], email="olga@example.com")
STORE_A_STAFF = StaffMember.from_groups(
    "ana-sub", [f"org-{DEFAULT_ORGANIZATION_ID}"], email="ana@example.com"
)


def staff_of(*organization_ids: str, sub: str = "staff-sub") -> StaffMember:
    """A member of these stores' groups."""
    return StaffMember.from_groups(
        sub, [f"org-{org}" for org in organization_ids], email=f"{sub}@example.com"
    )


def claims_of(username: str | None = None, **overrides: Any) -> dict[str, str]:
    """ID-token claims as API Gateway passes them: a sample user's (devkit.local_auth), or
    ``overrides`` alone (``groups``: a list, flattened as API Gateway does)."""
    claims: dict[str, Any] = {"token_use": "id", "aud": "local-console"}
    if username is not None:
        staff = SAMPLE_STAFF[username]
        claims.update(
            {
                "sub": staff.sub,
                "email": staff.email,
                "name": staff.name,
                "cognito:username": staff.username,
                "cognito:groups": list(staff.groups),
            }
        )
    groups = overrides.pop("groups", None)
    if groups is not None:
        claims["cognito:groups"] = list(groups)
    claims.update(overrides)
    return gateway_claims({k: v for k, v in claims.items() if v is not None})


def as_member(event: dict[str, Any], claims: dict[str, str] | None) -> dict[str, Any]:
    """``event`` signed in with ``claims`` (None: no authorizer block at all)."""
    event = copy.deepcopy(event)
    context = event.setdefault("requestContext", {})
    if claims is None:
        context.pop("authorizer", None)
    else:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return event


def store_claims(organization_id: str, sub: str | None = None) -> dict[str, str]:
    """Claims of a staff member of one store."""
    who = sub or f"staff-{uuid.uuid4().hex[:8]}"
    return claims_of(sub=who, email=f"{who}@example.com", groups=[f"org-{organization_id}"])
