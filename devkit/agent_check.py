"""`make agent-check`: will an ElevenLabs agent work with this stack? Run it before the switch.

    python -m devkit.cli agent-check --agent exported-agent.json [--organization org.json]
    python -m devkit.cli agent-check --agent-id agent_... (GET /v1/convai/agents/{agent_id})

It reads the agent's configuration (an exported JSON file, or fetched with
``ELEVENLABS_API_KEY`` from ``ELEVENLABS_API_URL``) and prints every ``{{variable}}`` the
agent uses and whether the initiation webhook answers it, the first message as a known, a
new, an anonymous and an outbound caller would hear it now, which data-collection fields the
post-call processor reads, and whether the overrides SMS replies send are allowed.

Exit status: 0 nothing blocks the switch; 1 something does (each problem is printed);
2 the configuration could not be read (not JSON, not an object, a part of the wrong type, a
failed fetch).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from urllib.parse import quote, urlsplit

from leadlookup.domain.call_report import DATA_COLLECTION_FIELDS
from leadlookup.domain.models import Lead, Organization, default_organization_snapshot
from leadlookup.domain.variables import DYNAMIC_VARIABLE_KEYS, store_zone
from leadlookup.usecases import initiation

DEFAULT_API_URL = "https://api.elevenlabs.io"
DEFAULT_TIMEOUT_S = 10.0
# An agent's configuration is tens of kilobytes; more is not an agent.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
# What ElevenLabs substitutes in prompts, first messages and tools.
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# ElevenLabs fills these itself; the webhook never answers them.
SYSTEM_PREFIX = "system__"
ANSWERED = frozenset(DYNAMIC_VARIABLE_KEYS)
# Doubled punctuation or spacing in a rendered first message: phrases that do not fit together.
_CLUMSY = re.compile(r"\?\?|!!|\.!|!\.|\.\.|\?\.|\.\?|\s{2}")
_PATH_AGENT = ("conversation_config", "agent")
_PATH_OVERRIDES = ("platform_settings", "overrides", "conversation_config_override")
_PATH_FROM_WEBHOOK = (
    "platform_settings",
    "overrides",
    "enable_conversation_initiation_client_data_from_webhook",
)


class ConfigError(Exception):
    """The configuration cannot be checked: unreadable, malformed or not fetched."""


@dataclass
class Report:
    """What the check found: the lines to print and the problems that block the switch."""

    lines: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """1 when something blocks the switch, else 0."""
        return 1 if self.blocking else 0

    def write(self, out: IO[str]) -> None:
        """Print the report and its verdict."""
        for line in self.lines:
            print(line, file=out)
        print(file=out)
        for warning in self.warnings:
            print(f"warning: {warning}", file=out)
        if self.blocking:
            print(f"BLOCKED: {len(self.blocking)} problem(s) to fix first:", file=out)
            for problem in self.blocking:
                print(f"  - {problem}", file=out)
        else:
            print("OK: nothing blocks switching the webhook URL to this stack.", file=out)


# -- reading the configuration ------------------------------------------------------------------


def parse_config(text: str | bytes, source: str) -> dict[str, Any]:
    """The agent configuration in ``text``; :class:`ConfigError` naming ``source`` if it is none."""
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{source} must hold a JSON object (an agent's configuration), not {_kind(config)}"
        )
    return config


def fetch_config(
    agent_id: str, api_url: str, api_key: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, Any]:
    """``GET <api_url>/v1/convai/agents/{agent_id}`` with the ``xi-api-key`` header."""
    if not agent_id.strip():
        raise ConfigError("--agent-id is empty")
    if not api_key:
        raise ConfigError("ELEVENLABS_API_KEY is not set: --agent-id fetches the agent with it")
    base = api_url.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise ConfigError(f"ELEVENLABS_API_URL must be an http(s) URL, not {api_url!r}")
    url = f"{base}/v1/convai/agents/{quote(agent_id.strip(), safe='')}"
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url, headers={"xi-api-key": api_key, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = response.read(MAX_CONFIG_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read(2000))
        raise ConfigError(
            f"GET {url} answered {exc.code}{': ' + detail if detail else ''}"
        ) from None
    except TimeoutError:
        raise ConfigError(f"GET {url} did not answer within {timeout_s:g} s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise ConfigError(f"GET {url} did not answer within {timeout_s:g} s") from None
        raise ConfigError(f"GET {url} failed: {reason}") from None
    if len(body) > MAX_CONFIG_BYTES:
        raise ConfigError(f"GET {url} answered more than {MAX_CONFIG_BYTES} bytes")
    return parse_config(body, f"the answer of GET {url}")


def _error_detail(raw: bytes) -> str:
    # ElevenLabs answers errors as {"detail": {"status": ..., "message": ...}} or a string.
    try:
        detail = json.loads(raw).get("detail")
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace").strip()[:200]
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("status")
    return str(detail or "")[:200]


def organization_from_json(data: Any, source: str) -> Organization:
    """A store from an organization JSON (the shape ``upsert_org`` takes, or its event)."""
    if isinstance(data, dict) and isinstance(data.get("organization"), dict):
        data = data["organization"]
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object (an organization)")
    name, phone, settings = data.get("name"), data.get("phone_number", ""), data.get("settings")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{source}: field 'name' must be a non-empty string")
    if not isinstance(phone, str):
        raise ConfigError(f"{source}: field 'phone_number' must be a string")
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: field 'settings' must be a JSON object")
    org_id = data.get("id") or "00000000-0000-0000-0000-000000000000"
    digits = "".join(char for char in phone if char.isdigit())
    return Organization(str(org_id), name.strip(), phone, digits, settings)


def default_organization() -> Organization:
    """The seeded store as the layer ships it."""
    return Organization.from_json(default_organization_snapshot())


# -- walking the configuration ------------------------------------------------------------------


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _KINDS.get(type(value), "a value")


def _at(config: dict[str, Any], path: tuple[str, ...], kind: type) -> Any:
    """The value at ``path``, None when a part is missing; :class:`ConfigError` when mistyped."""
    value: Any = config
    for depth, key in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(path[:depth])
            raise ConfigError(f"{where} must be an object, not {_kind(value)}")
        value = value.get(key)
    if value is None:
        return None
    # bool is an int in Python; a JSON true is no number, and 1 is no boolean.
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise ConfigError(f"{'.'.join(path)} must be {_KINDS[kind]}, not {_kind(value)}")
    return value


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, text) of every string in ``value``, and of ``dynamic_variable`` names."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if key == "dynamic_variable" and isinstance(item, str) and item.strip():
                # A tool parameter whose value is a dynamic variable, named without braces.
                yield child, "{{" + item.strip() + "}}"
            elif key != "assignments":  # assignments set variables from a tool's answer
                yield from _strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def references(config: dict[str, Any]) -> dict[str, list[str]]:
    """Every variable the agent uses (not ``system__*``) and where: prompt, first message, tools."""
    agent = _PATH_AGENT
    places: list[tuple[str, str]] = []
    prompt = _at(config, (*agent, "prompt", "prompt"), str)
    if prompt:
        places.append(("prompt", prompt))
    first = _at(config, (*agent, "first_message"), str)
    if first:
        places.append(("first message", first))
    tools = _at(config, (*agent, "prompt", "tools"), list) or []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ConfigError(f"conversation_config.agent.prompt.tools[{index}] must be an object")
        label = f"tool {tool.get('name') or index}"
        places += [(f"{label}: {path}", text) for path, text in _strings(tool, "")]
    built_in = _at(config, (*agent, "prompt", "built_in_tools"), dict) or {}
    for name, tool in built_in.items():
        places += [(f"built-in tool {name}: {path}", text) for path, text in _strings(tool, "")]
    found: dict[str, list[str]] = {}
    for place, text in places:
        for match in VARIABLE.finditer(text):
            name = match.group(1)
            if not name.startswith(SYSTEM_PREFIX) and place not in found.setdefault(name, []):
                found[name].append(place)
    return found


def placeholders(config: dict[str, Any]) -> dict[str, Any]:
    """The agent's ``dynamic_variable_placeholders`` (name -> default value)."""
    path = (*_PATH_AGENT, "dynamic_variables", "dynamic_variable_placeholders")
    return _at(config, path, dict) or {}


