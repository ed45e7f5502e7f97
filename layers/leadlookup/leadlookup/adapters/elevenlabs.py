"""A text conversation with the ElevenLabs agent over its WebSocket API: its whole answer, once.

Connecting. With an API key the responder first asks
``GET <ELEVENLABS_API_URL>/v1/convai/conversation/get-signed-url?agent_id=<id>`` (header
``xi-api-key``) for a signed ``wss://`` URL and opens the conversation there: a private agent
(authentication on) accepts nothing else, a public one accepts it too, and the key travels to
that REST call only. Without a key it connects to ``<ELEVENLABS_WS_URL>?agent_id=<id>``, which
only a public agent accepts.

The conversation. Send ``conversation_initiation_client_data`` (the job's variables, text only),
answer every ``ping`` with a ``pong``, send the customer's text as ``user_message``, and read
the agent's turn from its events. Which ``agent_response`` events make the answer:

- **Not the greeting.** An agent with a first message sends it by itself as soon as the
  conversation starts (``conversation_initiation_metadata``); no model runs for it. So the text
  goes out once the greeting has come, or once the agent has been quiet for the settle window
  (it has no first message). A greeting that still arrives after the text is known two ways: it
  comes before the server's echo of the text (``user_transcript``, when the server sends one),
  or it is the first message the store's agent uses, ``{{dynamic_greeting}}``, whose value the
  job carries. Nothing depends on the echo or on the agent having a first message.
- **Not pre-tool speech.** Agents often say a holding phrase, call a tool, then answer. A
  response followed by tool activity (``agent_tool_request``, ``agent_tool_response``,
  ``client_tool_call``, ``mcp_tool_call``) was said before a tool call and is dropped. An
  agent reports tool activity only when its client events include those events, and the
  store's agent does not (it sends ``agent_response``, ``user_transcript``, ``interruption``,
  ``agent_response_correction`` and audio), while its prompt has it say "Let me check our
  inventory for you..." before a catalog search. So a response whose last sentence is a holding
  phrase (see :func:`is_holding_phrase`) keeps the turn open: the next response replaces it,
  and a turn that ends on one gets the fallback text, never the promise.
- **All of the rest**, in order, joined with spaces: an answer sent as several responses is sent
  whole. A correction (``agent_response_correction``) replaces what it corrects.

The turn is over when the agent has been quiet for the settle window (``SMS_REPLY_SETTLE_MS``,
default 1500 ms) after its last response. That is the latency it costs: every reply goes out one
window after the agent's last word, and an agent without a first message pays one more window
before the text is sent. Everything is bounded by the reply deadline: past it what the agent
has said goes out, or the fallback text when it has said nothing (or only a holding phrase).

The responder has no client tools: a ``client_tool_call`` gets an error result, and an MCP tool
call awaiting approval is refused (nobody on a text thread can approve it), so the agent carries
on without them instead of waiting out its tool timeout.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import SplitResult, urlencode, urlsplit

from leadlookup.domain.jobs import ReplyJob, history_text
from leadlookup.domain.variables import with_every_key

# A reply larger than this is not an SMS; the socket refuses bigger frames.
MAX_FRAME_BYTES = 1 << 20
CLOSE_TIMEOUT_S = 1.0
# The signed-URL answer is a few hundred bytes; anything bigger is not it.
MAX_REST_BYTES = 64 * 1024
REST_TIMEOUT_S = 5.0
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
DEFAULT_SETTLE_S = 1.5

# Events that say the agent is using a tool: what it said before them was pre-tool speech.
TOOL_EVENTS = frozenset(
    {
        "agent_tool_request",
        "agent_tool_response",
        "agent_tool_response_full_payload",
        "client_tool_call",
        "mcp_tool_call",
    }
)
# What agents say while a tool runs. Matched against the last sentence only, so an answer that
# merely starts with "Let me check..." and then gives the result is an answer.
_HOLDING = re.compile(
    r"(\.\.\.|\u2026)\s*$"
    r"|\b(one|a|just a) (moment|sec|second)\b"
    r"|\b(hold on|bear with me)\b"
    r"|\bgive me (a|one) (moment|sec|second)\b"
    r"|\blet me (check|look|see|find|search|pull)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+")


class AgentError(Exception):
    """The agent did not answer: refused, closed, malformed, or out of time."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AgentClient(Protocol):
    """Asks the agent for its answer to one customer text."""

    def reply(self, job: ReplyJob, deadline: float) -> str:
        """The agent's answer, by ``deadline`` (``time.monotonic()``), or :class:`AgentError`."""


