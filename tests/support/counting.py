"""Fixtures that route a runtime's PostgreSQL and Redis traffic through counting proxies."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from devkit.proxy import TcpProxy
from leadlookup.config import Settings
from leadlookup.container import Runtime


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[TcpProxy]:
    """A loopback proxy in front of the test database; it counts round trips."""
    with TcpProxy.from_url(database_url) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    """A loopback proxy in front of the test Redis; it counts round trips."""
    with TcpProxy.from_url(redis_url) as proxy:
        yield proxy


@pytest.fixture
def counted(
    settings: Settings,
    pg_proxy: TcpProxy,
    redis_proxy: TcpProxy,
    make_runtime: Callable[..., Runtime],
) -> Runtime:
    """A runtime whose PostgreSQL and Redis traffic goes through counting proxies."""
    return make_runtime(
        dataclasses.replace(
            settings,
            database_url=pg_proxy.rewrite_url(settings.database_url or ""),
            redis_url=redis_proxy.rewrite_url(settings.redis_url or ""),
        )
    )
