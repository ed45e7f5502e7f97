"""Loopback stand-ins for ElevenLabs' Agents WebSocket API and Twilio's Messages API.

Used by the tests and by ``make run`` so that replies work end to end without the internet.
Each speaks the documented protocol (messages, headers, error shapes) and has modes:

AgentStandIn (``ws://127.0.0.1:<port>/v1/convai/conversation?agent_id=<id>``), one port for
the WebSocket and the REST calls (``ELEVENLABS_API_URL`` = ``http://127.0.0.1:<port>``):
  * ``GET /v1/convai/conversation/get-signed-url?agent_id=`` with ``xi-api-key`` -> 200
    ``{"signed_url": "ws://...&conversation_signature=<token>"}`` (a token is good once), 401 for
    a missing or wrong key, 404 for another agent; ``GET /v1/convai/agents/<id>`` answers
    ``agent_config`` (by default one describing the stand-in) the same way.
  * The conversation opens with the agent id alone (``enable_auth`` off: a public agent) or with
    a signed URL's token; ``enable_auth`` refuses the first with HTTP 403. A wrong ``xi-api-key``
    header gets 401, an unknown agent 404. Each conversation is recorded (its initiation data,
    user messages, pongs, tool results, whether it was signed and whether a key was sent).
  * After ``conversation_initiation_client_data`` the server sends
    ``conversation_initiation_metadata`` and a ``ping``; it answers a ``user_message`` only after
    the pong came. The greeting is ``first_message`` rendered from the dynamic variables (the
    store's agent uses ``{{dynamic_greeting}}``; empty: no greeting), sent at once,
    ``greeting_delay_s`` after the metadata, or (``greeting_after_text``) only once the user's
    text has arrived. ``echo`` sends the text back as a ``user_transcript`` first.
  * The answer is built from the text and the ``customer_name`` / ``store_status`` /
    ``store_is_open`` variables, after ``delay_s``; ``split_answer`` sends it as two
    ``agent_response`` events. ``holding`` says that phrase first, then uses a tool for
    ``tool_delay_s``, reported as ``tool``: ``webhook`` (``agent_tool_request`` /
    ``agent_tool_response``), ``client`` (``client_tool_call``; the answer waits for the
    client's ``client_tool_result``), ``mcp`` (``mcp_tool_call``) or ``none`` (no tool events,
    like the store's agent, whose client events leave them out).
  * ``mode``: ``normal``; ``error`` (closes with 1011 instead of answering); ``silent`` (never
    answers).

TwilioStandIn (``http://127.0.0.1:<port>``):
  * ``POST /2010-04-01/Accounts/<sid>/Messages.json``, HTTP basic auth (sid, token), form
    ``To``, ``From`` or ``MessagingServiceSid``, ``Body``, optional ``StatusCallback`` -> 201
    message JSON (``sid`` SM..., ``status`` queued); errors as Twilio's
    ``{"code", "message", "more_info", "status"}``: 20003 auth, 21602 no body, 21604 no To,
    21617 a body over 1,600 characters, 21603 neither From nor MessagingServiceSid, 21212 a
    From that is not E.164, 21606 a From the account does not own (``owned_numbers``, by
    default the seeded store's), 21701 an unknown Messaging Service (``messaging_services``),
    21610 an unsubscribed recipient.
  * With ``StatusCallback`` it posts the message's statuses there from a background thread,
    each ``callback_delay_s`` after the last, signed with the auth token as Twilio signs
    (``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL and the sorted fields): queued,
    sent, delivered; or, for a recipient in ``failures``, the configured status and
    ``ErrorCode`` (``failed`` without ``sent``). ``callbacks`` records each post.
  * ``fail_next``: a list of statuses (429, 500, 503) answered before the next successes;
    ``delay_s`` makes it slow. ``GET .../Messages.json`` lists what was accepted, and
    ``forms`` holds the form of each accepted request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import Server, ServerConnection, serve

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
AGENTS_PATH = "/v1/convai/agents/"
# The store's agent's first message (its exported configuration).
STORE_FIRST_MESSAGE = "{{dynamic_greeting}}"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# What reset() restores: every knob a test may turn.
_AGENT_KNOBS = (
    "api_key",
    "mode",
    "delay_s",
    "first_message",
    "greeting_delay_s",
    "greeting_after_text",
    "echo",
    "holding",
    "tool",
    "tool_delay_s",
    "split_answer",
    "enable_auth",
    "agent_config",
)


def render(template: str, variables: dict[str, Any]) -> str:
    """``{{name}}`` placeholders filled from ``variables`` (missing ones left empty)."""
    return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1)) or ""), template).strip()


@dataclass
class AgentStandIn:
    """An ElevenLabs-like agent (WebSocket conversation and REST) on a loopback port."""

    agent_id: str = "agent_standin"
    api_key: str | None = "xi-test-key"
    mode: str = "normal"
    delay_s: float = 0.0
    first_message: str = STORE_FIRST_MESSAGE
    greeting_delay_s: float = 0.0
    greeting_after_text: bool = False
    # Echo each user_message as a user_transcript event before answering it.
    echo: bool = False
    holding: str | None = None
    tool: str = "webhook"
    tool_delay_s: float = 0.0
    split_answer: bool = False
    enable_auth: bool = False
    agent_config: dict[str, Any] | None = None
    conversations: list[dict[str, Any]] = field(default_factory=list)
    signed_url_requests: list[dict[str, Any]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _handshakes: dict[int, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Server | None = None
    _thread: threading.Thread | None = None

    def start(self, port: int = 0) -> AgentStandIn:
        """Listen on 127.0.0.1 (a free port by default) in a daemon thread."""
        self._server = serve(self._converse, "127.0.0.1", port, process_request=self._check_request)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        """The listening port."""
        assert self._server is not None
        return int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """``ELEVENLABS_WS_URL`` for this stand-in."""
        return f"ws://127.0.0.1:{self.port}{CONVERSATION_PATH}"

    @property
    def api_url(self) -> str:
        """``ELEVENLABS_API_URL`` for this stand-in (the same port)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def reset(self) -> None:
        """Back to a normal public agent with no conversations recorded (between tests)."""
        defaults = AgentStandIn()
        for name in _AGENT_KNOBS:
            setattr(self, name, getattr(defaults, name))
        with self._lock:
            self.conversations.clear()
            self.signed_url_requests.clear()
            self._tokens.clear()
            self._handshakes.clear()

    def config(self) -> dict[str, Any]:
        """What ``GET /v1/convai/agents/<id>`` answers: ``agent_config``, or the stand-in's own."""
        if self.agent_config is not None:
            return self.agent_config
        return {
            "agent_id": self.agent_id,
            "name": "Stand-in agent",
            "conversation_config": {
                "agent": {"first_message": self.first_message, "language": "en"},
                "conversation": {
                    "text_only": False,
                    "client_events": ["audio", "interruption", "user_transcript", "agent_response"],
                },
            },
            "platform_settings": {
                "auth": {"enable_auth": self.enable_auth},
                "overrides": {
                    "conversation_config_override": {
                        "conversation": {"text_only": True},
                        "agent": {"first_message": True, "language": True},
                    }
                },
            },
        }

    # -- the handshake and the REST calls ---------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Any) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        key = request.headers.get("xi-api-key")
        if parts.path == SIGNED_URL_PATH:
            return self._signed_url(key, query)
        if parts.path.startswith(AGENTS_PATH):
            return self._agent(key, parts.path[len(AGENTS_PATH) :])
        if parts.path != CONVERSATION_PATH:
            return _http(404, "not found")
        if key is not None and key != self.api_key:
            return _http(401, "invalid api key")
        if query.get("agent_id") != [self.agent_id]:
            return _http(404, "agent not found")
        token = (query.get("conversation_signature") or [""])[0]
        with self._lock:
            signed = token in self._tokens
            self._tokens.discard(token)
        if token and not signed:
            return _http(403, "the conversation signature is invalid or already used")
        if self.enable_auth and not signed:
            return _http(403, "this agent requires a signed URL")
        with self._lock:
            self._handshakes[id(connection)] = {"signed": signed, "api_key_sent": key is not None}
        return None

    def _signed_url(self, key: str | None, query: dict[str, list[str]]) -> Response:
        with self._lock:
            self.signed_url_requests.append({"agent_id": query.get("agent_id"), "api_key": key})
        if self.api_key is None or key != self.api_key:
            return _http(401, "invalid api key")
        if query.get("agent_id") != [self.agent_id]:
            return _http(404, "agent not found")
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens.add(token)
        signed = f"ws://127.0.0.1:{self.port}{CONVERSATION_PATH}?" + urlencode(
            {"agent_id": self.agent_id, "conversation_signature": token}
        )
        return _json(200, {"signed_url": signed})

    def _agent(self, key: str | None, agent_id: str) -> Response:
        if self.api_key is None or key != self.api_key:
            return _http(401, "invalid api key")
        if agent_id != self.agent_id:
            return _http(404, "agent not found")
        return _json(200, self.config())

    # -- the conversation -----------------------------------------------------------------------

    def _converse(self, socket: ServerConnection) -> None:
        with self._lock:
            handshake = self._handshakes.pop(id(socket), {})
        record: dict[str, Any] = {
            "init": None,
            "user_messages": [],
            "pongs": [],
            "tool_results": [],
            "signed": handshake.get("signed", False),
            "api_key_sent": handshake.get("api_key_sent", False),
        }
        with self._lock:
            self.conversations.append(record)
        init = json.loads(socket.recv(timeout=10))
        record["init"] = init
        if init.get("type") != "conversation_initiation_client_data":
            socket.close(1008, "expected conversation_initiation_client_data")
            return
        events = _Events(socket)
        events.send(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": f"conv_{uuid.uuid4().hex[:20]}",
                    "agent_output_audio_format": "pcm_16000",
                    "user_input_audio_format": "pcm_16000",
                },
            }
        )
        events.send({"type": "ping", "ping_event": {"event_id": 1, "ping_ms": None}})
        variables = init.get("dynamic_variables") or {}
        greeting = render(self.first_message, variables)
        greeting_at: float | None = None
        if greeting and not self.greeting_after_text:
            greeting_at = time.monotonic() + self.greeting_delay_s
        pending: str | None = None
        try:
            while True:
                if greeting_at is not None and time.monotonic() >= greeting_at:
                    events.response(greeting)
                    greeting, greeting_at = "", None
                wait = None if greeting_at is None else max(0.0, greeting_at - time.monotonic())
                try:
                    event = json.loads(socket.recv(timeout=wait))
                except TimeoutError:
                    continue
                if event.get("type") == "pong":
                    record["pongs"].append(event.get("event_id"))
                elif event.get("type") == "user_message":
                    pending = str(event.get("text") or "")
                    record["user_messages"].append(pending)
                    if greeting and self.greeting_after_text:
                        events.response(greeting)
                        greeting = ""
                    if self.echo:
                        events.send(
                            {
                                "type": "user_transcript",
                                "user_transcription_event": {
                                    "user_transcript": pending,
                                    "event_id": events.next_id(),
                                },
                            }
                        )
                elif event.get("type") == "client_tool_result":
                    record["tool_results"].append(event)
                if pending is not None and record["pongs"]:
                    self._answer(events, pending, variables, record)
                    pending = None
        except ConnectionClosed:
            return

    def _answer(
        self, events: _Events, text: str, variables: dict[str, Any], record: dict[str, Any]
    ) -> None:
        if self.mode == "silent":
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.mode == "error":
            events.socket.close(1011, "internal error")
            return
        if self.holding:
            events.response(self.holding)
            self._use_tool(events, record)
        name = variables.get("customer_name") or "there"
        status = variables.get("store_status") or (
            "We're open today." if variables.get("store_is_open") == "true" else "We're closed now."
        )
        first = f"Hi {name}! You said: {text[:80]}."
        if self.split_answer:
            events.response(first)
            events.response(status)
        else:
            events.response(f"{first} {status}")

    def _use_tool(self, events: _Events, record: dict[str, Any]) -> None:
        call = {"tool_name": "search_shop_catalog", "tool_call_id": f"call_{uuid.uuid4().hex[:8]}"}
        if self.tool == "webhook":
            events.send(
                {
                    "type": "agent_tool_request",
                    "agent_tool_request": {**call, "tool_type": "webhook", "event_id": events.id},
                }
            )
        elif self.tool == "client":
            events.send(
                {
                    "type": "client_tool_call",
                    "client_tool_call": {**call, "parameters": {}, "event_id": events.id},
                }
            )
            # The agent waits for the client's result (up to its tool timeout).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                event = json.loads(events.socket.recv(timeout=deadline - time.monotonic()))
                if event.get("type") == "client_tool_result":
                    record["tool_results"].append(event)
                    break
                if event.get("type") == "pong":
                    record["pongs"].append(event.get("event_id"))
        elif self.tool == "mcp":
            mcp = {**call, "service_id": "mcp_standin", "parameters": {}, "timestamp": _now()}
            events.send({"type": "mcp_tool_call", "mcp_tool_call": {**mcp, "state": "loading"}})
        if self.tool_delay_s:
            time.sleep(self.tool_delay_s)
        if self.tool == "webhook":
            response = {**call, "tool_type": "webhook", "is_error": False, "is_called": True}
            events.send(
                {
                    "type": "agent_tool_response",
                    "agent_tool_response": {**response, "event_id": events.id},
                }
            )
        elif self.tool == "mcp":
            done = {**call, "service_id": "mcp_standin", "parameters": {}, "timestamp": _now()}
            events.send(
                {
                    "type": "mcp_tool_call",
                    "mcp_tool_call": {**done, "state": "success", "result": []},
                }
            )


