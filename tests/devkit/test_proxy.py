"""Tests for devkit.proxy.TcpProxy: round-trip counting, latency and fault modes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devkit.proxy import TcpProxy

REPLY_TIMEOUT_S = 2.0
SILENCE_S = 0.3


class EchoServer:
    """A loopback server that sends back every chunk it receives, one send per recv.

    A chunk `big:<n>` is answered with n bytes instead (a large reply to a small request).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                reply = b"x" * int(data[4:]) if data.startswith(b"big:") else data
                try:
                    conn.sendall(reply)
                except OSError:  # the proxy reset the connection
                    return

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in [self._accepting, *self._threads]:
            thread.join(2)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(echo.address) as started:
        yield started


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=REPLY_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(sock: socket.socket, payload: bytes, reply_size: int | None = None) -> bytes:
    """Write one request and wait for the whole reply: one round trip."""
    sock.sendall(payload)
    expected = len(payload) if reply_size is None else reply_size
    received = b""
    while len(received) < expected:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_proxy_counts_one_round_trip_per_request_reply(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        reply = request(sock, b"hello")

    assert reply == b"hello"
    assert proxy.round_trips == 1
    assert proxy.connections == 1


def test_proxy_counts_sequential_requests_separately(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        for n in range(5):
            request(sock, f"request {n}".encode())

    assert proxy.round_trips == 5


def test_proxy_counts_round_trips_over_all_connections(proxy: TcpProxy) -> None:
    first, second = connect(proxy), connect(proxy)

    with first, second:
        request(first, b"a")
        request(second, b"b")
        request(first, b"c")

    assert proxy.round_trips == 3
    assert proxy.connections == 2


def test_proxy_reset_counters_zeroes_counts(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        request(sock, b"warm up")
        proxy.reset_counters()

        request(sock, b"counted")

    assert proxy.round_trips == 1
    assert proxy.connections == 0


def test_proxy_large_reply_in_many_chunks_is_one_round_trip(proxy: TcpProxy) -> None:
    size = 4_000_000

    with connect(proxy) as sock:
        reply = request(sock, f"big:{size}".encode(), reply_size=size)

    assert len(reply) == size
    assert proxy.round_trips == 1


def test_proxy_adds_latency_once_per_round_trip(proxy: TcpProxy) -> None:
    proxy.latency_ms = 40.0

    with connect(proxy) as sock:
        started = time.perf_counter()
        for _ in range(5):
            request(sock, b"ping")
        elapsed = time.perf_counter() - started

    assert elapsed >= 5 * 0.040
    assert proxy.round_trips == 5


def test_proxy_latency_can_change_at_run_time(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        request(sock, b"fast")
        proxy.latency_ms = 100.0

        started = time.perf_counter()
        request(sock, b"slow")
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.100


def test_proxy_blackhole_never_answers(proxy: TcpProxy) -> None:
    existing = connect(proxy)
    request(existing, b"before")
    existing.settimeout(SILENCE_S)

    proxy.set_mode("blackhole")
    existing.sendall(b"lost")
    fresh = connect(proxy)
    fresh.settimeout(SILENCE_S)
    fresh.sendall(b"lost too")

    with existing, fresh:
        with pytest.raises(TimeoutError):
            existing.recv(100)
        with pytest.raises(TimeoutError):
            fresh.recv(100)


def test_proxy_blackhole_then_pass_serves_new_connections(proxy: TcpProxy) -> None:
    proxy.set_mode("blackhole")
    with connect(proxy) as lost:
        lost.sendall(b"dropped")

        proxy.set_mode("pass")
        with connect(proxy) as sock:
            reply = request(sock, b"back")

    assert reply == b"back"


def read_until_closed(sock: socket.socket) -> bytes | type[OSError]:
    """What a client sees on a dropped connection: b"" (FIN) or the error class (RST)."""
    try:
        return sock.recv(100)
    except (ConnectionResetError, BrokenPipeError) as exc:
        return type(exc)


def new_connection_outcome(proxy: TcpProxy) -> bytes | type[OSError]:
    """What a new client sees: the reset may come before it even finishes connecting."""
    try:
        with socket.create_connection(proxy.address, timeout=REPLY_TIMEOUT_S) as sock:
            sock.sendall(b"hello")
            return read_until_closed(sock)
    except (ConnectionResetError, BrokenPipeError) as exc:
        return type(exc)


def test_proxy_reset_closes_existing_and_new_connections(proxy: TcpProxy) -> None:
    existing = connect(proxy)
    request(existing, b"before")

    proxy.set_mode("reset")

    with existing:
        assert read_until_closed(existing) in (b"", ConnectionResetError)
    assert new_connection_outcome(proxy) in (b"", ConnectionResetError, BrokenPipeError)


def test_proxy_reset_sends_rst(proxy: TcpProxy) -> None:
    existing = connect(proxy)
    request(existing, b"before")

    proxy.set_mode("reset")

    with existing, pytest.raises(ConnectionResetError):
        existing.recv(100)


def test_proxy_cut_refuses_connects_and_drops_connections(proxy: TcpProxy) -> None:
    existing = connect(proxy)
    request(existing, b"before")

    proxy.set_mode("cut")

    with existing:
        assert read_until_closed(existing) in (b"", ConnectionResetError)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=REPLY_TIMEOUT_S)


def test_proxy_pass_after_cut_listens_on_the_same_port(proxy: TcpProxy) -> None:
    port = proxy.port
    proxy.set_mode("cut")

    proxy.set_mode("pass")
    with connect(proxy) as sock:
        reply = request(sock, b"again")

    assert proxy.port == port
    assert reply == b"again"


def test_proxy_pass_after_reset_serves_again(proxy: TcpProxy) -> None:
    proxy.set_mode("reset")

    proxy.set_mode("pass")
    with connect(proxy) as sock:
        reply = request(sock, b"again")

    assert reply == b"again"


def test_proxy_rejects_unknown_mode(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="unknown proxy mode"):
        proxy.set_mode("slow")


def test_proxy_upstream_down_resets_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with TcpProxy(("127.0.0.1", closed_port)) as proxy:
        assert new_connection_outcome(proxy) in (b"", ConnectionResetError, BrokenPipeError)


def test_proxy_rewrite_url_keeps_credentials_and_path(proxy: TcpProxy) -> None:
    rewritten = proxy.rewrite_url("postgresql://user:secret@db.example:5432/app?sslmode=disable")

    assert rewritten == f"postgresql://user:secret@127.0.0.1:{proxy.port}/app?sslmode=disable"
    assert proxy.url_for("redis", "/0") == f"redis://127.0.0.1:{proxy.port}/0"


def test_proxy_stop_closes_connections_and_listener(echo: EchoServer) -> None:
    proxy = TcpProxy(echo.address).start()
    sock = connect(proxy)
    request(sock, b"hi")

    proxy.stop()

    with sock:
        assert read_until_closed(sock) in (b"", ConnectionResetError)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=REPLY_TIMEOUT_S)
