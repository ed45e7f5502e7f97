"""A text conversation with the ElevenLabs agent over its WebSocket API, one reply per call.

Protocol (ElevenLabs Agents WebSocket): connect to ``<ELEVENLABS_WS_URL>?agent_id=<id>`` with
the ``xi-api-key`` header (private agents), send ``conversation_initiation_client_data`` with
the dynamic variables and the text-only override, wait for
``conversation_initiation_metadata``, send the customer's text as ``user_message``, answer every
``ping`` with a ``pong`` carrying its ``event_id``, and take the ``agent_response`` that answers
the customer. The agent's first message (its greeting) also arrives as an ``agent_response``;
it is skipped: it is the one that comes before the server has seen our text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlencode

from leadlookup.replies.jobs import ReplyJob, history_text
from leadlookup.variables import with_every_key

# A reply larger than this is not an SMS; the socket refuses bigger frames.
MAX_FRAME_BYTES = 1 << 20
CLOSE_TIMEOUT_S = 1.0


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


class ElevenLabsAgent:
    """The agent over ``websockets``' synchronous client (no event loop in a Lambda handler)."""

    def __init__(
        self,
        ws_url: str,
        agent_id: str,
        api_key: Callable[[], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ws_url = ws_url
        self.agent_id = agent_id
        self._api_key = api_key
        self._clock = clock

    def url(self) -> str:
        """The conversation URL with the agent id as its query parameter."""
        separator = "&" if "?" in self.ws_url else "?"
        return f"{self.ws_url}{separator}{urlencode({'agent_id': self.agent_id})}"

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise AgentError("timeout", "the agent did not answer in time")
        return remaining

    def reply(self, job: ReplyJob, deadline: float) -> str:
        """Open a text-only conversation, send the customer's text, return the agent's answer."""
        # Imported here: only the responder function ships websockets (its own requirements).
        from websockets.exceptions import InvalidHandshake, WebSocketException
        from websockets.sync.client import connect

        key = self._api_key()
        headers = {"xi-api-key": key} if key else None
        try:
            with connect(
                self.url(),
                additional_headers=headers,
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
        except InvalidHandshake as exc:
            raise AgentError("refused", f"the agent refused the connection: {exc}") from None
        except (WebSocketException, OSError) as exc:
            raise AgentError("connection", f"the agent connection failed: {exc}") from None

    def _converse(self, socket: Any, job: ReplyJob, deadline: float) -> str:
        sent = False
        seen_text = False  # the server echoed our text (user_transcript)
        greeting_skipped = False
        while True:
            raw = socket.recv(timeout=self._remaining(deadline))
            try:
                event = json.loads(raw)
            except (TypeError, ValueError):
                raise AgentError("protocol", "the agent sent a frame that is not JSON") from None
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "ping":
                ping = event.get("ping_event") or {}
                socket.send(json.dumps({"type": "pong", "event_id": ping.get("event_id")}))
            elif kind == "conversation_initiation_metadata" and not sent:
                socket.send(json.dumps({"type": "user_message", "text": job.body}))
                sent = True
            elif kind == "user_transcript":
                seen_text = sent
            elif kind == "agent_response":
                text = str((event.get("agent_response_event") or {}).get("agent_response") or "")
                # The first answer before the server saw our text is the agent's greeting.
                if not seen_text and not greeting_skipped:
                    greeting_skipped = True
                    continue
                if text.strip():
                    return text.strip()
            elif kind == "error":
                raise AgentError("agent", f"the agent reported an error: {str(event)[:200]}")
