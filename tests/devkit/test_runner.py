"""The local runner (`make run`) over real HTTP, `devkit.cli invoke` and `cache` as
subprocesses, and the translation between HTTP and API Gateway HTTP API payload 2.0 events."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from devkit import lambda_env, services
from devkit.cli import unsigned_banner
from devkit.lambda_env import HttpRoute, RouteMatch, Router
from devkit.local_auth import LocalAuth
from devkit.runner import HttpRequest, LocalApi, build_event, translate_response
from devkit.sms_events import sign_twilio
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS
from tests.support.db import scalar
from tests.support.redis_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
INITIATION_PATH = "/webhooks/elevenlabs/conversation-initiation"
SMS_PATH = "/webhooks/twilio/sms"
STORE_NUMBER = "+17786528784"
INITIATION_KEYS = set(DYNAMIC_VARIABLE_KEYS)
# Headers API Gateway sets itself (or urllib does): not replayed from the sample events.
HOP_HEADERS = {"host", "content-length", "x-forwarded-for", "x-forwarded-port"}
HOP_HEADERS |= {"x-forwarded-proto", "x-amzn-trace-id"}
INITIATION_STATUS = {
    "known_caller.json": 200,
    "outbound_call.json": 200,
    "new_caller.json": 200,
    "anonymous_caller.json": 200,
    "unknown_store.json": 200,
    "bad_secret.json": 401,
    "malformed_body.json": 400,
}

# A bounded burst on loopback: 32 clients (the load that met resets), 200 requests.
BURST_CLIENTS = 32
BURST_REQUESTS = 200

LEAD_ID = "7d0c3a52-8f7e-4b8e-9d59-3c2f3f6f0b11"
LEAD_ROUTE = HttpRoute("LeadUpdateFunction", "GetLead", "GET", "/leads/{lead_id}", "AWS_IAM")
SMS_ROUTE = HttpRoute("SmsWebhookFunction", "TwilioSms", "POST", SMS_PATH)


class Reply:
    """An HTTP answer: status, headers (case-insensitive) and body."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    api: LocalApi,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    url = api.url + path
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.headers, error.read())


def replay(api: LocalApi, event_file: Path) -> Reply:
    """Send a sample event's method, path, headers and body over HTTP."""
    event = json.loads(event_file.read_text())
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k: v for k, v in event["headers"].items() if k not in HOP_HEADERS}
    path = event["rawPath"] + (f"?{event['rawQueryString']}" if event["rawQueryString"] else "")
    return send(api, event["requestContext"]["http"]["method"], path, data or None, headers)


@pytest.fixture
def local_api(app_env: dict[str, str]) -> Iterator[LocalApi]:
    """The runner on a free port, against the test database and Redis, stopped afterwards."""
    api = LocalApi(lambda_env.functions(), "127.0.0.1", 0, log=io.StringIO())
    api.start()
    try:
        yield api
    finally:
        api.stop()


def log_lines(api: LocalApi) -> list[str]:
    assert isinstance(api.log, io.StringIO)
    return api.log.getvalue().splitlines()


