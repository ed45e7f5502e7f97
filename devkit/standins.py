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
    ``To``/``From``/``Body`` -> 201 message JSON (``sid`` SM..., ``status`` queued);
    errors as Twilio's ``{"code", "message", "more_info", "status"}`` (20003 auth, 21602 no
    body, 21604 no To, 21610 unsubscribed recipient).
  * ``fail_next``: a list of statuses (429, 500, 503) answered before the next successes;
    ``delay_s`` makes it slow. ``GET .../Messages.json`` lists what was accepted.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

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


@dataclass
class TwilioStandIn:
    """A Twilio-like Messages API on a loopback port."""

    account_sid: str = "AC" + "0" * 32
    # The README's test secret, so the same TWILIO_AUTH_TOKEN signs webhooks and sends texts.
    auth_token: str = "test-twilio-auth-token"  # noqa: S105 - a documented test value
    delay_s: float = 0.0
    fail_next: list[int] = field(default_factory=list)
    unsubscribed: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
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
            self.delay_s, self.requests = 0.0, 0
            self.fail_next.clear()
            self.unsubscribed.clear()
            self.sent.clear()

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
        if not form.get("To"):
            return _reply(handler, 400, _error(21604, "A 'To' phone number is required.", 400))
        if not form.get("Body"):
            return _reply(handler, 400, _error(21602, "Message body is required.", 400))
        if form["To"] in self.unsubscribed:
            message = "Attempt to send to unsubscribed recipient"
            return _reply(handler, 400, _error(21610, message, 400))
        sid = "SM" + uuid.uuid4().hex
        message_resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form.get("From"),
            "body": form["Body"],
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
            "uri": f"{self._path()[:-5]}/{sid}.json",
        }
        with self._lock:
            self.sent.append(message_resource)
        _reply(handler, 201, message_resource)


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


def start_for_local_run(env: Any, err: Any) -> list[AgentStandIn | TwilioStandIn]:
    """Start both stand-ins and point the reply settings at them (``make run``).

    Nothing is started when ``ELEVENLABS_AGENT_ID`` is already set: then the environment
    names a real agent (and Twilio account) on purpose.
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
    print(f"SMS replies: agent stand-in {agent.url}, Twilio stand-in {twilio.url}", file=err)
    return [agent, twilio]