def render(text: str, variables: dict[str, str]) -> str:
    """``text`` with each ``{{name}}`` replaced by its value, as ElevenLabs substitutes them.

    A name without a value stays as it is written (ElevenLabs would refuse the conversation).
    """
    return VARIABLE.sub(lambda match: variables.get(match.group(1), match.group(0)), text)


# -- the sample callers -------------------------------------------------------------------------


def sample_callers(org: Organization, now: datetime) -> list[tuple[str, Lead | None, bool]]:
    """(label, lead, outbound) of a known, a new, an anonymous and an outbound caller."""
    known = Lead(
        id="5e1f0000-0000-4000-8000-0000000000a1",
        organization_id=org.id,
        phone_number="+16045550142",
        phone_number_normalized="16045550142",
        customer_name="Ada Lovelace",
        status="qualified",
        bike_interest={"type": "gravel"},
        interaction_count=2,
        last_summary="Asked about gravel bikes under $2000; wants a test ride.",
        last_contact_at=now - timedelta(days=2),
    )
    new = Lead(
        id="5e1f0000-0000-4000-8000-0000000000a2",
        organization_id=org.id,
        phone_number="+16045550199",
        phone_number_normalized="16045550199",
    )
    return [
        ("known caller", known, False),
        ("new caller", new, False),
        ("anonymous caller", None, False),
        ("outbound follow-up", known, True),
    ]


