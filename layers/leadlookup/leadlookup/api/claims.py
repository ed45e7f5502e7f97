"""The signed-in staff member of a request, from the claims API Gateway's JWT authorizer passed.

API Gateway has checked the token (signature, issuer, audience or ``client_id``, expiry) before
the function runs, and ``make run`` checks local tokens the same way, so this module only reads
``requestContext.authorizer.jwt.claims``. A list claim such as ``cognito:groups`` arrives
flattened into one string, ``[org-a org-b]``; a JSON list and a plain list are accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from leadlookup.domain.access import StaffMember
from leadlookup.errors import Unauthorized

GROUPS_CLAIM = "cognito:groups"


def list_claim(value: Any) -> list[str]:
    """A list claim in any of the forms it reaches the function in."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text[1:-1].split()  # API Gateway's flattened form: [a b c]
        if isinstance(parsed, list):
            return [str(item) for item in parsed]
    return text.split()


def staff_member(event: Mapping[str, Any]) -> StaffMember:
    """The caller; 401 without verified claims, 403 when they staff no store."""
    context = event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims")
    if not isinstance(claims, Mapping) or not claims.get("sub"):
        raise Unauthorized("sign-in required")
    email = claims.get("email")
    name = claims.get("name") or claims.get("cognito:username") or claims.get("username")
    return StaffMember.from_groups(
        sub=str(claims["sub"]),
        groups=list_claim(claims.get(GROUPS_CLAIM)),
        email=str(email) if email else None,
        name=str(name) if name else None,
        scopes=list_claim(claims.get("scope")),
    )
