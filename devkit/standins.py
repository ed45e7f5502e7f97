"""Loopback stand-ins for ElevenLabs' Agents WebSocket API and Twilio's Messages API.

Used by the tests and by ``make run`` so that replies work end to end without the internet.
Each speaks the documented protocol (messages, headers, error shapes) and has modes:

AgentStandIn (``ws://127.0.0.1:<port>/v1/convai/conversation?agent_id=<id>``):
  * ``xi-api-key`` must equal the configured key (else the handshake gets HTTP 401);
    an unknown ``agent_id`` gets HTTP 404.
  * client sends ``conversation_initiation_client_data``; the server answers
    ``conversation_initiation_metadata``, a ``ping`` (``ping_event.event_id``) and the agent's
    greeting as an ``agent_response``; it answers a ``user_message`` only after the pong came,
    after ``delay_s``, with an ``agent_response`` built from the text and dynamic variables.
  * ``mode``: ``normal``; ``error`` (closes with 1011 instead of answering); ``silent`` (never
    answers). ``delay_s`` makes it slow.

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
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import Server, ServerConnection, serve

CONVERSATION_PATH = "/v1/convai/conversation"
DEFAULT_GREETING = "Hey there! Thanks for reaching out to the store."


@dataclass
class AgentStandIn:
    """An ElevenLabs-like conversation endpoint on a loopback port."""

    agent_id: str = "agent_standin"
    api_key: str | None = "xi-test-key"
    mode: str = "normal"
    delay_s: float = 0.0
    greeting: str = DEFAULT_GREETING
    # Echo each user_message as a user_transcript event before answering it.
    echo: bool = False
    conversations: list[dict[str, Any]] = field(default_factory=list)
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

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def reset(self) -> None:
        """Back to the normal mode with no conversations recorded (between tests)."""
        self.mode, self.delay_s, self.greeting = "normal", 0.0, DEFAULT_GREETING
        self.echo = False
        self.conversations.clear()

    def _check_request(self, connection: ServerConnection, request: Any) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != CONVERSATION_PATH:
            return _http(connection, 404, "not found")
        if self.api_key is not None and request.headers.get("xi-api-key") != self.api_key:
            return _http(connection, 401, "invalid api key")
        if parse_qs(parts.query).get("agent_id") != [self.agent_id]:
            return _http(connection, 404, "agent not found")
        return None

    def _converse(self, socket: ServerConnection) -> None:
        record: dict[str, Any] = {"init": None, "user_messages": [], "pongs": []}
        self.conversations.append(record)
        init = json.loads(socket.recv(timeout=10))
        record["init"] = init
        if init.get("type") != "conversation_initiation_client_data":
            socket.close(1008, "expected conversation_initiation_client_data")
            return
        conversation_id = f"conv_{uuid.uuid4().hex[:20]}"
        socket.send(
            json.dumps(
                {
                    "type": "conversation_initiation_metadata",
                    "conversation_initiation_metadata_event": {
                        "conversation_id": conversation_id,
                        "agent_output_audio_format": "pcm_16000",
                        "user_input_audio_format": "pcm_16000",
                    },
                }
            )
        )
        socket.send(json.dumps({"type": "ping", "ping_event": {"event_id": 1, "ping_ms": 0}}))
        socket.send(
            json.dumps(
                {
                    "type": "agent_response",
                    "agent_response_event": {"agent_response": self.greeting},
                }
            )
        )
        variables = init.get("dynamic_variables") or {}
        pending: str | None = None
        for raw in socket:
            event = json.loads(raw)
            if event.get("type") == "pong":
                record["pongs"].append(event.get("event_id"))
            elif event.get("type") == "user_message":
                pending = str(event.get("text") or "")
                record["user_messages"].append(pending)
                if self.echo:
                    transcript = {"user_transcript": pending}
                    socket.send(
                        json.dumps(
                            {"type": "user_transcript", "user_transcription_event": transcript}
                        )
                    )
            if pending is not None and record["pongs"]:
                self._answer(socket, pending, variables)
                pending = None

    def _answer(self, socket: ServerConnection, text: str, variables: dict[str, Any]) -> None:
        if self.mode == "silent":
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.mode == "error":
            socket.close(1011, "internal error")
            return
        hours = variables.get("business_hours_today") or "our usual hours"
        name = variables.get("customer_name") or "there"
        reply = f"Hi {name}! You said: {text[:80]}. We're open {hours} today."
        socket.send(
            json.dumps(
                {"type": "agent_response", "agent_response_event": {"agent_response": reply}}
            )
        )


def _http(connection: ServerConnection, status: int, message: str) -> Response:
    body = json.dumps({"detail": {"status": status, "message": message}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status, HTTPStatus(status).phrase, headers, body)


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
    env.update(
        {
            "ELEVENLABS_AGENT_ID": agent.agent_id,
            "ELEVENLABS_WS_URL": agent.url,
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