def twilio_form(sid: str, sender: str = "+16045550177") -> list[tuple[str, str]]:
    return [
        ("ToCountry", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("From", sender),
        ("To", STORE_NUMBER),
        ("Body", "Do you have gravel bikes in stock?"),
        ("FromCity", ""),
        ("MessageSid", sid),
        ("AccountSid", "AC" + "0" * 32),
        ("ApiVersion", "2010-04-01"),
    ]


def count_messages(database_url: str, sid: str) -> int:
    return int(
        scalar(database_url, "SELECT count(*) FROM messages WHERE external_id = :sid", sid=sid)
    )


# -- over real HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INITIATION_STATUS))
def test_local_api_answers_initiation_sample_events(local_api: LocalApi, name: str) -> None:
    reply = replay(local_api, EVENTS / "conversation_initiation" / name)

    assert reply.status == INITIATION_STATUS[name]
    assert reply.headers["Content-Type"] == "application/json"
    if reply.status == 200:
        body = reply.json()
        assert body["type"] == "conversation_initiation_client_data"
        assert set(body["dynamic_variables"]) == INITIATION_KEYS
    else:
        assert set(reply.json()) == {"message"}
    assert len(log_lines(local_api)) == 1


def test_local_api_logs_one_line_per_request_with_cache_outcomes(local_api: LocalApi) -> None:
    sample = json.loads((EVENTS / "conversation_initiation" / "new_caller.json").read_text())
    body = json.loads(sample["body"])
    body["caller_id"] = "+1604555" + str(uuid.uuid4().int % 10_000).zfill(4)
    headers = {"Content-Type": "application/json", "X-Webhook-Secret": "test-initiation-secret"}
    data = json.dumps(body).encode()

    first = send(local_api, "POST", INITIATION_PATH, data, headers)
    second = send(local_api, "POST", INITIATION_PATH, data, headers)

    assert (first.status, second.status) == (200, 200)
    lines = log_lines(local_api)
    assert len(lines) == 2
    assert lines[0].startswith(f"POST {INITIATION_PATH} 200 ")
    assert "ConversationInitiationFunction" in lines[0]
    # Fresh key prefix: the organization and the lead both miss, then both hit.
    assert lines[0].endswith("cache hit=0 miss=2 bypass=0")
    assert lines[1].endswith("cache hit=2 miss=0 bypass=0")


def test_local_api_accepts_signed_twilio_form_and_stores_message(
    local_api: LocalApi, database_url: str
) -> None:
    sid = "SM" + uuid.uuid4().hex
    form = twilio_form(sid)
    # The webhook rebuilds the URL Twilio signed from https:// + requestContext.domainName.
    host = local_api.url.removeprefix("http://")
    signature = sign_twilio(f"https://{host}{SMS_PATH}", form)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }

    reply = send(local_api, "POST", SMS_PATH, urlencode(form).encode(), headers)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert reply.body.decode().endswith("<Response/>")
    assert count_messages(database_url, sid) == 1


def test_local_api_rejects_forged_twilio_form_and_stores_nothing(
    local_api: LocalApi, database_url: str
) -> None:
    sid = "SM" + uuid.uuid4().hex
    form = twilio_form(sid)
    host = local_api.url.removeprefix("http://")
    signature = sign_twilio(f"https://{host}{SMS_PATH}", form, "not-the-auth-token")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }

    reply = send(local_api, "POST", SMS_PATH, urlencode(form).encode(), headers)

    assert reply.status == 403
    assert set(reply.json()) == {"message"}
    assert count_messages(database_url, sid) == 0


def test_local_api_unknown_lead_is_404_json(local_api: LocalApi) -> None:
    token = local_api.auth.mint("olga")
    reply = send(
        local_api, "GET", f"/leads/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
    )

    assert reply.status == 404
    assert reply.headers["Content-Type"] == "application/json"
    assert set(reply.json()) == {"message"}
    assert "LeadUpdateFunction" in log_lines(local_api)[0]


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", SMS_PATH)])
def test_local_api_unknown_route_is_api_gateway_404(
    local_api: LocalApi, method: str, path: str
) -> None:
    reply = send(local_api, method, path)

    assert reply.status == 404
    assert reply.json() == {"message": "Not Found"}
    [line] = log_lines(local_api)
    assert re.fullmatch(rf"{method} {path} 404 [0-9.]+ms - cache hit=0 miss=0 bypass=0", line)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_local_api_method_no_route_has_is_json_404(local_api: LocalApi, method: str) -> None:
    host, port = urlsplit(local_api.url).hostname, urlsplit(local_api.url).port
    connection = http.client.HTTPConnection(host or "", port, timeout=10)
    try:
        connection.request(method, INITIATION_PATH)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 404
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"message": "Not Found"}
    [line] = log_lines(local_api)
    assert line.startswith(f"{method} {INITIATION_PATH} 404 ")


def test_local_api_malformed_request_line_is_json_400(local_api: LocalApi) -> None:
    parts = urlsplit(local_api.url)

    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/9.9 extra\r\n\r\n")
        answer = sock.makefile("rb").read()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"message": "Bad Request"}


