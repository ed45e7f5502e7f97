"""Throwaway Redis servers on loopback ports: single nodes, TLS with RBAC, a 3-node cluster."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from devkit.services import redis_server_binary

_START_TIMEOUT_S = 10.0
CLUSTER_SLOTS = 16384


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_redis(
    directory: Path, port: int, *extra: str, tls_port: int | None = None
) -> subprocess.Popen[bytes]:
    """One redis-server on 127.0.0.1:``port`` (0: TLS only, on ``tls_port``) keeping nothing on
    disk; waits until it listens."""
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_listening(tls_port or port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started here (bounded)."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def redis_server(*extra: str) -> Iterator[int]:
    """A throwaway single Redis; yields its port."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = start_redis(Path(tmp), port, *extra)
        try:
            yield port
        finally:
            stop(process)


@contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[list[int]]:
    """A Redis Cluster of ``nodes`` primaries (no replicas) on loopback; yields their ports."""
    with tempfile.TemporaryDirectory() as tmp:
        ports = [free_port() for _ in range(nodes)]
        bus_ports = [free_port() for _ in range(nodes)]
        processes = []
        try:
            for port, bus_port in zip(ports, bus_ports, strict=True):
                node_dir = Path(tmp) / str(port)
                node_dir.mkdir()
                processes.append(
                    start_redis(
                        node_dir,
                        port,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        # An explicit bus port: the default (port + 10000) can be past 65535.
                        "--cluster-port",
                        str(bus_port),
                    )
                )
            _form_cluster(ports, bus_ports)
            yield ports
        finally:
            for process in processes:
                stop(process)


def _form_cluster(ports: list[int], bus_ports: list[int]) -> None:
    clients = [redis.Redis(port=p, socket_timeout=2) for p in ports]
    share = CLUSTER_SLOTS // len(ports)
    for index, client in enumerate(clients):
        first = index * share
        last = CLUSTER_SLOTS - 1 if index == len(ports) - 1 else first + share - 1
        client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
    for port, bus_port in zip(ports[1:], bus_ports[1:], strict=True):
        clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus_port)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not all(_cluster_ok(c) for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("the test Redis Cluster did not reach cluster_state:ok")
        time.sleep(0.1)
    for client in clients:
        client.close()


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


TLS_USER, TLS_PASSWORD = "bici-app", "s3cret-Passw0rd"


@contextmanager
def tls_redis_server(directory: Path) -> Iterator[tuple[int, Path]]:
    """A TLS-only Redis with an RBAC user and no default-user access; yields (port, CA file)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    # fmt: off
    process = start_redis(
        directory, 0,
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
        # Each ACL rule is its own argument; the default user is switched off.
        "--user", "default", "off",
        "--user", TLS_USER, "on", f">{TLS_PASSWORD}", "~*", "&*", "+@all",
        tls_port=port,
    )
    # fmt: on
    try:
        yield port, cert
    finally:
        stop(process)
