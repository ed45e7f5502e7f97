"""A local API Gateway for template.yaml's HttpApi routes: `sam local start-api` without Docker.

Each request becomes the HTTP API payload 2.0 event API Gateway would send (lower-cased,
comma-joined headers, cookies, raw query string, path parameters, base64 for non-text
bodies, ``requestContext.domainName`` from the Host header), the function's real
``lambda_handler`` runs in this process, and its answer goes back the way API Gateway
translates it. One line per request: method, path, status, milliseconds, function, and what
the read-through caches did.

``AWS_IAM`` routes are not signature-checked here: they get the ``authorizer.iam`` block of
a local "developer" identity, as if a signed request had been accepted. Routes under a JWT
authorizer are checked the way API Gateway checks Cognito's tokens, against the local
sign-in this runner serves under ``/local-auth`` (devkit/local_auth.py): signature, issuer,
audience or ``client_id``, expiry; else 401 ``{"message": "Unauthorized"}``. The claims reach
the function in ``requestContext.authorizer.jwt``, list claims flattened as ``[a b]``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from devkit.lambda_env import (
    LOCAL_ACCOUNT_ID,
    FunctionSpec,
    HttpRoute,
    RouteMatch,
    Router,
    invoke,
    is_loaded,
)
from devkit.local_auth import LocalAuth, gateway_claims

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
LOCAL_API_ID = "local"
# API Gateway's own limit on a request payload.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# An idle keep-alive connection is dropped after this long.
IDLE_TIMEOUT_S = 30
# Connections waiting to be accepted. socketserver's default of 5 overflowed under a burst of
# 32 clients (a dropped SYN costs the client a 1 s retransmit, or a reset); the kernel caps
# it at net.core.somaxconn.
LISTEN_BACKLOG = 1024

TEXT_TYPES = ("application/json", "application/xml")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

LOCAL_IAM_IDENTITY = {
    "accessKey": "AKIALOCALDEVELOPER00",
    "accountId": LOCAL_ACCOUNT_ID,
    "callerId": "AIDALOCALDEVELOPER00",
    "cognitoIdentity": None,
    "principalOrgId": None,
    "userArn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:user/developer",
    "userId": "AIDALOCALDEVELOPER00",
}


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as received: target as sent, headers in order, body bytes."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def raw_path(self) -> str:
        """The path as sent (still percent-encoded), without the query string."""
        return urlsplit(self.target).path or "/"

    @property
    def raw_query(self) -> str:
        """Everything after ``?``, exactly as sent."""
        return urlsplit(self.target).query


@dataclass
class HttpResponse:
    """What goes back to the client."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


# -- request -> event ---------------------------------------------------------------------


def is_text(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this type as text (else base64)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in TEXT_TYPES
        or (media.startswith("application/") and media.endswith(("+json", "+xml")))
    )


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    now: float | None = None,
    request_id: str | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The HTTP API payload 2.0 event API Gateway sends for ``request`` on ``match``
    (``claims``: the verified token's, on a JWT route)."""
    now = time.time() if now is None else now
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    host = headers.get("host", "localhost")
    # API Gateway adds these on the way in.
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{secrets.token_hex(12)}")

    route = match.route
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": host,
        "domainPrefix": host.split(":", 1)[0].split(".", 1)[0],
        "http": {
            "method": request.method.upper(),
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id or _request_id(),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    if route.iam:
        context["authorizer"] = {"iam": dict(LOCAL_IAM_IDENTITY)}
    elif route.jwt and claims is not None:
        scope = claims.get("scope")
        context["authorizer"] = {
            "jwt": {
                "claims": gateway_claims(claims),
                "scopes": str(scope).split() if scope else None,
            }
        }
    event["requestContext"] = context
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    if request.body:
        if is_text(headers.get("content-type")):
            try:
                event["body"] = request.body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            # Form posts too: HTTP API hands application/x-www-form-urlencoded over in base64.
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def _request_id() -> str:
    # The shape of API Gateway's ids, e.g. "JKJaXmPLvHcESHA=".
    return base64.b64encode(os.urandom(11)).decode("ascii").replace("/", "-").replace("+", "_")


def _clf_time(now: float) -> str:
    t = time.gmtime(now)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{time.strftime('%H:%M:%S', t)} +0000"
    )


# -- handler result -> response ------------------------------------------------------------


def translate_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a handler's payload 2.0 result."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0 without a statusCode: the whole result is a 200 JSON body.
        body = json.dumps(result).encode()
        return HttpResponse(200, [("Content-Type", "application/json")], body)
    status = int(result["statusCode"])
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), _header_value(value)))
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", str(cookie)))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
    return HttpResponse(status, headers, body)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_error(status: int, message: str) -> HttpResponse:
    """API Gateway's own error answers, e.g. ``{"message": "Not Found"}``."""
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("Content-Type", "application/json")], body)


