"""Settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from leadlookup.adapters.secrets import secret
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.errors import ConfigError


def test_settings_defaults_match_the_design() -> None:
    settings = Settings.from_env({})

    assert settings.cache_key_prefix == "bici:"
    assert (settings.lead_cache_ttl_seconds, settings.org_cache_ttl_seconds) == (300, 600)
    assert (settings.lead_stale_ttl_seconds, settings.org_stale_ttl_seconds) == (86400, 86400)
    assert settings.org_l1_ttl_seconds == 30
    assert settings.default_organization_id == DEFAULT_ORGANIZATION_ID
    assert settings.default_phone_region == "CA"
    assert settings.initiation_secret_header == "X-Webhook-Secret"
    assert settings.initiation_deadline_ms == 1500
    assert (settings.max_body_bytes, settings.retention_days) == (65536, 365)
    assert settings.allow_unsigned_webhooks is False
    assert settings.cache_enabled is False  # no REDIS_URL


def test_settings_sslmode_defaults_to_verify_full_with_db_host() -> None:
    assert Settings.from_env({"DB_HOST": "proxy.example"}).db_sslmode == "verify-full"
    assert Settings.from_env({"DATABASE_URL": "postgresql://x@y/z"}).db_sslmode == "disable"


def test_settings_redis_enabled_false_disables_the_cache() -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379", "REDIS_ENABLED": "false"}

    assert Settings.from_env(env).cache_enabled is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_ENABLED": "maybe"}, "REDIS_ENABLED"),
        ({"LEAD_CACHE_TTL_SECONDS": "five"}, "LEAD_CACHE_TTL_SECONDS"),
        ({"INITIATION_DEADLINE_MS": "0"}, "INITIATION_DEADLINE_MS"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_settings_plain_secret_wins_and_missing_is_none() -> None:
    settings = Settings.from_env({"TWILIO_AUTH_TOKEN": "plain"})

    assert secret(settings, "TWILIO_AUTH_TOKEN") == "plain"
    assert secret(settings, "ELEVENLABS_WEBHOOK_SECRET") is None
