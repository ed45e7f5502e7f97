"""`make agent-check`: an agent's configuration against what this stack answers and needs.

The agent configurations here are written from the facts of the store's live agent (which
variables it uses, its first message, overrides and data-collection fields), not copied.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from devkit import agent_check, cli
from leadlookup.domain.call_report import DATA_COLLECTION_FIELDS
from tests.conftest import EVENTS

# Friday 2026-11-27, 6:30 PM in Vancouver: the seeded store closed at 6.
FRIDAY_EVENING = "2026-11-27T18:30"
# What the store's live agent's prompt and first message use (23 names) ...
LIVE_USED = (
    "bike_interest", "business_hours", "conversation_context", "current_date",
    "current_datetime", "current_day", "current_time", "customer_name", "customer_phone",
    "day_context", "dynamic_greeting", "full_datetime", "has_customer_name", "lead_status",
    "location_address", "location_address_formatted", "previous_summary", "store_greeting",
    "store_hours_info", "store_is_open", "store_status", "time_greeting", "weather_context",
)  # fmt: skip
# ... and the other placeholders it defines (32 in all).
LIVE_PLACEHOLDERS_ONLY = (
    "organization_name", "organization_id", "greeting_opener", "greeting_variation",
    "customer_history", "last_topic", "qualification_status", "interaction_count",
    "last_contact",
)  # fmt: skip
LIVE_COLLECTED = (
    "customer_name", "bike_type", "purchase_timeline", "budget_range", "riding_experience",
    "customer_triggers", "follow_up_needed", "call_classification",
)  # fmt: skip
CLIENT_EVENTS = [
    "audio", "interruption", "user_transcript", "agent_response", "agent_response_correction",
]  # fmt: skip
PHRASES = " {{greeting_opener}} {{time_greeting}} {{day_context}} {{greeting_variation}}?"


def live_agent() -> dict[str, Any]:
    """An agent shaped like the store's: one prompt line per variable it reads."""
    prompt = "\n".join(
        f"- {name}: {{{{{name}}}}}" for name in LIVE_USED if name != "dynamic_greeting"
    )
    placeholders = {name: "" for name in (*LIVE_USED, *LIVE_PLACEHOLDERS_ONLY)}
    placeholders["interaction_count"] = "0"
    return {
        "name": "Store agent (test)",
        "conversation_config": {
            "agent": {
                "first_message": "{{dynamic_greeting}}",
                "language": "en",
                "dynamic_variables": {"dynamic_variable_placeholders": placeholders},
                "prompt": {
                    "prompt": f"You answer for the store.\n{prompt}",
                    "tools": [
                        {
                            "type": "system",
                            "name": "transfer_to_number",
                            "description": "Transfer when the caller asks for a person",
                            "params": {"transfers": [{"condition": "caller asks for a human"}]},
                        }
                    ],
                    "built_in_tools": {"language_detection": None},
                },
            },
            "conversation": {"text_only": False, "client_events": CLIENT_EVENTS},
        },
        "platform_settings": {
            "auth": {"enable_auth": False},
            "data_collection": {
                name: {"type": "string", "description": f"the {name}"} for name in LIVE_COLLECTED
            },
            "overrides": {
                "conversation_config_override": {
                    "agent": {"first_message": True, "language": True, "prompt": {"prompt": False}},
                    "conversation": {"text_only": True},
                    "tts": {"voice_id": False},
                }
            },
        },
    }