# -- cache outcome counting ----------------------------------------------------------------


class CountingSink:
    """Wraps the runtime's metric sink (``ReadThroughCache.metrics``): counts, passes on.

    Why here and not from the EMF line the handler prints: the EMF writer
    (``observability.emf``) is one process-wide object flushed to stdout, so parsing it means
    capturing a shared stream and relies on the EMF format, and it says nothing when metrics
    are disabled. The sink is the layer's own seam (``ReadThroughCache.record`` and every
    in-process hit go through it), so the counts are exact whatever the writer does with them.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}

    def count(self, name: str) -> None:
        """Count ``name`` and hand it to the wrapped sink."""
        self.counts[name] = self.counts.get(name, 0) + 1
        self.inner.count(name)


def _counting_sink() -> CountingSink | None:
    """The current runtime's sink, wrapped once; None when there is none to wrap.

    Checked on every invocation: tests and the cache admin may replace the runtime.
    """
    from leadlookup.container import get_runtime

    try:
        cache = get_runtime().cache
    except Exception:
        return None  # the handler will meet (and report) the same configuration error
    sink = getattr(cache, "metrics", None)
    if sink is None:
        return None
    if not isinstance(sink, CountingSink):
        sink = CountingSink(sink)
        cache.metrics = sink
    return sink


def describe_counts(counts: dict[str, int]) -> str:
    """``cache hit=1 miss=1 bypass=0`` (plus errors and other metrics when there are any)."""
    from leadlookup.metrics import CACHE_METRICS, Outcome

    totals = {outcome: 0 for outcome in Outcome}
    others: list[str] = []
    for name, n in sorted(counts.items()):
        if name in CACHE_METRICS:
            outcome = next(o for o in Outcome if name.endswith(f"Cache{o.value}"))
            totals[outcome] += n
        else:
            others.append(f"{name}={n}")
    text = " ".join(
        f"{o.name.lower()}={totals[o]}" for o in (Outcome.HIT, Outcome.MISS, Outcome.BYPASS)
    )
    if totals[Outcome.ERROR]:
        text += f" error={totals[Outcome.ERROR]}"
    return " ".join(["cache", text, *others])


# -- the server ----------------------------------------------------------------------------


@dataclass
class Invocation:
    """One handler call: its HTTP response and the metrics it counted."""

    response: HttpResponse
    counts: dict[str, int]


class LocalApi:
    """Serves every HttpApi route of the given functions on ``host:port`` (0 = any free port).

    The layer keeps one runtime per process (one pg8000 connection, which is not thread
    safe) and Powertools' logger and the layer's metrics writer are process-wide, so this
    process is one warm container for every function: invocations run one at a time under a
    lock, while the threaded server keeps reading and answering connections concurrently.
    """

    def __init__(
        self,
        specs: dict[str, FunctionSpec],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        log: IO[str] | None = None,
    ) -> None:
        self.specs = specs
        routes: list[HttpRoute] = [r for spec in specs.values() for r in spec.routes]
        self.skipped = [r for r in routes if r.payload_format != "2.0"]
        self.router = Router([r for r in routes if r.payload_format == "2.0"])
        self.log = log if log is not None else sys.stderr
        self._invoke_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.server = _Server((host, port), _handler_class(self))
        # The local sign-in, its issuer at this server's own URL.
        self.auth = LocalAuth(self.url)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:3000``."""
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (or Ctrl-C in the caller)."""
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve from a background thread (tests)."""
        self._thread = threading.Thread(target=self.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Route, invoke, translate and log one request."""
        started = time.perf_counter()
        match = self.router.match(request.method, request.raw_path)
        request_id = _request_id()
        counts: dict[str, int] = {}
        function = "-"
        claims = None
        if self.auth.handles(request.raw_path):
            function = "local-auth"
            headers = {name: value for name, value in request.headers}
            status, answer_headers, body = self.auth.handle(
                request.method, request.target, headers, request.body
            )
            response = HttpResponse(status, answer_headers, body)
        elif match is None:
            response = json_error(404, "Not Found")
        elif match.route.jwt and (claims := self._claims(request)) is None:
            # API Gateway's own answer: the function never runs.
            function = match.route.function
            response = json_error(401, "Unauthorized")
        else:
            function = match.route.function
            if not is_loaded(self.specs[function]):
                function += " (cold)"
            event = build_event(request, match, request_id=request_id, claims=claims)
            invocation = self.invoke(self.specs[match.route.function], event)
            response, counts = invocation.response, invocation.counts
        response.headers.append(("Apigw-Requestid", request_id))
        elapsed_ms = (time.perf_counter() - started) * 1000
        line = (
            f"{request.method} {request.raw_path} {response.status} {elapsed_ms:.1f}ms "
            f"{function} {describe_counts(counts)}"
        )
        if claims is not None:
            line += f" user={claims.get('cognito:username') or claims.get('client_id')}"
        with self._log_lock:
            print(line, file=self.log, flush=True)
        return response

    def _claims(self, request: HttpRequest) -> dict[str, Any] | None:
        """The verified claims of the request's ``Authorization`` token, or None."""
        values = [v for k, v in request.headers if k.lower() == "authorization"]
        return self.auth.verify(values[0]) if len(values) == 1 else None

    def invoke(self, spec: FunctionSpec, event: dict[str, Any]) -> Invocation:
        """Run the handler (one at a time); a crash is API Gateway's 500."""
        with self._invoke_lock:
            sink = _counting_sink()
            before = dict(sink.counts) if sink is not None else {}
            try:
                response = translate_response(invoke(spec, event))
            except Exception:
                # Lambda logs the error; API Gateway answers a bare 500.
                with self._log_lock:
                    print(f"{spec.logical_id} failed:", file=self.log)
                    traceback.print_exc(file=self.log)
                response = json_error(500, "Internal Server Error")
            after = sink.counts if sink is not None else {}
            counts = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        return Invocation(response, counts)


class _Server(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog that takes a burst."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def _handler_class(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "bici-local-api"
        sys_version = ""
        timeout = IDLE_TIMEOUT_S

        def _serve(self) -> None:
            try:
                body = self._read_body()
            except ValueError as exc:
                self._send(json_error(400, str(exc)), close=True)
                return
            if body is None:
                self._send(json_error(413, "Request Entity Too Large"), close=True)
                return
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            try:
                response = api.handle(request)
            except Exception:
                traceback.print_exc(file=api.log)
                response = json_error(500, "Internal Server Error")
            self._send(response)

        def __getattr__(self, name: str) -> Any:
            # API Gateway routes on method and path alike: a method no route has (TRACE, or
            # any token) is an unmatched route, 404, where http.server would answer 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            # http.server's own answers (malformed request line, headers too long) in API
            # Gateway's JSON shape instead of an HTML page.
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            # An unparsable request line leaves HTTP/0.9, which would send the body alone.
            if self.request_version == "HTTP/0.9":
                self.request_version = self.protocol_version
            self._send(json_error(code, phrase), close=True)

        def _read_body(self) -> bytes | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise ValueError("bad Content-Length") from None
            if length > MAX_REQUEST_BYTES:
                return None
            return self.rfile.read(length) if length > 0 else b""

        def _read_chunked(self) -> bytes | None:
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise ValueError("bad chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)

        def _send(self, response: HttpResponse, close: bool = False) -> None:
            try:
                phrase = HTTPStatus(response.status).phrase
            except ValueError:
                phrase = ""
            self.send_response(response.status, phrase)
            skip = {"content-length", "transfer-encoding", "connection"}
            for name, value in response.headers:
                if name.lower() not in skip:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD" and response.body:
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            # LocalApi.handle writes the one line per request.
            pass

    return Handler


def serve(
    specs: dict[str, FunctionSpec],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[LocalApi], None] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C."""
    api = LocalApi(specs, host, port)
    try:
        if on_ready is not None:
            on_ready(api)
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.server.server_close()