def initiation_message(job: ReplyJob) -> dict[str, Any]:
    """``conversation_initiation_client_data``: the job's variables (every key a call has)."""
    # A job queued by an older version lacks the newer keys: the agent needs every one.
    variables = with_every_key(
        job.dynamic_variables, channel="sms", recent_messages=history_text(job.history)
    )
    return {
        "type": "conversation_initiation_client_data",
        "dynamic_variables": variables,
        # The agent must allow this override (DEPLOY.md): no audio is generated or sent.
        "conversation_config_override": {"conversation": {"text_only": True}},
    }


def is_holding_phrase(text: str) -> bool:
    """Whether ``text`` ends on a holding phrase ("One moment, let me check that for you.").

    A question is never one: it waits for the customer, not for a tool.
    """
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    last = sentences[-1] if sentences else ""
    return bool(last) and not last.endswith("?") and _HOLDING.search(last) is not None


def _words(text: str) -> str:
    return " ".join(text.split())


class Turn:
    """The agent's turn after the customer's text, from its events (no I/O, no clock of its own).

    :meth:`receive` takes each event and :meth:`tick` the passing of time; both return the
    frames to send back. :meth:`over` says when the turn is complete, :meth:`answer` what it said.
    """

    def __init__(self, text: str, settle_s: float, first_message: str | None = None) -> None:
        self.text = text
        self.settle_s = settle_s
        # The store's agent's first message is {{dynamic_greeting}}: its value, if we sent one.
        self.first_message = _words(first_message or "") or None
        self.opened_at: float | None = None
        self.sent = False
        self.greeted = False
        self.parts: list[str] = []
        # The last part is a holding phrase: the turn is not over until something follows it.
        self.held = False
        self.last_at: float | None = None

    def wake_at(self) -> float | None:
        """When time alone moves the turn on: the end of the greeting wait or of the settle."""
        if not self.sent:
            return None if self.opened_at is None else self.opened_at + self.settle_s
        if self.parts and not self.held and self.last_at is not None:
            return self.last_at + self.settle_s
        return None

    def over(self, now: float) -> bool:
        """Whether the agent has answered and been quiet for the settle window since."""
        wake = self.wake_at()
        return self.sent and wake is not None and now >= wake

    def answer(self) -> str | None:
        """What the agent said after the text (pre-tool speech and the greeting left out)."""
        if self.held:
            return None
        return " ".join(self.parts) or None

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Send the text once the greeting wait is over (an agent without a first message)."""
        if not self.sent and self.opened_at is not None and now >= self.opened_at + self.settle_s:
            return self._send()
        return []

    def _send(self) -> list[dict[str, Any]]:
        self.sent = True
        return [{"type": "user_message", "text": self.text}]

    def receive(self, event: Any, now: float) -> list[dict[str, Any]]:
        """Take one server event; the frames to send back. :class:`AgentError` on ``error``."""
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "ping":
            ping = _section(event, "ping_event")
            return [{"type": "pong", "event_id": ping.get("event_id")}]
        if kind == "error":
            detail = _section(event, "error_event")
            message = str(detail.get("message") or detail.get("reason") or event)[:200]
            raise AgentError("agent", f"the agent reported an error: {message}")
        if kind == "conversation_initiation_metadata":
            if self.opened_at is None:
                self.opened_at = now
            return []
        if kind == "agent_response":
            text = str(_section(event, "agent_response_event").get("agent_response") or "")
            return self._response(text.strip(), now)
        if kind == "agent_response_correction":
            self._correct(_section(event, "agent_response_correction_event"))
            return []
        if not self.sent:
            return []
        if kind == "user_transcript":
            # The server has taken our text: whatever it said before was the greeting.
            self.parts, self.held, self.greeted = [], False, True
            return []
        if kind in TOOL_EVENTS:
            self.parts, self.held, self.last_at = [], False, now
            return _tool_reply(kind, event)
        return []

    def _response(self, text: str, now: float) -> list[dict[str, Any]]:
        if not self.sent:
            # Said before the agent heard anything from us: its greeting. Now the text goes.
            self.greeted = True
            return self._send()
        if not text:
            return []
        if (
            not self.greeted
            and self.first_message is not None
            and _words(text) == self.first_message
        ):
            self.greeted = True  # the greeting, later than our text
            return []
        if self.held:
            self.parts = []  # the holding phrase was pre-tool speech: the answer follows
        self.parts.append(text)
        self.held = is_holding_phrase(text)
        self.last_at = now
        return []

    def _correct(self, correction: dict[str, Any]) -> None:
        original = _words(str(correction.get("original_agent_response") or ""))
        corrected = str(correction.get("corrected_agent_response") or "").strip()
        for index, part in enumerate(self.parts):
            if _words(part) == original:
                self.parts[index] = corrected
        self.parts = [part for part in self.parts if part]
        self.held = bool(self.parts) and is_holding_phrase(self.parts[-1])


def _section(event: dict[str, Any], name: str) -> dict[str, Any]:
    value = event.get(name)
    return value if isinstance(value, dict) else {}


def _tool_reply(kind: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer a tool event needs from the client, if any (we run no tools ourselves)."""
    if kind == "client_tool_call":
        call = _section(event, "client_tool_call")
        return [
            {
                "type": "client_tool_result",
                "tool_call_id": call.get("tool_call_id"),
                "result": "This tool is not available in a text conversation.",
                "is_error": True,
            }
        ]
    if kind == "mcp_tool_call":
        call = _section(event, "mcp_tool_call")
        if call.get("state") == "awaiting_approval":
            return [
                {
                    "type": "mcp_tool_approval_result",
                    "tool_call_id": call.get("tool_call_id"),
                    "is_approved": False,
                }
            ]
    return []