# -- the check -----------------------------------------------------------------------------------


def check(config: dict[str, Any], org: Organization, now: datetime) -> Report:
    """Everything the agent needs from this stack, and what of it is missing."""
    report = Report()
    _check_variables(config, report)
    _check_first_message(config, org, now, report)
    _check_data_collection(config, report)
    _check_sms(config, org, report)
    return report


def _check_variables(config: dict[str, Any], report: Report) -> None:
    used = references(config)
    defaults = placeholders(config)
    names = [*used, *(name for name in defaults if name not in used)]
    names = [name for name in names if not name.startswith(SYSTEM_PREFIX)]
    title = " ".join(str(config[key]) for key in ("name", "agent_id") if config.get(key))
    report.lines.append(f"Agent: {title or '(unnamed)'}")
    report.lines.append(
        f"Variables: {len(used)} used by the agent, {len(defaults)} placeholders; the webhook "
        f"answers {len(ANSWERED)} (system__ variables are ElevenLabs' own):"
    )
    width = max((len(name) for name in names), default=0)
    for name in names:
        where = ", ".join(used.get(name, [])) or "placeholders only"
        if name in used and name in defaults:
            where += ", placeholders"
        answered = "answered" if name in ANSWERED else "NOT ANSWERED"
        report.lines.append(f"  {name:<{width}}  {answered:<12}  {where}")
        if name in ANSWERED:
            continue
        if name in used:
            report.blocking.append(
                f"{{{{{name}}}}} ({', '.join(used[name])}) is not answered by the webhook: "
                "ElevenLabs refuses a conversation whose variables are missing"
            )
        else:
            report.warnings.append(
                f"placeholder {name!r} is not answered by the webhook (unused, so harmless)"
            )
    for name, value in defaults.items():
        if name in ANSWERED and not isinstance(value, str):
            report.warnings.append(
                f"placeholder {name!r} is {_kind(value)}; the webhook answers a string: "
                "declare it as a string"
            )
    tool_ids = _at(config, (*_PATH_AGENT, "prompt", "tool_ids"), list) or []
    if tool_ids:
        report.warnings.append(
            f"{len(tool_ids)} tool(s) are referenced by id (prompt.tool_ids) and not part of "
            "this configuration: check their {{variables}} in each tool's own settings"
        )


def _check_first_message(
    config: dict[str, Any], org: Organization, now: datetime, report: Report
) -> None:
    first = _at(config, (*_PATH_AGENT, "first_message"), str) or ""
    local = now.astimezone(store_zone(org))
    report.lines.append("")
    report.lines.append(
        f"First message as callers would hear it at {org.name}, "
        f"{local:%A %Y-%m-%d %H:%M} {store_zone(org).key}:"
    )
    report.lines.append(f"  written: {first!r}" if first else "  written: (none)")
    for index, (label, lead, outbound) in enumerate(sample_callers(org, now)):
        answer = initiation.answer(org, lead, now, f"CA-agent-check-{index}", outbound)
        override = answer.get("conversation_config_override", {}).get("agent", {})
        text = override.get("first_message", first)
        spoken = render(text, answer["dynamic_variables"])
        report.lines.append(f"  {label + ':':<20} {spoken or '(the agent waits for the caller)'}")
        if _CLUMSY.search(spoken.strip()):
            report.warnings.append(f"the first message for the {label} reads oddly: {spoken!r}")


