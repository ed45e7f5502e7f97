"""The proxy's round-trip counts for the two protocols the project counts: Redis and pg8000."""

from __future__ import annotations

import pg8000.native
import redis

from devkit.proxy import TcpProxy
from devkit.services import pg_connect_args


def test_proxy_counts_redis_ping_and_pipeline_as_one_round_trip(redis_url: str) -> None:
    with TcpProxy.from_url(redis_url) as proxy:
        client = redis.Redis.from_url(proxy.rewrite_url(redis_url), socket_timeout=2)
        client.ping()  # connects: the handshake has round trips of its own
        proxy.reset_counters()

        client.ping()
        after_ping = proxy.round_trips
        pipe = client.pipeline(transaction=False)
        pipe.set("devkit:proxy-test", "1").get("devkit:proxy-test").delete("devkit:proxy-test")
        results = pipe.execute()
        client.close()

    assert after_ping == 1
    assert proxy.round_trips == 2
    assert results == [True, b"1", 1]


def test_proxy_counts_pg8000_extended_as_three_and_simple_as_one(database_url: str) -> None:
    args = pg_connect_args(database_url)
    with TcpProxy((args["host"], args["port"])) as proxy:
        con = pg8000.native.Connection(**{**args, "host": "127.0.0.1", "port": proxy.port})
        proxy.reset_counters()
        con.run("SELECT :n::int", n=1)
        extended = proxy.round_trips
        proxy.reset_counters()
        con.run("SELECT 1")
        simple = proxy.round_trips
        con.close()

    assert extended == 3
    assert simple == 1