def _run(
    tmp_path: Path, config: Any, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    agent = tmp_path / "agent.json"
    agent.write_text(config if isinstance(config, str) else json.dumps(config))

    status = cli.main(["agent-check", "--agent", str(agent), "--at", FRIDAY_EVENING, *extra])

    out, err = capsys.readouterr()
    return status, out, err


def _section(out: str, title: str) -> list[str]:
    lines = out.split(title, 1)[1].split("\n\n", 1)[0].splitlines()
    return [line.strip() for line in lines[1:]]


def test_agent_check_the_live_agent_needs_nothing_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(tmp_path, live_agent(), capsys)

    variables = {line.split()[0]: line.split()[1:] for line in _section(out, "Variables:")}
    assert status == 0
    assert out.rstrip().endswith("OK: nothing blocks switching the webhook URL to this stack.")
    assert len(variables) == 32
    assert all(words[0] == "answered" for words in variables.values())
    assert variables["store_greeting"] == ["answered", "prompt,", "placeholders"]
    assert variables["dynamic_greeting"] == ["answered", "first", "message,", "placeholders"]
    assert variables["last_contact"] == ["answered", "placeholders", "only"]
    assert "warning:" not in out


def test_agent_check_renders_the_first_message_for_each_caller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _run(tmp_path, live_agent(), capsys)

    rendered = dict(line.split(":", 1) for line in _section(out, "First message")[1:])
    assert {name: text.strip() for name, text in rendered.items()} == {
        "known caller": (
            "Hey Ada! Thanks for calling Bee-chee Bike Store. Happy Friday! We're closed for "
            "the day; we open tomorrow at 9:00 AM. How can I help you today?"
        ),
        "new caller": (
            "Hey there! Thanks for calling Bee-chee Bike Store. Happy Friday! We're closed for "
            "the day; we open tomorrow at 9:00 AM. What's up?"
        ),
        "anonymous caller": (
            "Hey there! Thanks for calling Bee-chee Bike Store. Happy Friday! We're closed for "
            "the day; we open tomorrow at 9:00 AM. What's up?"
        ),
        "outbound follow-up": (
            "Hey Ada! It's Bee-chee Bike Store calling you back. Do you have a minute to talk "
            "about the gravel bike you asked about?"
        ),
    }
    assert "Friday 2026-11-27 18:30 America/Vancouver" in out


def test_agent_check_a_first_message_of_phrase_variables_reads_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live_agent()
    config["conversation_config"]["agent"]["first_message"] = PHRASES

    status, out, _ = _run(tmp_path, config, capsys)

    rendered = [line.split(":", 1)[1].strip() for line in _section(out, "First message")[1:]]
    assert status == 0
    assert rendered[0] == "Hey Ada! Good evening! Happy Friday! How can I help you today?"
    assert rendered[2] == "Hey there! Good evening! Happy Friday! What's up?"
    assert len(rendered) == 4
    assert not [text for text in rendered if "??" in text or "!!" in text or "{{" in text]
    assert "reads oddly" not in out


def test_agent_check_a_variable_the_webhook_does_not_answer_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live_agent()
    tools = config["conversation_config"]["agent"]["prompt"]["tools"]
    tools.append(
        {
            "type": "webhook",
            "name": "check_stock",
            "description": "Stock for {{store_status}} and {{system__caller_id}}",
            "api_schema": {
                "url": "https://stock.example/{{loyalty_tier}}",
                "query_params_schema": {
                    "properties": {"customer": {"type": "string", "dynamic_variable": "crm_id"}}
                },
            },
            "assignments": [{"dynamic_variable": "stock_level", "value_path": "level"}],
        }
    )

    status, out, _ = _run(tmp_path, config, capsys)

    variables = {line.split()[0]: line for line in _section(out, "Variables:")}
    blocked = out.split("BLOCKED: ", 1)[1].splitlines()
    assert status == 1
    assert blocked[0] == "2 problem(s) to fix first:"
    assert blocked[1].startswith("  - {{loyalty_tier}} (tool check_stock: api_schema.url) is not")
    assert blocked[2].startswith(
        "  - {{crm_id}} (tool check_stock: api_schema.query_params_schema.properties.customer"
        ".dynamic_variable) is not"
    )
    assert "NOT ANSWERED" in variables["loyalty_tier"]
    assert "tool check_stock: description" in variables["store_status"]
    assert not [name for name in variables if name.startswith("system__")]
    assert "stock_level" not in variables  # set by the tool, not asked of the webhook


def test_agent_check_sms_overrides_and_the_stores_first_message_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live_agent()
    overrides = config["platform_settings"]["overrides"]["conversation_config_override"]
    overrides["conversation"]["text_only"] = False
    overrides["agent"]["first_message"] = False
    store = json.loads((EVENTS / "cache_admin" / "upsert_org.json").read_text())
    store["organization"]["settings"]["first_message_override"] = "Hi, {{customer_greeting}}!"
    organization = tmp_path / "store.json"
    organization.write_text(json.dumps(store))

    status, out, _ = _run(tmp_path, config, capsys, "--organization", str(organization))

    problems = out.split("BLOCKED: ", 1)[1].splitlines()[1:]
    assert status == 1
    assert len(problems) == 2
    assert "conversation.text_only override is not allowed" in problems[0]
    assert problems[1].startswith("  - BICI Bike Store - North Shore sets first_message_override")
    assert "conversation.text_only override: NOT ALLOWED" in out
    assert "agent.first_message override:    not allowed (needed:" in out
    assert "known caller:        Hi, Ada!" in out


def test_agent_check_private_agent_and_data_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live_agent()
    config["platform_settings"]["auth"]["enable_auth"] = True
    config["platform_settings"]["data_collection"]["favourite_colour"] = {"type": "string"}

    status, out, _ = _run(tmp_path, config, capsys)

    collection = dict(line.split(":", 1) for line in _section(out, "Data collection"))
    assert status == 0
    assert "on: a private agent; replies need ELEVENLABS_API_KEY" in out
    assert collection["read by the post-call processor"].strip() == (
        "customer_name, bike_type, purchase_timeline, budget_range, riding_experience, "
        "customer_triggers, follow_up_needed, call_classification"
    )
    assert collection["collected but ignored"].strip() == "favourite_colour"
    assert collection["not collected (read if present)"].strip() == (
        "asked_hours, asked_directions, appointment_request"
    )
    assert set(DATA_COLLECTION_FIELDS) >= {"customer_name", "call_classification", "asked_hours"}


def _malformed(change: str) -> Any:
    config = live_agent()
    agent = config["conversation_config"]["agent"]
    overrides = config["platform_settings"]["overrides"]["conversation_config_override"]
    if change == "not JSON":
        return "{not json"
    if change == "a list":
        return "[1, 2]"
    if change == "agent is a string":
        config["conversation_config"]["agent"] = "hello"
    elif change == "tools is an object":
        agent["prompt"]["tools"] = {"name": "x"}
    elif change == "a tool is a string":
        agent["prompt"]["tools"] = ["transfer"]
    elif change == "text_only is a string":
        overrides["conversation"]["text_only"] = "yes"
    elif change == "first message is a number":
        agent["first_message"] = 7
    elif change == "data collection is a list":
        config["platform_settings"]["data_collection"] = ["customer_name"]
    return config


AGENT = "conversation_config.agent"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("not JSON", "agent.json is not JSON"),
        ("a list", "agent.json must hold a JSON object (an agent's configuration), not a list"),
        ("agent is a string", f"{AGENT} must be an object, not a string"),
        ("tools is an object", f"{AGENT}.prompt.tools must be a list, not an object"),
        ("a tool is a string", f"{AGENT}.prompt.tools[0] must be an object"),
        ("text_only is a string", "conversation.text_only must be a boolean, not a string"),
        ("first message is a number", f"{AGENT}.first_message must be a string, not a number"),
        ("data collection is a list", "platform_settings.data_collection must be an object"),
    ],
)
def test_agent_check_malformed_configuration_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, message: str
) -> None:
    status, out, err = _run(tmp_path, _malformed(change), capsys)

    assert status == 2
    assert out == ""
    assert err.startswith("error: ") and message in err