class _Events:
    """Server events on one conversation, with ElevenLabs' increasing ``event_id``."""

    def __init__(self, socket: ServerConnection) -> None:
        self.socket = socket
        self.id = 0

    def next_id(self) -> int:
        self.id += 1
        return self.id

    def send(self, event: dict[str, Any]) -> None:
        self.socket.send(json.dumps(event))

    def response(self, text: str) -> None:
        self.send(
            {
                "type": "agent_response",
                "agent_response_event": {"agent_response": text, "event_id": self.next_id()},
            }
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _json(status: int, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status, HTTPStatus(status).phrase, headers, data)


def _http(status: int, message: str) -> Response:
    return _json(status, {"detail": {"status": status, "message": message}})


# Twilio's limits on a send.
MAX_BODY_CHARS = 1600
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# The seeded default store's number, and a Messaging Service of the stand-in's account.
STORE_NUMBER = "+17786528784"
MESSAGING_SERVICE_SID = "MG" + "0" * 32
CALLBACK_TIMEOUT_S = 5.0


def _store_numbers() -> set[str]:
    return {STORE_NUMBER}


def _messaging_services() -> set[str]:
    return {MESSAGING_SERVICE_SID}


@dataclass
class TwilioStandIn:
    """A Twilio-like Messages API on a loopback port."""

    account_sid: str = "AC" + "0" * 32
    # The README's test secret, so the same TWILIO_AUTH_TOKEN signs webhooks and sends texts.
    auth_token: str = "test-twilio-auth-token"  # noqa: S105 - a documented test value
    delay_s: float = 0.0
    fail_next: list[int] = field(default_factory=list)
    unsubscribed: set[str] = field(default_factory=set)
    owned_numbers: set[str] = field(default_factory=_store_numbers)
    messaging_services: set[str] = field(default_factory=_messaging_services)
    # Status callbacks: the pause before each, and a recipient's final (status, ErrorCode).
    callback_delay_s: float = 0.05
    failures: dict[str, tuple[str, int]] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, port: int = 0) -> TwilioStandIn:
        """Listen on 127.0.0.1 (a free port by default) in a daemon thread."""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stand_in._post(self)

            def do_GET(self) -> None:
                stand_in._get(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        """``TWILIO_API_URL`` for this stand-in."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        """Back to answering at once with nothing recorded (between tests)."""
        with self._lock:
            self.delay_s, self.requests, self.callback_delay_s = 0.0, 0, 0.05
            self.fail_next.clear()
            self.unsubscribed.clear()
            self.owned_numbers = _store_numbers()
            self.messaging_services = _messaging_services()
            self.failures.clear()
            self.callbacks.clear()
            self.sent.clear()
            self.forms.clear()

    def wait_for_callbacks(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The callbacks posted, once at least ``count`` were (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.callbacks) >= count:
                    break
            time.sleep(0.01)
        with self._lock:
            return list(self.callbacks)

    def signature(self, url: str, fields: list[tuple[str, str]]) -> str:
        """``X-Twilio-Signature`` of a POST of ``fields`` to ``url``, as Twilio computes it."""
        data = url + "".join(name + value for name, value in sorted(fields))
        digest = hmac.new(self.auth_token.encode(), data.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def _path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return handler.headers.get("Authorization") == f"Basic {expected}"

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        if urlsplit(handler.path).path != self._path():
            return _reply(handler, 404, _error(20404, "The requested resource was not found", 404))
        if not self._authorized(handler):
            return _reply(handler, 401, _error(20003, "Authenticate", 401))
        with self._lock:
            messages = list(reversed(self.sent))
        _reply(handler, 200, {"messages": messages})

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True))
        with self._lock:
            self.requests += 1
            failure = self.fail_next.pop(0) if self.fail_next else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if urlsplit(handler.path).path != self._path():
            return _reply(handler, 404, _error(20404, "The requested resource was not found", 404))
        if not self._authorized(handler):
            return _reply(handler, 401, _error(20003, "Authenticate", 401))
        if failure == 429:
            return _reply(handler, 429, _error(20429, "Too Many Requests", 429), retry_after="0")
        if failure is not None:
            return _reply(handler, failure, _error(20500, "Internal Server Error", failure))
        refusal = self._refusal(form)
        if refusal is not None:
            return _reply(handler, 400, _error(refusal[0], refusal[1], 400))
        sid = "SM" + uuid.uuid4().hex
        message_resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            # A Messaging Service picks the sender later; the resource has none yet.
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form["Body"],
            "status": "queued",
            "error_code": None,
            "direction": "outbound-api",
            "num_segments": "1",
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            "uri": f"{self._path()[:-5]}/{sid}.json",
        }
        with self._lock:
            self.sent.append(message_resource)
            self.forms.append(form)
        _reply(handler, 201, message_resource)
        if form.get("StatusCallback"):
            threading.Thread(
                target=self._post_statuses,
                args=(form["StatusCallback"], message_resource),
                daemon=True,
            ).start()

    def _refusal(self, form: dict[str, str]) -> tuple[int, str] | None:
        """Twilio's error code and message for a send it refuses, else None."""
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not form.get("To"):
            return 21604, "A 'To' phone number is required."
        if not form.get("Body"):
            return 21602, "Message body is required."
        if len(form["Body"]) > MAX_BODY_CHARS:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        if service:
            if service not in self.messaging_services:
                return 21701, f"The Messaging Service Sid {service} is invalid."
        elif not sender:
            return 21603, "A 'From' or 'MessagingServiceSid' parameter is required."
        elif not _E164.fullmatch(sender):
            return 21212, f"The 'From' number {sender} is not a valid phone number."
        elif sender not in self.owned_numbers:
            return 21606, (
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account."
            )
        if form["To"] in self.unsubscribed:
            return 21610, "Attempt to send to unsubscribed recipient"
        return None

    def _post_statuses(self, url: str, message: dict[str, Any]) -> None:
        """Post the message's status changes to its StatusCallback, as Twilio does."""
        final = self.failures.get(message["to"])
        steps: list[tuple[str, int | None]] = [("queued", None)]
        if final is None:
            steps += [("sent", None), ("delivered", None)]
        else:
            steps += [] if final[0] == "failed" else [("sent", None)]
            steps.append(final)
        for status, error_code in steps:
            time.sleep(self.callback_delay_s)
            with self._lock:
                message["status"], message["error_code"] = status, error_code
            fields = [
                ("AccountSid", self.account_sid),
                ("ApiVersion", "2010-04-01"),
                ("From", message["from"] or STORE_NUMBER),
                ("MessageSid", message["sid"]),
                ("MessageStatus", status),
                ("SmsSid", message["sid"]),
                ("SmsStatus", status),
                ("To", message["to"]),
            ]
            if message["messaging_service_sid"]:
                fields.append(("MessagingServiceSid", message["messaging_service_sid"]))
            if error_code is not None:
                fields.append(("ErrorCode", str(error_code)))
            answer = self._post_callback(url, fields)
            with self._lock:
                self.callbacks.append(
                    {
                        "url": url,
                        "message_sid": message["sid"],
                        "status": status,
                        "error_code": error_code,
                        "answer": answer,
                    }
                )

    def _post_callback(self, url: str, fields: list[tuple[str, str]]) -> int | str:
        """POST one signed callback; the HTTP status, or why it could not be posted."""
        parts = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname or "", parts.port, timeout=CALLBACK_TIMEOUT_S)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": self.signature(url, fields),
        }
        try:
            connection.request("POST", path or "/", body=urlencode(fields), headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _reply(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: dict[str, Any],
    retry_after: str | None = None,
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    if retry_after is not None:
        handler.send_header("Retry-After", retry_after)
    handler.end_headers()
    handler.wfile.write(data)


# Fixed loopback ports for `make run`, so the README's curl lines can name them.
LOCAL_AGENT_PORT = 3101
LOCAL_TWILIO_PORT = 3102


def start_for_local_run(
    env: Any, err: Any, api_url: str | None = None
) -> list[AgentStandIn | TwilioStandIn]:
    """Start both stand-ins and point the reply settings at them (``make run``).

    Nothing is started when ``ELEVENLABS_AGENT_ID`` is already set: then the environment
    names a real agent (and Twilio account) on purpose. With ``api_url`` (the runner's own
    base URL) every send's StatusCallback is the runner's status route, so the stand-in's
    signed delivery updates come back through it; ``PUBLIC_BASE_URL`` defaults to it, the
    URL Twilio (here the stand-in) calls and signs.
    """
    if env.get("ELEVENLABS_AGENT_ID"):
        print("SMS replies: ELEVENLABS_AGENT_ID from the environment", file=err)
        return []
    agent = AgentStandIn().start(int(env.get("STANDIN_AGENT_PORT") or LOCAL_AGENT_PORT))
    token = env.get("TWILIO_AUTH_TOKEN") or TwilioStandIn.auth_token
    twilio = TwilioStandIn(auth_token=token).start(
        int(env.get("STANDIN_TWILIO_PORT") or LOCAL_TWILIO_PORT)
    )
    from devkit.local_auth import STORE_B

    twilio.owned_numbers.add(STORE_B["phone_number"])  # the second sample store texts too
    env.update(
        {
            "ELEVENLABS_AGENT_ID": agent.agent_id,
            "ELEVENLABS_WS_URL": agent.url,
            "ELEVENLABS_API_URL": agent.api_url,
            "ELEVENLABS_API_KEY": agent.api_key or "",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_API_URL": twilio.url,
        }
    )
    if api_url and not env.get("TWILIO_STATUS_CALLBACK_URL"):
        base = env.get("PUBLIC_BASE_URL") or api_url
        env.setdefault("PUBLIC_BASE_URL", base)
        env["TWILIO_STATUS_CALLBACK_URL"] = f"{base.rstrip('/')}/webhooks/twilio/status"
        print(f"SMS delivery updates: {env['TWILIO_STATUS_CALLBACK_URL']}", file=err)
    print(f"SMS replies: agent stand-in {agent.url}, Twilio stand-in {twilio.url}", file=err)
    return [agent, twilio]
