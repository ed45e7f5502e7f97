"""PATCH validation and RFC 7396 merge."""

from __future__ import annotations

import pytest

from leadlookup.domain.models import Lead
from leadlookup.domain.patch import apply_patch, merge_patch, validate_patch
from leadlookup.errors import InvalidInput

LEAD = Lead(
    id="5e1f0000-0000-4000-8000-000000000001",
    organization_id="b0c1b1c1-0000-0000-0000-000000000001",
    phone_number="+16045550142",
    phone_number_normalized="16045550142",
    customer_name="Ada",
    bike_interest={"type": "gravel", "size": "M"},
    qualification_data={"budget_range": "2000-3000"},
)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"phone_number": "+1"}, "'phone_number'"),
        ({"status": "vip"}, "'status'"),
        ({"status": None}, "'status'"),
        ({"sentiment": "angry"}, "'sentiment'"),
        ({"bike_interest": "gravel"}, "'bike_interest'"),
        ({"customer_name": 42}, "'customer_name'"),
        ({"email": "not an email"}, "'email'"),
        ({"notes": "x" * 10_001}, "'notes'"),
    ],
)
def test_validate_patch_names_the_bad_field(body: dict, named: str) -> None:
    with pytest.raises(InvalidInput) as error:
        validate_patch(body)

    assert named in str(error.value)


@pytest.mark.parametrize("body", [[], "x", None, {}])
def test_validate_patch_requires_a_non_empty_object(body: object) -> None:
    with pytest.raises(InvalidInput):
        validate_patch(body)


def test_merge_patch_follows_rfc_7396_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}


def test_apply_patch_merges_objects_and_clears_nullable_fields() -> None:
    patched = apply_patch(
        LEAD,
        validate_patch(
            {"bike_interest": {"size": None, "budget": 2500}, "customer_name": None, "notes": "hi"}
        ),
    )

    assert patched.bike_interest == {"type": "gravel", "budget": 2500}
    assert patched.customer_name is None
    assert patched.notes == "hi"
    assert patched.qualification_data == LEAD.qualification_data
