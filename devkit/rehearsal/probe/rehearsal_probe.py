"""Loaded into a rehearsed function process before awslambdaric: times socket work by peer.

Standard library only, and only modules the interpreter has loaded already (``socket`` is
imported here; ``ssl`` is wrapped when something imports it), so the function's own import
profile is unchanged. ``REHEARSAL_PORTS`` ("6379=redis,5432=postgresql,...") names the peers;
each connect, TLS handshake and blocking read or write to one of them is appended to
``REHEARSAL_PROBE_FILE`` as ``start end kind label`` (CLOCK_MONOTONIC, the parent's clock too).
"""

import os
import socket
import sys
import time

_clock = time.monotonic


def install() -> None:
    """Wrap the socket methods; a no-op without ``REHEARSAL_PROBE_FILE``."""
    path = os.environ.get("REHEARSAL_PROBE_FILE")
    if not path:
        return
    ports = {}
    for item in (os.environ.get("REHEARSAL_PORTS") or "").split(","):
        port, _, label = item.partition("=")
        if port.strip().isdigit():
            ports[int(port)] = label.strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def label_of(sock):
        try:
            return ports.get(sock.getpeername()[1])
        except (OSError, IndexError, TypeError):
            return None

    def record(start, kind, label):
        os.write(fd, f"{start:.6f} {_clock():.6f} {kind} {label}\n".encode())

    def timed(kind, original, by_address=False):
        def wrapper(self, *args, **kwargs):
            if by_address:
                address = args[0] if args else None
                label = ports.get(address[1]) if isinstance(address, tuple) else None
            else:
                label = label_of(self)
            if label is None:
                return original(self, *args, **kwargs)
            start = _clock()
            try:
                return original(self, *args, **kwargs)
            finally:
                record(start, kind, label)

        return wrapper

    cls = socket.socket
    # setattr: patching the class on purpose (mypy refuses a plain method assignment).
    setattr(cls, "connect", timed("connect", cls.connect, by_address=True))  # noqa: B010
    for name in ("recv", "recv_into", "sendall", "send"):
        setattr(cls, name, timed("io", getattr(cls, name)))

    # ssl is not imported yet (the function may never need it): wrap it when it is.
    class _Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "ssl":
                return None
            sys.meta_path.remove(_Finder)
            from importlib.machinery import PathFinder

            spec = PathFinder.find_spec("ssl", path)
            loader = spec.loader
            exec_module = loader.exec_module

            def exec_and_wrap(module):
                exec_module(module)
                sslsocket = module.SSLSocket
                sslsocket.do_handshake = timed("tls", sslsocket.do_handshake)
                for io_name in ("recv", "recv_into", "sendall", "send", "read", "write"):
                    setattr(sslsocket, io_name, timed("io", getattr(sslsocket, io_name)))

            loader.exec_module = exec_and_wrap
            return spec

    sys.meta_path.insert(0, _Finder)