def test_local_api_holds_connections_that_arrive_before_it_accepts(
    app_env: dict[str, str],
) -> None:
    # Not started yet: every connection waits in the listen backlog. With socketserver's
    # default of 5 the kernel drops the SYNs past it and these connects time out.
    api = LocalApi(lambda_env.functions(), "127.0.0.1", 0, log=io.StringIO())
    parts = urlsplit(api.url)
    sockets = []
    try:
        for _ in range(BURST_CLIENTS * 2):
            sockets.append(socket.create_connection((parts.hostname, parts.port), timeout=2))
        api.start()
        for sock in sockets:
            sock.sendall(b"GET /nope HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
        answers = [sock.makefile("rb").read() for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        api.stop()

    assert len(answers) == BURST_CLIENTS * 2
    assert all(answer.startswith(b"HTTP/1.1 404 ") for answer in answers)


def test_local_api_takes_a_burst_of_concurrent_clients(local_api: LocalApi) -> None:
    sample = json.loads((EVENTS / "conversation_initiation" / "known_caller.json").read_text())
    headers = {k: v for k, v in sample["headers"].items() if k not in HOP_HEADERS}
    data = sample["body"].encode()
    paths = [INITIATION_PATH if i % 2 else "/nope" for i in range(BURST_REQUESTS)]

    def one(path: str) -> int | str:
        try:
            if path == "/nope":
                return send(local_api, "GET", path).status
            return send(local_api, "POST", path, data, headers).status
        except OSError as exc:  # resets, refused or timed-out connections
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=BURST_CLIENTS) as pool:
        outcomes = list(pool.map(one, paths))

    assert [o for o in outcomes if not isinstance(o, int)] == []
    assert Counter(outcomes) == {200: BURST_REQUESTS // 2, 404: BURST_REQUESTS // 2}
    assert len(log_lines(local_api)) == BURST_REQUESTS


def test_local_api_serves_every_http_route_of_the_template() -> None:
    routes = {r.route_key: r.function for r in lambda_env.http_routes()}
    checked = {r.route_key for r in lambda_env.http_routes() if r.jwt}

    assert routes == {
        f"POST {INITIATION_PATH}": "ConversationInitiationFunction",
        f"POST {SMS_PATH}": "SmsWebhookFunction",
        "POST /webhooks/twilio/status": "SmsWebhookFunction",
        "GET /leads": "LeadUpdateFunction",
        "GET /leads/{lead_id}": "LeadUpdateFunction",
        "PATCH /leads/{lead_id}": "LeadUpdateFunction",
        "DELETE /leads/{lead_id}": "LeadUpdateFunction",
        "GET /leads/{lead_id}/messages": "LeadUpdateFunction",
        "GET /leads/{lead_id}/timeline": "LeadUpdateFunction",
        "POST /leads/{lead_id}/messages": "LeadUpdateFunction",
        "POST /leads/{lead_id}/calls": "LeadUpdateFunction",
        "POST /webhooks/elevenlabs/post-call": "PostCallWebhookFunction",
        "GET /console": "ConsoleFunction",
        "GET /console/{proxy+}": "ConsoleFunction",
    }
    # The staff routes are the JWT authorizer's, and only they.
    assert checked == {key for key in routes if " /leads" in key}


# -- the CLI as a subprocess ---------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devkit.cli", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_invoke_prints_only_the_handler_response_on_stdout(app_env: dict[str, str]) -> None:
    result = run_cli(
        "invoke",
        "ConversationInitiationFunction",
        "events/conversation_initiation/known_caller.json",
    )

    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert set(json.loads(response["body"])["dynamic_variables"]) == INITIATION_KEYS
    # Logs and metrics went to stderr; the env's secret was used, not printed.
    assert "INITIATION_WEBHOOK_SECRET from the environment" in result.stderr


def test_cli_invoke_runs_the_post_call_processor_on_its_sample_batch(
    app_env: dict[str, str], database_url: str
) -> None:
    batch = json.loads((ROOT / "events/post_call_processor/sqs_batch.json").read_text())
    conversations = [json.loads(r["body"])["conversation_id"] for r in batch["Records"]]

    result = run_cli(
        "invoke", "PostCallProcessorFunction", "events/post_call_processor/sqs_batch.json"
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"batchItemFailures": []}
    stored = scalar(
        database_url,
        "SELECT count(*) FROM call_summaries WHERE conversation_id = ANY(:c)",
        c=conversations,
    )
    assert stored == len(conversations)


def test_cli_invoke_unknown_function_names_the_known_ones(app_env: dict[str, str]) -> None:
    result = run_cli("invoke", "NoSuchFunction", "events/conversation_initiation/new_caller.json")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "ConversationInitiationFunction" in result.stderr


def test_cli_cache_status_runs_the_cache_admin_handler(app_env: dict[str, str]) -> None:
    result = run_cli("cache", "status")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] is True
    assert answer["action"] == "status"
    assert answer["result"]["key_prefix"] == app_env["CACHE_KEY_PREFIX"]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_run(
    data_dir: Path, sigint_ignored: bool = False
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`devkit.cli run` on a free port with embedded services in ``data_dir``; its URL.

    ``sigint_ignored``: started as a non-interactive shell starts a background job,
    with SIGINT ignored (a disposition the process inherits).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    # The SMS stand-ins on free ports too: a `make run` elsewhere on this machine holds theirs.
    env.update(STANDIN_AGENT_PORT="0", STANDIN_TWILIO_PORT="0")
    child = subprocess.Popen(
        [sys.executable, "-m", "devkit.cli", "run", "--port", "0", "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    assert child.stderr is not None
    lines: list[str] = []
    for line in child.stderr:  # ends when the child exits
        lines.append(line)
        found = re.match(r"serving on (http://\S+)", line)
        if found:
            return child, found.group(1), lines
    child.wait(timeout=10)
    raise AssertionError("".join(lines))


def _stop_run(child: subprocess.Popen[str], signum: int, lines: list[str]) -> str:
    """Signal the runner, wait for it; everything it printed."""
    child.send_signal(signum)
    try:
        _, out = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()  # not left running after the test
        child.communicate()
        raise
    assert child.returncode == 0, "".join(lines) + out
    return "".join(lines) + out


def _pids(data_dir: Path) -> list[int]:
    postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    return [postmaster, int((data_dir / "redis" / "redis.pid").read_text())]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited, not yet reaped by whoever adopted it


def test_cli_run_stops_the_embedded_services_it_started_and_only_those() -> None:
    # Not pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user (see
    # test_services). One data folder for both cases: initdb runs once.
    data_dir = Path(tempfile.mkdtemp(prefix="devkit-run-"))
    data_dir.chmod(0o755)
    try:
        child, url, lines = _start_run(data_dir)
        started = _pids(data_dir)
        try:
            token = LocalAuth(url).mint("olga")  # the run's own issuer: its URL
            request = urllib.request.Request(  # noqa: S310 - loopback
                f"{url}/leads/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
            )
            urllib.request.urlopen(request, timeout=10)  # noqa: S310
        except urllib.error.HTTPError as error:  # the handler looked in PostgreSQL
            answered = error.code
        out = _stop_run(child, signal.SIGINT, lines)

        assert answered == 404
        # The second sample store and the local sign-in, for the sample staff.
        assert any("store B: BICI Kitsilano +16045550188" in line for line in lines), out
        assert any(f"local sign-in: {url}/local-auth" in line for line in lines), out
        # Their calls go to the agent stand-in, from its number.
        assert any("outbound calls: the sample stores call" in line for line in lines), out
        assert all(_gone(pid) for pid in started), out
        assert services.embedded_running(data_dir) == frozenset()

        services.ensure_services(data_dir, embedded=True)  # someone else's, already running
        found = _pids(data_dir)
        child, url, lines = _start_run(data_dir)
        out = _stop_run(child, signal.SIGTERM, lines)

        assert not any(_gone(pid) for pid in found), out
        assert services.embedded_running(data_dir) == {"postgres", "redis"}

        # Ctrl-C stops it even when it was started with SIGINT ignored (CI in the background).
        child, url, lines = _start_run(data_dir, sigint_ignored=True)
        out = _stop_run(child, signal.SIGINT, lines)

        assert services.embedded_running(data_dir) == {"postgres", "redis"}, out
    finally:
        services.stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def _second_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devkit.cli", "run", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_run_a_second_run_on_the_same_ports_ends_in_one_line(
    app_env: dict[str, str],
) -> None:
    api, agent, twilio = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "STANDIN_AGENT_PORT": str(agent),
        "STANDIN_TWILIO_PORT": str(twilio),
        "ALLOW_UNSIGNED_WEBHOOKS": "true",
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "devkit.cli", "run", "--port", str(api)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stderr is not None
    lines: list[str] = []
    for line in first.stderr:
        lines.append(line)
        if line.startswith("serving on"):
            break
    try:
        second = _second_run(env, "--port", str(api))
        # The stand-ins' ports alone (the API on any free port) are refused the same way.
        stand_in = _second_run(env, "--port", "0")
    finally:
        out = _stop_run(first, signal.SIGTERM, lines)

    assert second.returncode == 2, second.stderr
    assert second.stderr.splitlines() == [
        f"error: port {api} (the local API) is already in use: another `make run` is probably"
        " running (stop it with Ctrl-C), or choose another port: make run PORT=3001"
    ]
    assert stand_in.returncode == 2, stand_in.stderr
    assert stand_in.stderr.splitlines() == [
        f"error: port {agent} (the ElevenLabs agent stand-in) is already in use: another"
        " `make run` is probably running (stop it with Ctrl-C), or choose another port:"
        f" STANDIN_AGENT_PORT={agent + 10} make run"
    ]
    # Unsigned mode was announced before serving, in a banner that cannot be missed.
    banner = [line for line in out.splitlines() if line.startswith("!!")]
    assert any("ALLOW_UNSIGNED_WEBHOOKS is on" in line for line in banner), out
    assert out.index("ALLOW_UNSIGNED_WEBHOOKS is on") < out.index("serving on")


def test_cli_run_banner_is_printed_in_unsigned_mode_only() -> None:
    assert unsigned_banner({}) is None
    assert unsigned_banner({"ALLOW_UNSIGNED_WEBHOOKS": "false"}) is None
    assert "NOT checked" in (unsigned_banner({"ALLOW_UNSIGNED_WEBHOOKS": "true"}) or "")


def test_cli_run_a_port_taken_by_anything_is_one_line_before_any_service_starts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(STANDIN_AGENT_PORT="0", STANDIN_TWILIO_PORT=str(port))

        result = _second_run(env, "--port", "0", "--data-dir", "/nonexistent/devkit-run")

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: port {port} (the Twilio stand-in) is already in use"), line
    assert line.endswith(f"STANDIN_TWILIO_PORT={port + 10} make run"), line


# -- HTTP <-> payload 2.0 translation (no network) ------------------------------------------


def make_request(**overrides: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "method": "GET",
        "target": f"/leads/{LEAD_ID}",
        "headers": [("Host", "127.0.0.1:3000"), ("User-Agent", "curl/8.5.0")],
        "body": b"",
        "source_ip": "127.0.0.1",
    }
    fields.update(overrides)
    return HttpRequest(**fields)


def test_build_event_lower_cases_and_comma_joins_headers() -> None:
    request = make_request(
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("X-Custom", "one"),
            ("x-custom", "two"),
            ("Cookie", "a=1; b=2"),
        ]
    )

    event = build_event(request, RouteMatch(LEAD_ROUTE, {}))

    assert event["headers"]["x-custom"] == "one,two"
    assert event["headers"]["host"] == "127.0.0.1:3000"
    assert all(name == name.lower() for name in event["headers"])
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]


def test_build_event_form_post_is_base64_encoded() -> None:
    form = b"From=%2B16045550142&Body=&To=%2B17786528784"
    request = make_request(
        method="POST",
        target=SMS_PATH,
        headers=[("Host", "h"), ("Content-Type", "application/x-www-form-urlencoded")],
        body=form,
    )

    event = build_event(request, RouteMatch(SMS_ROUTE, {}))

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == form


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/merge-patch+json", "text/plain; charset=utf-8"],
)
def test_build_event_text_body_is_passed_as_is(content_type: str) -> None:
    body = '{"status": "hot", "name": "Zoë"}'
    request = make_request(
        method="PATCH",
        headers=[("Host", "h"), ("Content-Type", content_type)],
        body=body.encode(),
    )

    event = build_event(request, RouteMatch(LEAD_ROUTE, {}))

    assert event["isBase64Encoded"] is False
    assert event["body"] == body


