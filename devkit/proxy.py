"""A loopback TCP proxy that counts network round trips, adds latency and injects faults.

Tests use it to prove read-through caching by counting database round trips, benchmarks to
give localhost the latency of a real network, and fault tests to make a server go silent,
reset its connections or vanish. Standard library only: threads and blocking sockets.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

MODES = ("pass", "blackhole", "reset", "cut")

_BUFSIZE = 65536
_UPSTREAM_CONNECT_TIMEOUT_S = 3.0
_JOIN_TIMEOUT_S = 2.0
# A safety net only: shutting a listening socket down wakes accept() on Linux at once.
_ACCEPT_POLL_S = 0.25
_C2S = "client->server"
_S2C = "server->client"


class _Link:
    """One proxied connection: the client socket, its upstream socket and who spoke last."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.last: str | None = None
        # Bytes were dropped (blackhole): forwarding again would desynchronise the protocol.
        self.tainted = False
        self.closing = False
        self.pumps = 0

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


class TcpProxy:
    """Forward one loopback port to an upstream TCP server, counting round trips.

    A round trip is a client->server burst that starts a connection or follows a
    server->client burst, counted over all connections; `latency_ms` delays the first chunk
    of every server->client burst, so N round trips cost about N * latency_ms.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        latency_ms: float = 0.0,
    ) -> None:
        self.upstream = upstream
        self.latency_ms = latency_ms
        self.round_trips = 0
        self.connections = 0
        self._host, self._port = listen
        self._mode = "pass"
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._started = False
        self._stopped = threading.Event()

    @classmethod
    def from_url(cls, url: str, latency_ms: float = 0.0) -> TcpProxy:
        """A (not yet started) proxy in front of the host and port of `url`."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError("the URL needs an explicit host and port to be proxied")
        return cls((parts.hostname, parts.port), latency_ms=latency_ms)

    @property
    def port(self) -> int:
        """The port the proxy listens on (fixed for its lifetime, also across "cut")."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) clients connect to."""
        return (self._host, self._port)

    @property
    def open_connections(self) -> int:
        """Client connections open through the proxy now (closed ones leave once drained)."""
        with self._lock:
            return len(self._links)

    @property
    def mode(self) -> str:
        """The current fault mode."""
        return self._mode

    def url_for(self, scheme: str, path: str = "") -> str:
        """`scheme://host:port/path` pointing at the proxy."""
        return f"{scheme}://{self._host}:{self._port}{path}"

    def rewrite_url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's (credentials, path kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{self._host}:{self._port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> TcpProxy:
        """Bind the listening socket and start accepting; returns self."""
        if self._started:
            raise RuntimeError("the proxy was already started")
        self._started = True
        self._open_listener()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then join the threads (bounded)."""
        self._stopped.set()
        self._close_listener()
        with self._lock:
            links = list(self._links)
        for link in links:
            self._shutdown_link(link, abort=False)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._links)
            self._links.clear()
        for link in leftovers:
            for sock in link.sockets():
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset_counters(self) -> None:
        """Zero `round_trips` and `connections`."""
        with self._lock:
            self.round_trips = 0
            self.connections = 0

    def set_mode(self, mode: str) -> None:
        """Switch the fault mode; takes effect on existing and new connections.

        - blackhole: accept and read, never forward nor answer (existing and new connections);
        - reset: close existing and new connections with a TCP RST;
        - cut: close the listening socket (connects are refused) and drop every connection;
        - pass: forward again, listening on the same port; connections that lost bytes to the
          blackhole are closed, since forwarding on them would desynchronise the protocol.
        """
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {MODES}")
        with self._lock:
            self._mode = mode
            links = list(self._links)
        if mode == "cut":
            self._close_listener()
        elif self._started and not self._stopped.is_set() and self._listener is None:
            self._open_listener()
        for link in links:
            if mode == "reset":
                self._shutdown_link(link, abort=True)
            elif mode == "cut" or (mode == "pass" and link.tainted):
                self._shutdown_link(link, abort=False)

    # -- listening ---------------------------------------------------------------------

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
        except OSError as exc:
            listener.close()
            raise OSError(
                exc.errno, f"proxy cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from exc
        listener.listen(128)
        listener.settimeout(_ACCEPT_POLL_S)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = self._spawn(self._accept_loop, listener)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        # Joined before close() so the port is free for a re-listen and no fd is reused.
        if (
            self._accept_thread is not None
            and self._accept_thread is not threading.current_thread()
        ):
            self._accept_thread.join(_JOIN_TIMEOUT_S)
        listener.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        client.setblocking(True)
        # A client may reset before we look at it; the pump will see that, not this thread.
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client)
        with self._lock:
            self.connections += 1
            mode = self._mode
            # Accepted into the blackhole: it never gets an upstream, so it never serves.
            link.tainted = mode == "blackhole"
            if mode != "reset":
                link.pumps = 1
                self._links.add(link)
        if mode == "reset":
            _abort(client)
            return
        self._spawn(self._serve, link, mode == "blackhole")

    # -- forwarding --------------------------------------------------------------------

    def _serve(self, link: _Link, blackholed: bool) -> None:
        if not blackholed and not self._connect_upstream(link):
            return
        if link.upstream is not None:
            self._spawn(self._pump_to_client, link)
        self._pump_to_server(link)

    def _connect_upstream(self, link: _Link) -> bool:
        try:
            upstream = socket.create_connection(self.upstream, _UPSTREAM_CONNECT_TIMEOUT_S)
        except OSError:
            # The client sees a reset, as it would from a server that is down.
            with self._lock:
                link.closing = True
            self._abort_client(link)
            return False
        upstream.settimeout(None)
        with contextlib.suppress(OSError):
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            link.upstream = upstream
            link.pumps = 2
            closing = link.closing
        if closing:
            # Shut down while connecting: the pumps will find both sockets at EOF and close.
            _wake(upstream, abort=False)
        return True

    def _abort_client(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        _abort(link.client)

    def _pump_to_server(self, link: _Link) -> None:
        clean_eof = False
        while True:
            try:
                data = link.client.recv(_BUFSIZE)
            except OSError:
                break
            if not data:
                clean_eof = True
                break
            with self._lock:
                upstream = link.upstream if self._mode == "pass" else None
                if upstream is None:
                    link.tainted = True
                elif link.last != _C2S:
                    self.round_trips += 1
                    link.last = _C2S
            if upstream is None:
                continue
            try:
                upstream.sendall(data)
            except OSError:
                break
        if clean_eof and not link.closing and link.upstream is not None:
            _half_close(link.upstream)
        else:
            self._shutdown_link(link, abort=False)
        self._pump_done(link)

    def _pump_to_client(self, link: _Link) -> None:
        upstream = link.upstream
        assert upstream is not None
        clean_eof = False
        while True:
            try:
                data = upstream.recv(_BUFSIZE)
            except OSError:
                break
            if not data:
                clean_eof = True
                break
            with self._lock:
                new_burst = self._mode == "pass" and link.last != _S2C
            delay_s = self.latency_ms / 1000.0
            if new_burst and delay_s > 0 and self._stopped.wait(delay_s):
                break
            with self._lock:
                forward = self._mode == "pass" and not link.closing
                if forward:
                    # Set before sending: the client can only answer once it has the bytes.
                    link.last = _S2C
                else:
                    link.tainted = True
            if not forward:
                continue
            try:
                link.client.sendall(data)
            except OSError:
                break
        if clean_eof and not link.closing:
            _half_close(link.client)
        else:
            self._shutdown_link(link, abort=False)
        self._pump_done(link)

    def _pump_done(self, link: _Link) -> None:
        with self._lock:
            link.pumps -= 1
            if link.pumps > 0:
                return
            self._links.discard(link)
        # The last pump out closes: the sockets are never closed under a thread using them.
        for sock in link.sockets():
            sock.close()

    def _shutdown_link(self, link: _Link, abort: bool) -> None:
        with self._lock:
            if link.closing:
                return
            link.closing = True
        for sock in link.sockets():
            _wake(sock, abort)

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread


def _wake(sock: socket.socket, abort: bool) -> None:
    """Wake the threads blocked on `sock`; with `abort`, its close() will send an RST."""
    try:
        if abort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # SHUT_RD wakes a blocked recv() without sending a FIN ahead of the RST.
            sock.shutdown(socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _abort(sock: socket.socket) -> None:
    """Close `sock` at once with a TCP RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _half_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