def rest_connection(api: SplitResult, timeout: float) -> http.client.HTTPConnection:
    """A connection (not opened yet) to ElevenLabs' REST API at ``api``, with ``timeout``."""
    host, port = api.hostname or "", api.port
    if api.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


class ElevenLabsAgent:
    """The agent over ``websockets``' synchronous client (no event loop in a Lambda handler)."""

    def __init__(
        self,
        ws_url: str,
        agent_id: str,
        api_key: Callable[[], str | None],
        *,
        api_url: str = "https://api.elevenlabs.io",
        settle_s: float = DEFAULT_SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("ELEVENLABS_API_URL must be an http(s) URL")
        self.ws_url = ws_url
        self.agent_id = agent_id
        self.api_url = api_url.rstrip("/")
        self.settle_s = settle_s
        self._api = parts
        self._api_key = api_key
        self._clock = clock

    def url(self) -> str:
        """The public conversation URL, with the agent id as its query parameter."""
        separator = "&" if "?" in self.ws_url else "?"
        return f"{self.ws_url}{separator}{urlencode({'agent_id': self.agent_id})}"

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise AgentError("timeout", "the agent did not answer in time")
        return remaining

    def signed_url(self, key: str, deadline: float) -> str:
        """A one-use conversation URL from ElevenLabs' REST API (the key stays in this call)."""
        path = f"{self._api.path.rstrip('/')}{SIGNED_URL_PATH}?" + urlencode(
            {"agent_id": self.agent_id}
        )
        timeout = min(REST_TIMEOUT_S, self._remaining(deadline))
        connection = rest_connection(self._api, timeout)
        try:
            connection.request(
                "GET", path, headers={"xi-api-key": key, "Accept": "application/json"}
            )
            response = connection.getresponse()
            status, payload = response.status, response.read(MAX_REST_BYTES)
        except TimeoutError:
            raise AgentError(
                "timeout", "ElevenLabs did not answer the signed-URL request"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError("connection", f"the signed-URL request failed: {exc}") from None
        finally:
            connection.close()
        if status in (401, 403):
            raise AgentError("auth", f"ElevenLabs refused the API key (HTTP {status})")
        if status == 404:
            raise AgentError("not_found", "ElevenLabs does not know the agent (HTTP 404)")
        if status != 200:
            raise AgentError("signed_url", f"the signed-URL request answered HTTP {status}")
        try:
            url = json.loads(payload).get("signed_url")
        except (ValueError, AttributeError):
            url = None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("wss", "ws"):
            raise AgentError("protocol", "the signed-URL answer holds no WebSocket URL")
        return url

    def reply(self, job: ReplyJob, deadline: float) -> str:
        """Open a text-only conversation, send the customer's text, return the agent's answer."""
        # Imported here: only the responder function ships websockets (its own requirements).
        from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        key = self._api_key()
        url = self.signed_url(key, deadline) if key else self.url()
        try:
            with connect(
                url,
                open_timeout=self._remaining(deadline),
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=MAX_FRAME_BYTES,
                # The server pings at the protocol level too; the library answers those.
                user_agent_header="bici-lookups",
            ) as socket:
                socket.send(json.dumps(initiation_message(job)))
                return self._converse(socket, job, deadline)
        except TimeoutError:
            raise AgentError("timeout", "the agent did not answer in time") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            reason = "auth" if status in (401, 403) else "refused"
            raise AgentError(reason, f"the agent refused the connection (HTTP {status})") from None
        except InvalidHandshake as exc:
            raise AgentError("refused", f"the agent refused the connection: {exc}") from None
        except (WebSocketException, OSError) as exc:
            raise AgentError("connection", f"the agent connection failed: {exc}") from None

    def _converse(self, socket: Any, job: ReplyJob, deadline: float) -> str:
        from websockets.exceptions import ConnectionClosed

        turn = Turn(job.body, self.settle_s, job.dynamic_variables.get("dynamic_greeting"))
        while True:
            now = self._clock()
            if turn.over(now):
                return _said(turn)
            for frame in turn.tick(now):
                socket.send(json.dumps(frame))
            if now >= deadline:
                return _said(turn)
            wake = turn.wake_at()
            timeout = deadline - now if wake is None else max(0.0, min(deadline, wake) - now)
            try:
                raw = socket.recv(timeout=timeout)
            except TimeoutError:
                continue
            except ConnectionClosed:
                # The agent may end the conversation right after answering (an end-call tool).
                answer = turn.answer()
                if answer is not None:
                    return answer
                raise
            try:
                event = json.loads(raw)
            except (TypeError, ValueError):
                raise AgentError("protocol", "the agent sent a frame that is not JSON") from None
            for frame in turn.receive(event, self._clock()):
                socket.send(json.dumps(frame))


def _said(turn: Turn) -> str:
    answer = turn.answer()
    if answer is None:
        raise AgentError("timeout", "the agent did not answer in time")
    return answer


# -- outbound calls ------------------------------------------------------------------------
#
# ElevenLabs places a call from a Twilio number imported into it ("Outbound call via twilio",
# https://elevenlabs.io/docs/api-reference/twilio/outbound-call): ``POST
# <ELEVENLABS_API_URL>/v1/convai/twilio/outbound-call``, header ``xi-api-key``, JSON body
# ``agent_id``, ``agent_phone_number_id`` (the imported number's id), ``to_number`` (E.164) and
# ``conversation_initiation_client_data`` (its ``dynamic_variables``). 200 answers
# ``{"success", "message", "conversation_id", "callSid"}``; a request it cannot take is 422
# with a ``detail``.

OUTBOUND_CALL_PATH = "/v1/convai/twilio/outbound-call"
DEFAULT_CALL_TIMEOUT_S = 10.0


class CallError(Exception):
    """ElevenLabs did not place the call (or may have, without saying: ``no_answer``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PlacedCall:
    """ElevenLabs' answer to a call it placed: its conversation and Twilio's CallSid."""

    conversation_id: str | None
    call_sid: str | None


class Dialer(Protocol):
    """Asks for one outbound call."""

    def call(
        self, agent_phone_number_id: str, to_number: str, dynamic_variables: dict[str, str]
    ) -> PlacedCall:
        """The placed call, or :class:`CallError`; never sent twice by itself."""


def _detail(payload: bytes) -> str:
    """The words of an ElevenLabs error body (``detail`` as text, object or FastAPI list)."""
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return ""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("status")
    elif isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc') or ())}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return " ".join(str(detail or "").split())[:200]


class ElevenLabsDialer:
    """The outbound-call endpoint over ``http.client``: one attempt, bounded by ``timeout_s``.

    Sending twice could ring the customer twice, so nothing is retried here: a connection that
    fails before the request goes out is ``connection`` (nothing was placed), an answer that
    never comes is ``no_answer`` (the call may have been placed).
    """

    def __init__(
        self,
        api_url: str,
        agent_id: str,
        api_key: Callable[[], str | None],
        *,
        timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    ) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("ELEVENLABS_API_URL must be an http(s) URL")
        self.agent_id = agent_id
        self.timeout_s = timeout_s
        self._api = parts
        self._api_key = api_key

    def request_body(
        self, agent_phone_number_id: str, to_number: str, dynamic_variables: dict[str, str]
    ) -> dict[str, Any]:
        """The request's JSON: the agent, the store's number, the customer, our variables."""
        return {
            "agent_id": self.agent_id,
            "agent_phone_number_id": agent_phone_number_id,
            "to_number": to_number,
            "conversation_initiation_client_data": {"dynamic_variables": dynamic_variables},
        }

    def call(
        self, agent_phone_number_id: str, to_number: str, dynamic_variables: dict[str, str]
    ) -> PlacedCall:
        """Ask ElevenLabs to dial ``to_number``; :class:`CallError` naming why not."""
        key = self._api_key()
        if not key:
            raise CallError("auth", "no ElevenLabs API key is configured (ELEVENLABS_API_KEY)")
        body = json.dumps(
            self.request_body(agent_phone_number_id, to_number, dynamic_variables)
        ).encode()
        headers = {
            "xi-api-key": key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        connection = rest_connection(self._api, self.timeout_s)
        try:
            try:
                connection.connect()
            except OSError as exc:  # refused, unreachable, connect timeout: nothing was sent
                raise CallError("connection", f"ElevenLabs could not be reached: {exc}") from None
            try:
                connection.request(
                    "POST", self._api.path.rstrip("/") + OUTBOUND_CALL_PATH, body, headers
                )
                response = connection.getresponse()
                status, payload = response.status, response.read(MAX_REST_BYTES)
            except (OSError, http.client.HTTPException):
                raise CallError(
                    "no_answer", "ElevenLabs did not answer in time; the call may have been placed"
                ) from None
        finally:
            connection.close()
        return _placed(status, payload)


def _placed(status: int, payload: bytes) -> PlacedCall:
    detail = _detail(payload)
    if status in (401, 403):
        raise CallError("auth", f"ElevenLabs refused the API key (HTTP {status})")
    if status == 422:
        raise CallError("refused", f"ElevenLabs refused the call: {detail or 'HTTP 422'}")
    if status == 429:
        raise CallError("rate_limited", "ElevenLabs is limiting requests (HTTP 429)")
    if status != 200:
        suffix = f": {detail}" if detail else ""
        raise CallError("http", f"ElevenLabs answered HTTP {status}{suffix}")
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("success"), bool):
        raise CallError("protocol", "ElevenLabs' answer is not an outbound-call response")
    if not data["success"]:
        message = " ".join(str(data.get("message") or "no reason given").split())[:200]
        raise CallError("refused", f"ElevenLabs could not place the call: {message}")
    conversation, sid = data.get("conversation_id"), data.get("callSid")
    return PlacedCall(
        conversation if isinstance(conversation, str) and conversation else None,
        sid if isinstance(sid, str) and sid else None,
    )
