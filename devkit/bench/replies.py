"""SMS reply latency, inbound webhook to the reply's send call, per stage, against the stand-ins.

    python -m devkit.bench.replies [--texts 30] [--slow-texts 10] [--out bench-results]

Every text goes through the real SmsWebhookFunction handler with a signed event. With no
queue URLs configured (as in ``make run``) the whole chain runs in that request: webhook ->
processor (inbound stored) -> reply decision -> responder (agent over WebSocket, Twilio over
HTTP) -> outcome stored, so each stage can be timed on one clock. The agent stand-in answers at
once, then after 1.5 s. In AWS the queues add their delivery delay between the stages, and the
idempotency record is a DynamoDB call instead of a dictionary; neither is measured here.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devkit.bench import database
from devkit.bench.harness import SMS_WEBHOOK, TEST_SECRETS, Functions, apply_env, install_runtime
from devkit.bench.stats import latency_summary
from devkit.lambda_env import ROOT
from devkit.services import ensure_services
from devkit.sms_events import webhook_event
from devkit.standins import AgentStandIn, TwilioStandIn
from leadlookup import wiring
from leadlookup.adapters.queue import InProcessQueue
from leadlookup.container import set_runtime
from leadlookup.domain.jobs import ReplyJob
from leadlookup.usecases.replies import ReplyPipeline

STORE = "+17786528784"
STAGES = (
    "webhook_to_stored",
    "stored_to_job",
    "agent",
    "job_to_send_call",
    "webhook_to_send_call",
    "twilio_send",
    "outcome_stored",
    "webhook_total",
)


class Clock:
    """Named marks of the text in flight (one text at a time)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def around(self, fn: Callable[..., Any], start: str, end: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.mark(start)
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark(end)

        return timed


def _stages(m: dict[str, float]) -> dict[str, float]:
    def ms(a: str, b: str) -> float:
        return (m[b] - m[a]) * 1000

    return {
        "webhook_to_stored": ms("webhook", "stored"),
        "stored_to_job": ms("stored", "job"),
        "agent": ms("agent", "agent_done"),
        "job_to_send_call": ms("job", "send"),
        "webhook_to_send_call": ms("webhook", "send"),
        "twilio_send": ms("send", "send_done"),
        "outcome_stored": ms("outcome", "outcome_done"),
        "webhook_total": ms("webhook", "webhook_done"),
    }


def run(texts: int, slow_texts: int, out: Path) -> dict[str, Any]:
    """Measure both agent speeds; the result (also written to ``out/replies.json``)."""
    urls = ensure_services(ROOT / ".local")
    db_url = database.recreate_database(urls["DATABASE_URL"], "bici_bench_replies")
    agent, twilio = (
        AgentStandIn().start(),
        TwilioStandIn(auth_token=TEST_SECRETS["TWILIO_AUTH_TOKEN"]).start(),
    )
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": urls["REDIS_URL"],
        "CACHE_KEY_PREFIX": f"bench-replies:{uuid.uuid4().hex[:8]}:",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "ELEVENLABS_AGENT_ID": agent.agent_id,
        "ELEVENLABS_WS_URL": agent.url,
        "ELEVENLABS_API_URL": agent.api_url,
        "ELEVENLABS_API_KEY": agent.api_key or "",
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_API_URL": twilio.url,
        **TEST_SECRETS,
    }
    try:
        from leadlookup.adapters.migrate import migrate
        from leadlookup.observability import logger

        apply_env(env)
        # One INFO line per stage per text would be the bench's own overhead.
        logger.setLevel("WARNING")
        runtime, _ = install_runtime(env)
        migrate(runtime.db)
        clock = Clock()
        service = runtime.service
        service.record_inbound_message = clock.around(  # type: ignore[method-assign]
            service.record_inbound_message, "storing", "stored"
        )
        holder: list[ReplyPipeline] = []
        outcomes = InProcessQueue(
            clock.around(lambda body: holder[0].store_outcome_json(body), "outcome", "outcome_done")
        )
        responder = wiring.build_responder(runtime.settings, outcomes)
        assert responder.agent is not None and responder.sender is not None
        responder.agent.reply = clock.around(  # type: ignore[method-assign]
            responder.agent.reply, "agent", "agent_done"
        )
        responder.sender.send = clock.around(  # type: ignore[method-assign]
            responder.sender.send, "send", "send_done"
        )

        def handle(body: dict[str, Any]) -> None:
            clock.mark("job")
            responder.handle(ReplyJob.from_json(body))

        pipeline = ReplyPipeline(service, InProcessQueue(handle))
        holder.append(pipeline)
        wiring.install(service, pipeline)
        functions = Functions()
        handler = functions.handler(SMS_WEBHOOK)

        def one(sender: str) -> dict[str, float]:
            pairs = [
                ("MessageSid", f"SM{uuid.uuid4().hex}"),
                ("AccountSid", "AC" + "1" * 32),
                ("From", sender),
                ("To", STORE),
                ("Body", "Do you have gravel bikes in stock?"),
            ]
            event = webhook_event(pairs, token=TEST_SECRETS["TWILIO_AUTH_TOKEN"])
            clock.marks.clear()
            clock.mark("webhook")
            response = handler(event, functions.context(SMS_WEBHOOK))
            clock.mark("webhook_done")
            assert response["statusCode"] == 200, response
            return _stages(clock.marks)

        result: dict[str, Any] = {"texts": {}, "sent": 0}
        for label, delay, count in (("agent_0ms", 0.0, texts), ("agent_1500ms", 1.5, slow_texts)):
            agent.delay_s = delay
            for warm in range(3):
                one(database.lead_phone(900_000 + warm))
            samples = [one(database.lead_phone(index)) for index in range(count)]
            result["texts"][label] = {
                stage: latency_summary([s[stage] for s in samples]) for stage in STAGES
            }
        result["sent"] = len(twilio.sent)
        result["agent_conversations"] = len(agent.conversations)
    finally:
        agent.stop()
        twilio.stop()
        set_runtime(None)
        wiring.reset()
        database.drop_database(urls["DATABASE_URL"], "bici_bench_replies")
    out.mkdir(parents=True, exist_ok=True)
    (out / "replies.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    """The result as a text table (ms): p50 / p90 / p99 / max per stage and agent speed."""
    lines = [
        f"{'stage (ms)':24} {'agent':>13} {'n':>4} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}"
    ]
    for label, stages in result["texts"].items():
        for stage in STAGES:
            s = stages[stage]
            lines.append(
                f"{stage:24} {label:>13} {s['n']:>4} {s['p50']:>9.2f} {s['p90']:>9.2f}"
                f" {s['p99']:>9.2f} {s['max']:>9.2f}"
            )
    lines.append(
        f"texts sent: {result['sent']}, agent conversations: {result['agent_conversations']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=30, help="texts with the agent at 0 ms")
    parser.add_argument("--slow-texts", type=int, default=10, help="texts with the agent at 1.5 s")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    print(table(run(args.texts, args.slow_texts, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