def test_agent_check_unreadable_inputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tmp_path / "agent.json"
    agent.write_text(json.dumps(live_agent()))
    (tmp_path / "org.json").write_text('{"name": "X", "settings": []}')

    missing = cli.main(["agent-check", "--agent", str(tmp_path / "none.json")])
    missing_err = capsys.readouterr().err
    bad_time = cli.main(["agent-check", "--agent", str(agent), "--at", "teatime"])
    bad_time_err = capsys.readouterr().err
    bad_org = cli.main(
        ["agent-check", "--agent", str(agent), "--organization", str(tmp_path / "org.json")]
    )
    bad_org_err = capsys.readouterr().err

    assert (missing, bad_time, bad_org) == (2, 2, 2)
    assert "cannot read" in missing_err and "none.json" in missing_err
    assert "--at 'teatime' is not an ISO 8601 date and time" in bad_time_err
    assert "field 'settings' must be a JSON object" in bad_org_err


# -- fetching the configuration ------------------------------------------------------------------


class _Agents(BaseHTTPRequestHandler):
    """ElevenLabs' GET /v1/convai/agents/{agent_id}, for one agent and one key."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    config: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("xi-api-key")))
        if self.headers.get("xi-api-key") != "test-key":
            self._answer(401, {"detail": {"status": "invalid_api_key", "message": "Invalid key"}})
        elif self.path != "/v1/convai/agents/agent_store":
            self._answer(404, {"detail": {"status": "not_found", "message": "Agent not found"}})
        else:
            self._answer(200, {"agent_id": "agent_store", **self.config})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elevenlabs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _Agents.seen = []
    _Agents.config = live_agent()
    server = HTTPServer(("127.0.0.1", 0), _Agents)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("ELEVENLABS_API_URL", url)
    monkeypatch.setenv("ELEVENLABS_API_KEY", "test-key")
    yield url
    server.shutdown()
    server.server_close()


def test_agent_check_fetches_the_agent_by_id(
    elevenlabs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["agent-check", "--agent-id", "agent_store", "--at", FRIDAY_EVENING])

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("Agent: Store agent (test) agent_store\n")
    assert _Agents.seen == [("/v1/convai/agents/agent_store", "test-key")]


@pytest.mark.parametrize(
    ("agent_id", "key", "message"),
    [
        ("agent_other", "test-key", "/v1/convai/agents/agent_other answered 404: Agent not found"),
        ("agent_store", "wrong", "answered 401: Invalid key"),
        ("agent_store", "", "ELEVENLABS_API_KEY is not set"),
        ("../admin", "test-key", "/v1/convai/agents/..%2Fadmin answered 404"),
    ],
)
def test_agent_check_fetch_failures_exit_2_naming_them(
    elevenlabs: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    agent_id: str,
    key: str,
    message: str,
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", key)

    status = cli.main(["agent-check", "--agent-id", agent_id])

    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert "test-key" not in err and "wrong" not in err


def test_agent_check_fetch_has_a_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server that accepts the connection and never answers.
    silent = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("ELEVENLABS_API_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "test-key")

    try:
        status = cli.main(["agent-check", "--agent-id", "agent_store", "--timeout", "0.2"])
    finally:
        silent.close()

    assert status == 2
    assert "did not answer within 0.2 s" in capsys.readouterr().err


def test_agent_check_refuses_an_api_url_that_is_not_http(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_URL", "file:///etc")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "test-key")

    status = cli.main(["agent-check", "--agent-id", "agent_store"])

    assert status == 2
    assert "ELEVENLABS_API_URL must be an http(s) URL" in capsys.readouterr().err


def test_agent_check_report_lists_placeholders_the_webhook_does_not_answer() -> None:
    config = copy.deepcopy(live_agent())
    placeholders = config["conversation_config"]["agent"]["dynamic_variables"]
    placeholders["dynamic_variable_placeholders"]["legacy_flag"] = ""
    placeholders["dynamic_variable_placeholders"]["interaction_count"] = 0

    report = agent_check.check(config, agent_check.default_organization(), agent_check.now_utc())

    assert report.exit_status == 0
    assert report.warnings == [
        "placeholder 'legacy_flag' is not answered by the webhook (unused, so harmless)",
        "placeholder 'interaction_count' is a number; the webhook answers a string: declare it "
        "as a string",
    ]
