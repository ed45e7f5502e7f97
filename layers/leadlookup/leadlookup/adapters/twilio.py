"""Sending an SMS through Twilio's Messages API over plain HTTPS, retried without sending twice.

``POST <TWILIO_API_URL>/2010-04-01/Accounts/<AccountSid>/Messages.json``, HTTP basic auth
(Account SID, auth token), form fields ``To``, ``From`` (E.164, a number the account owns) or
``MessagingServiceSid``, ``Body`` (at most 1,600 characters) and ``StatusCallback`` (where
Twilio posts the message's delivery status); 201 answers the message resource (``sid``,
``status``); errors answer ``{"code", "message", "more_info", "status"}``.

A retry is safe only when Twilio cannot have created the message: the connection failed, or
Twilio answered 429 or 5xx. When the request went out and no answer came back (a read
timeout), the text may have been sent: that outcome is ``unknown`` and is never retried.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode, urlsplit

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 2.0


@dataclass(frozen=True)
class SendResult:
    """Twilio's answer: the SID and status, or the failure (``status`` failed/unknown)."""

    sid: str | None
    status: str
    attempts: int
    error_code: int | None = None
    error_message: str | None = None

    @property
    def sent(self) -> bool:
        """Whether Twilio accepted the message."""
        return self.sid is not None


class SmsSender(Protocol):
    """Sends one SMS."""

    def send(
        self, to: str, from_: str, body: str, *, messaging_service_sid: str | None = None
    ) -> SendResult:
        """Twilio's answer; never raises for Twilio's or the network's failures.

        With ``messaging_service_sid`` the service picks the sender and ``from_`` is not sent.
        """


class TwilioSender:
    """Messages API client: explicit timeouts, bounded retries on 429/5xx and refused connects."""

    def __init__(
        self,
        api_url: str,
        account_sid: str,
        auth_token: Callable[[], str | None],
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        status_callback: str | None = None,
    ) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("TWILIO_API_URL must be an http(s) URL")
        # Every send names it, so every delivery update reaches the status webhook.
        self.status_callback = status_callback
        self._parts = parts
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep

    def path(self) -> str:
        """The Messages resource of this account."""
        base = self._parts.path.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json"

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self._parts.hostname or "", self._parts.port
        if self._parts.scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout_s)

    def form(self, to: str, from_: str, body: str, messaging_service_sid: str | None) -> bytes:
        """The request's form: the sender (number or service), the text, the status callback."""
        fields = {"To": to}
        if messaging_service_sid:
            fields["MessagingServiceSid"] = messaging_service_sid
        else:
            fields["From"] = from_
        fields["Body"] = body
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return urlencode(fields).encode()

    def send(
        self, to: str, from_: str, body: str, *, messaging_service_sid: str | None = None
    ) -> SendResult:
        """POST the message; retried only where Twilio cannot have created it."""
        token = self._auth_token() or ""
        credentials = base64.b64encode(f"{self.account_sid}:{token}".encode()).decode()
        form = self.form(to, from_, body, messaging_service_sid)
        headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        last = SendResult(None, "failed", 0, None, "not attempted")
        for attempt in range(1, self.attempts + 1):
            connection = self._connection()
            try:
                try:
                    connection.connect()
                except OSError as exc:  # refused, unreachable, connect timeout: nothing sent
                    last = SendResult(None, "failed", attempt, None, f"connect: {exc}")
                    self._pause(attempt, None)
                    continue
                try:
                    connection.request("POST", self.path(), body=form, headers=headers)
                    response = connection.getresponse()
                    payload = response.read(1 << 20)
                except OSError as exc:
                    # The request may have reached Twilio: sending again could text twice.
                    return SendResult(None, "unknown", attempt, None, f"no answer: {exc}")
            finally:
                connection.close()
            result = _result(response.status, payload, attempt)
            if response.status not in RETRY_STATUSES:
                return result
            last = result
            self._pause(attempt, response.getheader("Retry-After"))
        return last

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.attempts:
            return
        delay = self.backoff_s * (2 ** (attempt - 1))
        if retry_after:
            with contextlib.suppress(ValueError):  # an HTTP date: keep our own backoff
                delay = max(delay, float(retry_after))
        self._sleep(min(delay, MAX_RETRY_AFTER_S))


def _result(status: int, payload: bytes, attempt: int) -> SendResult:
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if 200 <= status < 300 and isinstance(data.get("sid"), str):
        return SendResult(data["sid"], str(data.get("status") or "queued"), attempt)
    code = data.get("code")
    return SendResult(
        None,
        "failed",
        attempt,
        code if isinstance(code, int) else None,
        str(data.get("message") or f"HTTP {status}")[:300],
    )
