"""How many layer modules one inbound text crosses (docs/ARCHITECTURE.md, "One inbound text").

The processor's record handler is traced from the queued form fields to the reply job on the
reply queue: storage, the lead, the reply decision and the job. Counts, not time: a change that
scatters the path again (a rule given a second home, a use case reaching back and forth into
the service) shows up here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from leadlookup.adapters.queue import InProcessQueue
from leadlookup.config import Settings
from leadlookup.container import Runtime
from leadlookup.usecases import inbound_sms
from leadlookup.usecases.replies import ReplyPipeline
from tests.support.crossings import Crossings
from tests.support.faults import new_phone

STORE_NUMBER = "+17786528784"
# Before the layer was reorganised this path crossed 28 modules (82 crossings, 54 returns);
# ARCHITECTURE.md walks through the path as it is now, return by return.
MAX_MODULES = 14
# A returning customer's text: the lead comes from Redis, one repository call stores the text.
# A new number's first text costs one repository call more (the lead is created through the
# read-through cache before the message row can name it): the repository, the connection and
# the row decoding are entered once more.
# Each write then bumps its store's change counter (the staff inbox's ETag): one return more
# per write, two for a new number (the lead's creation and the text).
MAX_RETURNS = {"returning customer": 11, "first text of a new number": 15}


def _record(sender: str, body: str, sid: str) -> str:
    fields = {
        "MessageSid": f"{sid}{uuid.uuid4().hex}",
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": STORE_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }
    return json.dumps(fields)


@pytest.mark.parametrize("case", list(MAX_RETURNS))
def test_an_inbound_text_crosses_few_modules_and_rarely_goes_back(
    case: str, settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    runtime = make_runtime(settings)
    jobs: list[dict[str, Any]] = []
    pipeline = ReplyPipeline(runtime.service, InProcessQueue(jobs.append))
    # Warm, as a container is after its first message: modules imported, the store cached.
    inbound_sms.process_record(runtime.service, pipeline, _record(new_phone(), "hi", "SM1"))
    sender = new_phone()
    if case == "returning customer":
        inbound_sms.process_record(runtime.service, pipeline, _record(sender, "hello", "SM2"))
    record = _record(sender, "Do you have gravel bikes?", "SM3")

    with Crossings() as trace:
        stored = inbound_sms.process_record(runtime.service, pipeline, record)

    assert stored
    assert json.loads(json.dumps(jobs[-1]))["body"] == "Do you have gravel bikes?"
    summary = f"{len(trace.modules)} modules, {len(trace.calls)} crossings"
    assert len(trace.modules) <= MAX_MODULES, (summary, trace.modules)
    assert len(trace.returns) <= MAX_RETURNS[case], (summary, trace.returns)