def _check_data_collection(config: dict[str, Any], report: Report) -> None:
    fields = _at(config, ("platform_settings", "data_collection"), dict) or {}
    used = [name for name in fields if name in DATA_COLLECTION_FIELDS]
    ignored = [name for name in fields if name not in DATA_COLLECTION_FIELDS]
    absent = [name for name in DATA_COLLECTION_FIELDS if name not in fields]
    report.lines.append("")
    report.lines.append("Data collection (platform_settings.data_collection):")
    for label, names in (
        ("read by the post-call processor", used),
        ("collected but ignored", ignored),
        ("not collected (read if present)", absent),
    ):
        report.lines.append(f"  {label + ':':<33} {', '.join(names) or '(none)'}")


def _check_sms(config: dict[str, Any], org: Organization, report: Report) -> None:
    text_only = _at(config, (*_PATH_OVERRIDES, "conversation", "text_only"), bool)
    first_message = _at(config, (*_PATH_OVERRIDES, "agent", "first_message"), bool)
    private = _at(config, ("platform_settings", "auth", "enable_auth"), bool)
    webhook = _at(
        config,
        (
            "platform_settings",
            "overrides",
            "enable_conversation_initiation_client_data_from_webhook",
        ),
        bool,
    )
    store_override = org.settings.get("first_message_override")
    wants_first_message = isinstance(store_override, str) and bool(store_override.strip())
    report.lines.append("")
    report.lines.append("SMS replies and overrides:")
    report.lines.append(
        f"  conversation.text_only override: {'allowed' if text_only else 'NOT ALLOWED'} "
        "(every SMS reply opens a text-only conversation)"
    )
    need = "needed: the store sets first_message_override" if wants_first_message else "not used"
    report.lines.append(
        f"  agent.first_message override:    {'allowed' if first_message else 'not allowed'} "
        f"({need})"
    )
    report.lines.append(
        "  authentication:                  "
        + (
            "on: a private agent; replies need ELEVENLABS_API_KEY and connect through a signed URL"
            if private
            else "off: replies connect with the agent id alone"
        )
    )
    if not text_only:
        report.blocking.append(
            "the conversation.text_only override is not allowed: ElevenLabs refuses every SMS "
            "reply's conversation (agent Security settings > Overrides > text only)"
        )
    if wants_first_message and not first_message:
        report.blocking.append(
            f"{org.name} sets first_message_override but the agent does not allow the "
            "agent.first_message override: ElevenLabs would refuse its calls"
        )
    if webhook is False:
        report.warnings.append(
            "fetching conversation initiation data from the webhook is off for this agent "
            f"({'.'.join(_PATH_FROM_WEBHOOK)}): its Twilio calls will not ask this stack "
            "for their variables"
        )


# -- the command ---------------------------------------------------------------------------------


def run(
    *,
    agent_file: str | None,
    agent_id: str | None,
    organization_file: str | None,
    at: str | None,
    environ: Mapping[str, str],
    out: IO[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Check one agent (a file, or fetched by id) and print the report; the exit status."""
    if agent_file is not None:
        config = parse_config(_read(agent_file), agent_file)
    elif agent_id is not None:
        api_url = environ.get("ELEVENLABS_API_URL") or DEFAULT_API_URL
        config = fetch_config(agent_id, api_url, environ.get("ELEVENLABS_API_KEY", ""), timeout_s)
    else:
        raise ConfigError("give --agent FILE or --agent-id ID")
    if organization_file is not None:
        org = organization_from_json(
            parse_config(_read(organization_file), organization_file), organization_file
        )
    else:
        org = default_organization()
    report = check(config, org, _moment(at, org))
    report.write(out)
    return report.exit_status


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    return data


def _moment(at: str | None, org: Organization) -> datetime:
    """``--at`` (ISO 8601; without an offset, store-local time), else now."""
    if at is None:
        return now_utc()
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ConfigError(f"--at {at!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=store_zone(org))
    return moment.astimezone(UTC)


def now_utc() -> datetime:
    """The current time (a seam for tests)."""
    return datetime.now(UTC)
