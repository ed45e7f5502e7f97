"""Staff requests as API Gateway passes them once its JWT authorizer accepted the token."""

from __future__ import annotations

import json
from typing import Any

TEST_STORE_SUB = "staff-ana-0001"


def staff_event(
    method: str,
    path: str,
    *,
    groups: list[str],
    sub: str = TEST_STORE_SUB,
    email: str | None = "ana@example.com",
    headers: dict[str, str] | None = None,
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event whose verified claims name ``groups``, flattened as API
    Gateway flattens a list claim (``[org-a org-b]``)."""
    claims: dict[str, Any] = {"sub": sub, "cognito:groups": f"[{' '.join(groups)}]"}
    if email is not None:
        claims["email"] = email
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "http": {"method": method, "path": path, "sourceIp": "203.0.113.24"},
            "stage": "$default",
            "requestId": "staff-test",
            "authorizer": {"jwt": {"claims": claims, "scopes": None}},
        },
        "pathParameters": path_parameters or {},
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def store_group(organization_id: str) -> str:
    """The sign-in group of a store's staff."""
    return f"org-{organization_id}"
