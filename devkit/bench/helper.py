"""The bench's network helper, in a process of its own: counting, delaying proxies in front
of PostgreSQL and Redis, and a fake SQS behind a third proxy.

A process of its own because the proxies are Python threads: inside the measured process they
would compete with the handler for the GIL and add their scheduling delays to its latency.
The parent drives it with one JSON line per command on stdin and reads one JSON line back.

    python -m devkit.bench.helper <postgresql-url> <redis-url>
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from devkit.bench.fakesqs import FakeSqsServer
from devkit.proxy import TcpProxy


@dataclass(frozen=True)
class Counts:
    """Round trips counted at the proxies since their last reset."""

    pg: int
    redis: int
    sqs: int

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.pg - other.pg, self.redis - other.redis, self.sqs - other.sqs)


def with_port(url: str, port: int) -> str:
    """``url`` pointing at ``127.0.0.1:port`` (credentials, path and query kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=(f"{userinfo}@" if userinfo else "") + f"127.0.0.1:{port}")
    )


class Helper:
    """Client of the helper process: its proxies' URLs, counters and latency knobs."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "devkit.bench.helper", database_url, redis_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ports = self._read()
        self.database_url = with_port(database_url, ports["pg"])
        self.redis_url = with_port(redis_url, ports["redis"])
        self.sqs_queue_url = ports["sqs_queue_url"]
        self.sqs_direct_queue_url = ports["sqs_direct_queue_url"]

    def counts(self) -> Counts:
        """The round trips counted so far."""
        reply = self._call("counts")
        return Counts(reply["pg"], reply["redis"], reply["sqs"])

    def set_latency(self, pg_ms: float, redis_ms: float, sqs_ms: float = 0.0) -> None:
        """Delay every round trip to PostgreSQL, Redis and SQS by these many milliseconds."""
        self._call("latency", pg=pg_ms, redis=redis_ms, sqs=sqs_ms)

    def stop(self) -> None:
        """Stop the proxies and the process."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._call("stop")
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the bench helper process exited")
        reply: dict[str, Any] = json.loads(line)
        return reply


def serve(database_url: str, redis_url: str, stdin: IO[str], stdout: IO[str]) -> None:
    """Run the proxies and the fake SQS until told to stop (or stdin closes)."""
    sqs = FakeSqsServer()
    threading.Thread(target=sqs.serve_forever, daemon=True).start()
    pg = TcpProxy.from_url(database_url).start()
    redis = TcpProxy.from_url(redis_url).start()
    sqs_proxy = TcpProxy(("127.0.0.1", sqs.port)).start()
    proxies = {"pg": pg, "redis": redis, "sqs": sqs_proxy}

    def reply(data: dict[str, Any]) -> None:
        stdout.write(json.dumps(data) + "\n")
        stdout.flush()

    reply(
        {
            "pg": pg.port,
            "redis": redis.port,
            "sqs_queue_url": sqs.queue_url(sqs_proxy.port),
            "sqs_direct_queue_url": sqs.queue_url(),
        }
    )
    try:
        for line in stdin:
            command = json.loads(line)
            op = command.get("op")
            if op == "counts":
                reply({name: proxy.round_trips for name, proxy in proxies.items()})
            elif op == "latency":
                for name, proxy in proxies.items():
                    proxy.latency_ms = float(command.get(name, 0.0))
                reply({"ok": True})
            elif op == "stop":
                reply({"ok": True})
                break
            else:
                reply({"error": f"unknown op {op!r}"})
    finally:
        for proxy in proxies.values():
            proxy.stop()
        sqs.shutdown()
        sqs.server_close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.stdin, sys.stdout)