def test_build_event_carries_route_path_parameters_and_context() -> None:
    request = make_request()
    match = Router([LEAD_ROUTE, SMS_ROUTE]).match("GET", request.raw_path)
    assert match is not None

    event = build_event(request, match, now=1_700_000_000.5, request_id="abc=")

    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /leads/{lead_id}"
    assert event["pathParameters"] == {"lead_id": LEAD_ID}
    context = event["requestContext"]
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /leads/{lead_id}"
    assert context["requestId"] == "abc="
    assert context["timeEpoch"] == 1_700_000_000_500
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"
    assert context["http"] == {
        "method": "GET",
        "path": f"/leads/{LEAD_ID}",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8.5.0",
    }
    assert context["authorizer"]["iam"]["userArn"].endswith(":user/developer")
    assert "body" not in event


def test_build_event_keeps_raw_query_string_and_joins_repeated_parameters() -> None:
    request = make_request(target="/leads?phone=%2B16045550142&tag=a&tag=b&empty=")
    route = HttpRoute("LeadUpdateFunction", "FindLead", "GET", "/leads", "AWS_IAM")

    event = build_event(request, RouteMatch(route, {}))

    assert event["rawPath"] == "/leads"
    assert event["rawQueryString"] == "phone=%2B16045550142&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"phone": "+16045550142", "tag": "a,b", "empty": ""}


