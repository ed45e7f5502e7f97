"""Fixtures of the fault suite: short timeouts, fault proxies in front of Redis and
PostgreSQL, dummy AWS credentials, and the figures each case records.

Run: ``.venv/bin/pytest tests/faults -q -s`` (``-s`` shows the one-line figure of each case;
the JSON lands in ``.local/faults/``).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from devkit.proxy import TcpProxy
from leadlookup.metrics import SERVICE_NAME
from tests.support.faults import Figures, reset_container

# Small enough that every case is quick, large enough for a loaded 2-core CI runner.
REDIS_TIMEOUT_MS = 100
REDIS_BREAKER_COOLDOWN_MS = 400
INITIATION_DEADLINE_MS = 400
FAULT_KNOBS = {
    "REDIS_TIMEOUT_MS": str(REDIS_TIMEOUT_MS),
    "REDIS_BREAKER_COOLDOWN_MS": str(REDIS_BREAKER_COOLDOWN_MS),
    "INITIATION_DEADLINE_MS": str(INITIATION_DEADLINE_MS),
}


@pytest.fixture(autouse=True)
def handler_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the handlers write (Powertools log lines, EMF metrics), kept out of the terminal
    so that ``-s`` shows only the one-line figures; yields that output."""
    stream = io.StringIO()
    handler = getattr(logging.getLogger(SERVICE_NAME), "powertools_handler", None)
    previous = handler.setStream(stream) if isinstance(handler, logging.StreamHandler) else None
    # Under -s nothing else captures the EMF lines the layer's writer prints.
    monkeypatch.setattr(sys, "stdout", stream)
    yield stream
    if previous is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(previous)


@pytest.fixture
def fault_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function environment with the fault suite's short timeouts; a fresh container."""
    for name, value in FAULT_KNOBS.items():
        monkeypatch.setenv(name, value)
    reset_container()
    return {**app_env, **FAULT_KNOBS}


@pytest.fixture
def redis_proxy(fault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """A fault proxy in front of the test Redis; REDIS_URL points at it."""
    with TcpProxy.from_url(fault_env["REDIS_URL"]) as proxy:
        monkeypatch.setenv("REDIS_URL", proxy.rewrite_url(fault_env["REDIS_URL"]))
        reset_container()
        yield proxy
        reset_container()


@pytest.fixture
def pg_proxy(fault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """A fault proxy in front of the test PostgreSQL; DATABASE_URL points at it."""
    with TcpProxy.from_url(fault_env["DATABASE_URL"]) as proxy:
        monkeypatch.setenv("DATABASE_URL", proxy.rewrite_url(fault_env["DATABASE_URL"]))
        reset_container()
        yield proxy
        reset_container()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """This case's figures; written to .local/faults/<case>.json (and printed) at the end."""
    recorded = Figures(case=request.node.name)
    yield recorded
    recorded.write()
