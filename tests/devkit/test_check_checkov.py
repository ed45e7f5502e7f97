"""make test's checkov step: its verdict comes from the JSON report, not the exit status."""

from __future__ import annotations

import json

from devkit.check import checkov_verdict


def _report(failed: list[dict[str, str]], parsing_errors: int = 0, resources: int = 3) -> str:
    summary = {
        "passed": 5,
        "failed": len(failed),
        "skipped": 1,
        "parsing_errors": parsing_errors,
        "resource_count": resources,
    }
    return json.dumps({"results": {"failed_checks": failed}, "summary": summary})


def test_checkov_verdict_of_a_clean_scan_is_empty():
    assert checkov_verdict(_report([])) == []


def test_checkov_verdict_names_each_failed_check():
    failed = [{"check_id": "CKV_AWS_1", "resource": "AWS::X::Y.Z", "check_name": "be good"}]

    assert checkov_verdict(_report(failed)) == ["CKV_AWS_1 AWS::X::Y.Z: be good"]


def test_checkov_verdict_fails_a_scan_that_parsed_nothing():
    assert checkov_verdict(_report([], parsing_errors=1, resources=0)) == [
        "1 file(s) checkov could not parse",
        "checkov scanned no resource",
    ]


def test_checkov_verdict_fails_without_a_report():
    assert checkov_verdict("Traceback (most recent call last): ...") == [
        "checkov printed no JSON report"
    ]
