"""The whole stack on loopback for the staff console: the local API (every route of
template.yaml, the console and the local sign-in included), the Twilio and ElevenLabs
stand-ins, and what a browser session needs around them: texts from customers (signed as
Twilio signs them), staff tokens, and the staff API called behind the page's back.

Used by the browser tests (tests/browser) and ``python -m devkit.console_shots``. The caller
chooses the database and Redis (``env``); this module changes ``os.environ`` the way
``make run`` does and :meth:`ConsoleStack.stop` puts it back.
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from devkit import lambda_env
from devkit.cli import seed_local_stores
from devkit.local_auth import STORE_B
from devkit.postcall_events import sign_elevenlabs
from devkit.runner import LocalApi
from devkit.sms_events import TEST_AUTH_TOKEN, sign_twilio
from devkit.standins import AgentStandIn, TwilioStandIn

# The seeded sample store (store A) and its Twilio number, which texts to the store reach;
# store B (devkit.local_auth.STORE_B) is added beside it.
STORE_A_NUMBER = "+17786528784"
STORE_B_NUMBER = str(STORE_B["phone_number"])
SMS_PATH = "/webhooks/twilio/sms"
POST_CALL_PATH = "/webhooks/elevenlabs/post-call"
POST_CALL_SAMPLE = "events/post_call_webhook/post_call_signed.json"
CONSOLE_ENV = {"CONSOLE_AUTH_URL": "/local-auth", "CONSOLE_CLIENT_ID": "local-console"}
# The documented local secrets the runner's webhooks check (README.md, "Two commands").
LOCAL_SECRETS = {
    "INITIATION_WEBHOOK_SECRET": "test-initiation-secret",
    "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
    "ELEVENLABS_WEBHOOK_SECRET": "test-elevenlabs-secret",
}
HTTP_TIMEOUT_S = 30


@dataclass
class Answer:
    """An HTTP answer from the stack: status, headers and JSON body (None when empty)."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class ConsoleStack:
    """The running stack; :meth:`stop` ends it and restores the environment."""

    api: LocalApi
    twilio: TwilioStandIn
    agent: AgentStandIn
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The runner's base URL, e.g. ``http://127.0.0.1:41234``."""
        return self.api.url

    @property
    def console_url(self) -> str:
        """The console's page."""
        return f"{self.url}/console/"

    def token(self, username: str) -> str:
        """An ID token of a sample user (``ana``, ``ben``, ``olga``) this runner accepts."""
        return self.api.auth.mint(username)

    def stop(self) -> None:
        """Stop the runner and the stand-ins; restore the environment as it was."""
        self.api.stop()
        self.twilio.stop()
        self.agent.stop()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reset_runtime()

    # -- what happens around the page ------------------------------------------------------

    def text_from_customer(self, phone: str, body: str, to: str = STORE_A_NUMBER) -> None:
        """A customer's SMS, signed as Twilio signs it, through the runner's webhook."""
        sid = "SM" + uuid.uuid4().hex
        form = [
            ("ToCountry", "CA"),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("From", phone),
            ("To", to),
            ("Body", body),
            ("MessageSid", sid),
            ("AccountSid", self.twilio.account_sid),
            ("ApiVersion", "2010-04-01"),
        ]
        signature = sign_twilio(self.url + SMS_PATH, form, os.environ["TWILIO_AUTH_TOKEN"])
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        answer = self.request("POST", SMS_PATH, urlencode(form).encode(), headers)
        if answer.status != 200:
            raise RuntimeError(f"the SMS webhook answered {answer.status}: {answer.body}")

    def call_report(
        self,
        phone: str,
        lead_id: str,
        customer_name: str | None = None,
        conversation_id: str | None = None,
    ) -> str:
        """ElevenLabs' post-call report of a call from ``phone`` (the sample call, signed now)
        through the runner's webhook; returns its conversation id. ``conversation_id`` is the
        id ElevenLabs gave a call placed through the stand-in (default: a new one)."""
        sample = json.loads((lambda_env.ROOT / POST_CALL_SAMPLE).read_text(encoding="utf-8"))
        report = json.loads(sample["body"])
        conversation_id = conversation_id or "conv_" + uuid.uuid4().hex
        data = report["data"]
        data["conversation_id"] = conversation_id
        variables = data["conversation_initiation_client_data"]["dynamic_variables"]
        variables.update(
            customer_phone=phone,
            system__caller_id=phone,
            lead_id=lead_id,
            system__conversation_id=conversation_id,
        )
        if customer_name is not None:
            data["analysis"]["data_collection_results"]["customer_name"]["value"] = customer_name
            # The sample caller is Ada: the transcript and summary name the given customer.
            first = customer_name.split()[0]
            report = json.loads(json.dumps(report).replace("Ada", first))
            data = report["data"]
        now = int(time.time())
        report["event_timestamp"] = now
        text = json.dumps(report, separators=(",", ":"))
        secret = os.environ["ELEVENLABS_WEBHOOK_SECRET"]
        headers = {
            "Content-Type": "application/json",
            "ElevenLabs-Signature": sign_elevenlabs(text, secret, now),
        }
        answer = self.request("POST", POST_CALL_PATH, text.encode(), headers)
        if answer.status != 200:
            raise RuntimeError(f"the post-call webhook answered {answer.status}: {answer.body}")
        return conversation_id

    def staff_api(
        self,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """The staff API as the page calls it, with ``token`` as the bearer."""
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        return self.request(method, path, data, sent)

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One HTTP request to the runner."""
        request = urllib.request.Request(  # noqa: S310 - loopback only
            self.url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return _answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return _answer(error.code, dict(error.headers), error.read())


def _answer(status: int, headers: dict[str, str], raw: bytes) -> Answer:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", errors="replace")
    return Answer(status, headers, body)


def _reset_runtime() -> None:
    from leadlookup import container

    container.set_runtime(None)


def start(env: dict[str, str], host: str = "127.0.0.1", port: int = 0) -> ConsoleStack:
    """Start the stack against the database and Redis ``env`` names.

    ``env`` needs ``DATABASE_URL`` and ``REDIS_URL`` (and may set ``CACHE_KEY_PREFIX`` and
    anything else); the console's sign-in, the local secrets, the stand-ins' URLs and
    ``PUBLIC_BASE_URL`` (the runner's own URL, which Twilio signatures cover) are added.
    """
    lambda_env.add_layers_to_path()
    api = LocalApi(lambda_env.functions(), host, port, log=io.StringIO())
    agent = AgentStandIn().start(0)
    twilio = TwilioStandIn(auth_token=LOCAL_SECRETS["TWILIO_AUTH_TOKEN"]).start(0)
    wanted = {
        **LOCAL_SECRETS,
        **CONSOLE_ENV,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        **env,
        "PUBLIC_BASE_URL": api.url,
        "TWILIO_STATUS_CALLBACK_URL": f"{api.url}/webhooks/twilio/status",
        "ELEVENLABS_AGENT_ID": agent.agent_id,
        "ELEVENLABS_WS_URL": agent.url,
        "ELEVENLABS_API_URL": agent.api_url,
        "ELEVENLABS_API_KEY": agent.api_key or "",
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_API_URL": twilio.url,
    }
    # In-process hand-offs, as under `make run`: no queue URL of this machine's environment.
    unset = ("INBOUND_SMS_QUEUE_URL", "POST_CALL_QUEUE_URL", "REPLY_QUEUE_URL")
    saved: dict[str, str | None] = {name: os.environ.get(name) for name in (*wanted, *unset)}
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(wanted)
    _reset_runtime()
    stack = ConsoleStack(api=api, twilio=twilio, agent=agent, saved_env=saved)
    # Store B beside the seeded store A, as `make run` has it (the sample users' stores).
    seed_local_stores(io.StringIO())
    api.start()
    return stack
