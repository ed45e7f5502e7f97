"""The template's ElastiCache access strings, applied to a real Redis Cluster: the layer's
serving and admin paths run under them without a single denied command, and what they do not
need (FLUSHALL, CONFIG, keys outside the prefix) is refused."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from devkit.lambda_env import load_template
from leadlookup.adapters.cache.redis_backend import IamCredentialProvider, client_options
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.container import Runtime
from leadlookup.usecases.admin import run_action
from tests.support.faults import new_phone
from tests.support.redis_servers import redis_cluster

PASSWORD = "acl-test-password"


def _access_string(resource: str) -> list[str]:
    access = load_template()["Resources"][resource]["Properties"]["AccessString"]
    return str(access).split()


@pytest.fixture(scope="module")
def acl_cluster() -> Iterator[list[int]]:
    """A 3-node cluster with the template's app and admin users on every node."""
    with redis_cluster(3) as ports:
        for port in ports:
            node = redis.Redis(port=port, socket_timeout=2)
            for user, resource in (("app", "CacheAppUser"), ("admin", "CacheAdminUser")):
                node.acl_setuser(user, reset=True)
                node.execute_command(
                    "ACL", "SETUSER", user, f">{PASSWORD}", *_access_string(resource)
                )
            node.close()
        yield ports


@pytest.fixture
def denials(acl_cluster: list[int]) -> Callable[[], list[tuple[str, str]]]:
    """Clear every node's ACL log now; the returned function reads what was denied since."""
    nodes = [redis.Redis(port=p, socket_timeout=2, decode_responses=True) for p in acl_cluster]
    for node in nodes:
        node.acl_log_reset()

    def read() -> list[tuple[str, str]]:
        return [(e["reason"], e["object"]) for node in nodes for e in node.acl_log()]

    return read


def _settings(settings: Settings, port: int, user: str) -> Settings:
    return dataclasses.replace(
        settings,
        redis_url=f"redis://{user}:{PASSWORD}@127.0.0.1:{port}",
        redis_cluster=True,
        cache_key_prefix=f"bici:acl{uuid.uuid4().hex[:8]}:",
    )


def test_cache_app_user_serves_every_lookup_without_a_denied_command(
    acl_cluster: list[int], denials, settings: Settings, make_runtime: Callable[..., Runtime]
):
    runtime = make_runtime(_settings(settings, acl_cluster[0], "app"))
    service = runtime.service
    caller = new_phone()

    lead = service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
    service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
    service.get_organization_by_phone("+17786528784")
    service.get_organization_by_phone("+17786528784")
    service.update_lead(lead.id, {"notes": "acl"})
    service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)
    service.delete_lead(lead.id)

    assert denials() == []
    assert not [name for name in runtime.metrics.counts if "Error" in name or "Failed" in name]
    assert runtime.metrics.counts.get("LeadCacheHit", 0) >= 1


def test_cache_admin_user_runs_every_admin_action_without_a_denied_command(
    acl_cluster: list[int], denials, settings: Settings, make_runtime: Callable[..., Runtime]
):
    runtime = make_runtime(_settings(settings, acl_cluster[0], "admin"))
    service = runtime.service
    caller = new_phone()
    service.find_or_create_lead(caller, DEFAULT_ORGANIZATION_ID)

    answers = [
        run_action(service, {"action": "status"}),
        run_action(
            service,
            {"action": "flush_lead", "phone": caller, "organization_id": DEFAULT_ORGANIZATION_ID},
        ),
        run_action(service, {"action": "flush_org", "phone": "+17786528784"}),
        run_action(service, {"action": "flush_all"}),
        run_action(service, {"action": "purge"}),
    ]

    assert denials() == []
    assert [a["ok"] for a in answers] == [True] * len(answers), answers
    assert answers[0]["result"]["server"]["connected"] is True


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("CONFIG", "GET", "maxmemory"),
        ("KEYS", "*"),
        ("GET", "other:{x}"),
        ("SET", "other:{x}", "1"),
        ("CLIENT", "LIST"),
        ("ACL", "LIST"),
        ("SCAN", "0"),
        ("INFO",),
    ],
)
def test_cache_app_user_is_refused_what_it_does_not_need(acl_cluster: list[int], command):
    client = redis.Redis(port=acl_cluster[0], username="app", password=PASSWORD, socket_timeout=2)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()


def test_cache_cluster_client_authenticates_every_node_through_the_credential_provider(
    acl_cluster: list[int], settings: Settings
):
    # ElastiCache Serverless is a cluster: each node connection must ask the provider.
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return PASSWORD

    options = client_options(settings, None, None)
    options["credential_provider"] = IamCredentialProvider("app", token)
    client = RedisCluster(host="127.0.0.1", port=acl_cluster[0], **options)
    try:
        # Keys of many slots reach every node.
        for n in range(30):
            client.set(f"bici:provider:{{{n}}}", "1")
        nodes = {client.get_node_from_key(f"bici:provider:{{{n}}}").name for n in range(30)}
    finally:
        client.close()

    assert len(nodes) == 3
    assert len(calls) >= 3
