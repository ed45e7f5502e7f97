"""Staff authorization: which stores a signed-in caller sees, from the claims as they arrive."""

from __future__ import annotations

import uuid

import pytest

from leadlookup.api.claims import list_claim, staff_member
from leadlookup.domain.access import StaffMember
from leadlookup.errors import Forbidden, InvalidInput, NotFound, Unauthorized

A, B = uuid.uuid4(), uuid.uuid4()


def _event(claims: dict[str, object] | None) -> dict[str, object]:
    authorizer = {} if claims is None else {"jwt": {"claims": claims, "scopes": None}}
    return {"requestContext": {"authorizer": authorizer}}


@pytest.mark.parametrize(
    "raw",
    [f"[org-{A} org-{B}]", f'["org-{A}", "org-{B}"]', [f"org-{A}", f"org-{B}"], f"org-{A} org-{B}"],
)
def test_every_form_of_the_groups_claim_gives_both_stores(raw: object) -> None:
    member = staff_member(_event({"sub": "s1", "cognito:groups": raw}))
    assert member.stores == {A, B}
    assert not member.owner


def test_a_lead_of_another_store_is_not_found() -> None:
    member = staff_member(_event({"sub": "s1", "cognito:groups": f"[org-{A}]"}))
    member.require(A)
    with pytest.raises(NotFound):
        member.require(B)


def test_owners_see_every_store_and_list_all_by_default() -> None:
    member = staff_member(_event({"sub": "o", "cognito:groups": "[owners]", "email": "o@x"}))
    member.require(B)
    assert member.scope() is None
    assert member.scope(str(B)) == {B}
    assert member.actor() == {"sub": "o", "email": "o@x"}


def test_a_machine_client_with_the_all_stores_scope_is_an_owner() -> None:
    member = staff_member(_event({"sub": "c", "client_id": "c", "scope": "leadlookup/all-stores"}))
    assert member.owner


def test_no_store_is_forbidden_and_no_claims_is_unauthorized() -> None:
    with pytest.raises(Forbidden):
        staff_member(_event({"sub": "s1", "cognito:groups": "[org-not-a-uuid other]"}))
    with pytest.raises(Unauthorized):
        staff_member(_event(None))


def test_list_scope_refuses_other_stores_and_bad_ids() -> None:
    member = StaffMember.from_groups("s1", [f"org-{A}"])
    assert member.scope() == {A}
    with pytest.raises(NotFound):
        member.scope(str(B))
    with pytest.raises(InvalidInput, match="organization_id"):
        member.scope("nope")


def test_list_claim_forms() -> None:
    assert list_claim(None) == []
    assert list_claim("[]") == []
    assert list_claim("[a b]") == ["a", "b"]
