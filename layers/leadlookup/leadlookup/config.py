"""Configuration: read once from the environment into a frozen dataclass.

Every variable, its default and its meaning: README.md, "Configuration".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from leadlookup.errors import ConfigError

DEFAULT_ORGANIZATION_ID = "b0c1b1c1-0000-0000-0000-000000000001"
ELEVENLABS_WS_URL = "wss://api.elevenlabs.io/v1/convai/conversation"
ELEVENLABS_API_URL = "https://api.elevenlabs.io"
TWILIO_API_URL = "https://api.twilio.com"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip()


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = _str(env, name)
    if value is not None and not value.startswith(("https://", "http://")):
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _url_or_path(env: Mapping[str, str], name: str) -> str | None:
    value = _str(env, name)
    if value is not None and value.startswith("/"):
        if value.startswith("//"):
            raise ConfigError(f"{name} must be an http(s) URL or a path starting with one /")
        return value.rstrip("/") or None
    return None if value is None else (_url(env, name) or "").rstrip("/") or None


@dataclass(frozen=True)
class Settings:
    """Every knob of the layer; build with :meth:`from_env`, override fields in tests."""

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "postgres"
    db_secret_arn: str | None = None
    db_user: str | None = None
    db_iam_auth: bool = False
    db_sslmode: str = "disable"
    db_connect_timeout_ms: int = 3000
    db_statement_timeout_ms: int = 5000

    redis_url: str | None = None
    redis_enabled: bool = True
    redis_cluster: bool = False
    redis_auth_arn: str | None = None
    redis_iam_user: str | None = None
    redis_cache_name: str | None = None
    # ElastiCache closes IAM-authenticated connections after 12 hours; ours go well before.
    redis_max_connection_age_s: int = 6 * 3600
    redis_timeout_ms: int = 250
    redis_breaker_cooldown_ms: int = 5000

    cache_key_prefix: str = "bici:"
    lead_cache_ttl_seconds: int = 300
    org_cache_ttl_seconds: int = 600
    org_l1_ttl_seconds: int = 30
    # Last known values, served only while the database is unavailable (stale-if-error).
    lead_stale_ttl_seconds: int = 86400
    org_stale_ttl_seconds: int = 86400
    cache_lease_ms: int = 2000
    cache_wait_ms: int = 250

    default_organization_id: str = DEFAULT_ORGANIZATION_ID
    default_phone_region: str = "CA"

    initiation_secret_header: str = "X-Webhook-Secret"  # noqa: S105 - a header name
    initiation_deadline_ms: int = 1500
    public_base_url: str | None = None
    inbound_sms_queue_url: str | None = None
    post_call_queue_url: str | None = None
    max_body_bytes: int = 65536
    post_call_max_body_bytes: int = 4 * 1024 * 1024
    retention_days: int = 365
    allow_unsigned_webhooks: bool = False

    # SMS replies: no agent id or account SID means no reply is tried.
    elevenlabs_agent_id: str | None = None
    elevenlabs_ws_url: str = ELEVENLABS_WS_URL
    # REST calls (the signed conversation URL of a private agent) go here.
    elevenlabs_api_url: str = ELEVENLABS_API_URL
    twilio_account_sid: str | None = None
    twilio_api_url: str = TWILIO_API_URL
    twilio_timeout_ms: int = 5000
    # Where Twilio posts each send's delivery status (this stack's /webhooks/twilio/status);
    # unset: sends carry no StatusCallback.
    twilio_status_callback_url: str | None = None
    sms_reply_deadline_ms: int = 20000
    # How long the agent's silence means it has finished (replies.agent says what it costs).
    sms_reply_settle_ms: int = 1500
    reply_queue_url: str | None = None
    reply_outcome_queue_url: str | None = None
    idempotency_table: str | None = None
    # Outbound calls: their jobs' queue (unset: placed in-process), and how long ElevenLabs
    # has to answer the request that places one.
    outbound_call_queue_url: str | None = None
    outbound_call_timeout_ms: int = 10000
    # The staff console's sign-in (leadlookup.api.console): the base URL of the Cognito domain's
    # endpoints, or a path on the console's own origin (`make run`: the local issuer), and the
    # app client the page signs in with.
    console_auth_url: str | None = None
    console_client_id: str | None = None

    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cache_enabled(self) -> bool:
        """Whether Redis may be contacted at all (``REDIS_ENABLED`` and a URL)."""
        return self.redis_enabled and bool(self.redis_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; a malformed variable raises :class:`ConfigError` naming it."""
        e = dict(os.environ if env is None else env)
        db_host = _str(e, "DB_HOST")
        return cls(
            database_url=_str(e, "DATABASE_URL"),
            db_host=db_host,
            db_port=_int(e, "DB_PORT", 5432, 1),
            db_name=_str(e, "DB_NAME", "postgres") or "postgres",
            db_secret_arn=_str(e, "DB_SECRET_ARN"),
            db_user=_str(e, "DB_USER"),
            db_iam_auth=_bool(e, "DB_IAM_AUTH", False),
            # RDS Proxy certificates chain to Amazon's public roots, so a DB_HOST deployment can
            # verify the full chain and host name against the system trust store.
            db_sslmode=_str(e, "DB_SSLMODE", "verify-full" if db_host else "disable") or "",
            db_connect_timeout_ms=_int(e, "DB_CONNECT_TIMEOUT_MS", 3000, 1),
            db_statement_timeout_ms=_int(e, "DB_STATEMENT_TIMEOUT_MS", 5000, 1),
            redis_url=_str(e, "REDIS_URL"),
            redis_enabled=_bool(e, "REDIS_ENABLED", True),
            redis_cluster=_bool(e, "REDIS_CLUSTER", False),
            redis_auth_arn=_str(e, "REDIS_AUTH_ARN"),
            redis_iam_user=_str(e, "REDIS_IAM_USER"),
            redis_cache_name=_str(e, "REDIS_CACHE_NAME"),
            redis_max_connection_age_s=_int(e, "REDIS_MAX_CONNECTION_AGE_S", 6 * 3600, 1),
            redis_timeout_ms=_int(e, "REDIS_TIMEOUT_MS", 250, 1),
            redis_breaker_cooldown_ms=_int(e, "REDIS_BREAKER_COOLDOWN_MS", 5000, 0),
            cache_key_prefix=_str(e, "CACHE_KEY_PREFIX", "bici:") or "bici:",
            lead_cache_ttl_seconds=_int(e, "LEAD_CACHE_TTL_SECONDS", 300, 1),
            org_cache_ttl_seconds=_int(e, "ORG_CACHE_TTL_SECONDS", 600, 1),
            org_l1_ttl_seconds=_int(e, "ORG_L1_TTL_SECONDS", 30, 0),
            lead_stale_ttl_seconds=_int(e, "LEAD_STALE_TTL_SECONDS", 86400, 0),
            org_stale_ttl_seconds=_int(e, "ORG_STALE_TTL_SECONDS", 86400, 0),
            default_organization_id=_str(e, "DEFAULT_ORGANIZATION_ID", DEFAULT_ORGANIZATION_ID)
            or DEFAULT_ORGANIZATION_ID,
            default_phone_region=(_str(e, "DEFAULT_PHONE_REGION", "CA") or "CA").upper(),
            initiation_secret_header=_str(e, "INITIATION_SECRET_HEADER", "X-Webhook-Secret")
            or "X-Webhook-Secret",
            initiation_deadline_ms=_int(e, "INITIATION_DEADLINE_MS", 1500, 1),
            public_base_url=(_str(e, "PUBLIC_BASE_URL") or "").rstrip("/") or None,
            inbound_sms_queue_url=_str(e, "INBOUND_SMS_QUEUE_URL"),
            post_call_queue_url=_str(e, "POST_CALL_QUEUE_URL"),
            max_body_bytes=_int(e, "MAX_BODY_BYTES", 65536, 1),
            retention_days=_int(e, "RETENTION_DAYS", 365, 1),
            allow_unsigned_webhooks=_bool(e, "ALLOW_UNSIGNED_WEBHOOKS", False),
            elevenlabs_agent_id=_str(e, "ELEVENLABS_AGENT_ID"),
            elevenlabs_ws_url=_str(e, "ELEVENLABS_WS_URL", ELEVENLABS_WS_URL) or ELEVENLABS_WS_URL,
            elevenlabs_api_url=(_str(e, "ELEVENLABS_API_URL") or ELEVENLABS_API_URL).rstrip("/"),
            twilio_account_sid=_str(e, "TWILIO_ACCOUNT_SID"),
            twilio_api_url=_str(e, "TWILIO_API_URL", TWILIO_API_URL) or TWILIO_API_URL,
            twilio_timeout_ms=_int(e, "TWILIO_TIMEOUT_MS", 5000, 1),
            twilio_status_callback_url=_url(e, "TWILIO_STATUS_CALLBACK_URL"),
            sms_reply_deadline_ms=_int(e, "SMS_REPLY_DEADLINE_MS", 20000, 1),
            sms_reply_settle_ms=_int(e, "SMS_REPLY_SETTLE_MS", 1500, 0),
            reply_queue_url=_str(e, "REPLY_QUEUE_URL"),
            reply_outcome_queue_url=_str(e, "REPLY_OUTCOME_QUEUE_URL"),
            idempotency_table=_str(e, "IDEMPOTENCY_TABLE"),
            outbound_call_queue_url=_str(e, "OUTBOUND_CALL_QUEUE_URL"),
            outbound_call_timeout_ms=_int(e, "OUTBOUND_CALL_TIMEOUT_MS", 10000, 1),
            console_auth_url=_url_or_path(e, "CONSOLE_AUTH_URL"),
            console_client_id=_str(e, "CONSOLE_CLIENT_ID"),
            env=e,
        )