def test_build_event_public_route_has_no_authorizer() -> None:
    event = build_event(make_request(method="POST", target=SMS_PATH), RouteMatch(SMS_ROUTE, {}))

    assert "authorizer" not in event["requestContext"]
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event


def test_translate_response_maps_headers_cookies_and_base64_body() -> None:
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/png", "ETag": '"3"'},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["s=1; Path=/", "t=2"],
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    }

    response = translate_response(result)

    assert response.status == 201
    assert response.body == b"\x89PNG"
    assert ("ETag", '"3"') in response.headers
    assert [v for k, v in response.headers if k == "X-Multi"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["s=1; Path=/", "t=2"]


def test_translate_response_without_status_code_is_200_json() -> None:
    response = translate_response({"ok": True})

    assert response.status == 200
    assert response.headers == [("Content-Type", "application/json")]
    assert json.loads(response.body) == {"ok": True}


def test_router_prefers_literal_paths_and_explicit_methods() -> None:
    routes = [
        HttpRoute("Any", "e1", "ANY", "/leads/{lead_id}"),
        HttpRoute("Get", "e2", "GET", "/leads/{lead_id}"),
        HttpRoute("Literal", "e3", "GET", "/leads/export"),
        HttpRoute("Greedy", "e4", "ANY", "/{proxy+}"),
    ]
    router = Router(routes)

    def target(method: str, path: str) -> str | None:
        match = router.match(method, path)
        return match.route.function if match else None

    assert target("GET", "/leads/export") == "Literal"
    assert target("GET", "/leads/42") == "Get"
    assert target("DELETE", "/leads/42") == "Any"
    assert target("GET", "/other/deep/path") == "Greedy"
    greedy = router.match("GET", "/other/deep/path")
    assert greedy is not None
    assert greedy.path_parameters == {"proxy": "other/deep/path"}
    assert Router(routes[:3]).match("GET", "/leads/42/extra") is None


def test_template_loader_reads_cloudformation_short_tags(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        """
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 7
    Layers: [!Ref Layer]
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layers/lib/}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/fn/
      MemorySize: !Ref Memory
      Environment:
        Variables:
          ARN: !GetAtt Queue.Arn
          URL: !Sub "https://${Api}.example.com"
          PICK: !If [Cond, !Ref A, !Ref AWS::NoValue]
      Events:
        Web:
          Type: HttpApi
          Properties: {Path: "/items/{id}", Method: get, Auth: {Authorizer: AWS_IAM}}
        Nightly:
          Type: Schedule
          Properties: {Schedule: rate(1 day)}
"""
    )

    specs = lambda_env.functions(lambda_env.load_template(template), root=tmp_path)

    spec = specs["Fn"]
    assert spec.code_dir == tmp_path / "functions" / "fn"
    assert spec.module_file == tmp_path / "functions" / "fn" / "app.py"
    assert (spec.handler_name, spec.timeout_s, spec.memory_mb) == ("lambda_handler", 7, 128)
    assert spec.layer_dirs == (tmp_path / "layers" / "lib",)
    assert spec.environment == {
        "ARN": {"Fn::GetAtt": ["Queue", "Arn"]},
        "URL": {"Fn::Sub": "https://${Api}.example.com"},
        "PICK": {"Fn::If": ["Cond", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
    }
    assert [(r.route_key, r.iam) for r in spec.routes] == [("GET /items/{id}", True)]
    assert set(spec.events) == {"Web", "Nightly"}
