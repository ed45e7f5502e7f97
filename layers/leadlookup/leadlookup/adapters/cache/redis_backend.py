"""Redis and Redis Cluster backends over redis-py, with explicit timeouts and retries."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.credentials import CredentialProvider
from redis.retry import Retry

from leadlookup.adapters.cache.base import LeaseResult, LeaseState
from leadlookup.adapters.secrets import secret_json
from leadlookup.config import Settings
from leadlookup.errors import ConfigError

# Atomic "value, or take the lease". Replies: {1, value} hit, {2, stale} lease granted,
# {0, stale} held; stale is the stale copy KEYS[3] when asked for (false: none).
GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
local stale = false
if KEYS[3] then stale = redis.call('GET', KEYS[3]) end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, stale} end
return {0, stale}
"""

# The seq a stored value starts with (base.value_seq); -1 for older formats.
_SEQ_OF = """
local function seq(value)
  return tonumber(string.match(value, '^{"v":%d+,"s":(%d+)')) or -1
end
"""

# Fill only while our token still holds the lease (a write or an invalidation deleted it
# otherwise), and never over a value of a larger or equal seq; the stale copy KEYS[3] (TTL
# ARGV[4]) too, unless it is newer.
FILL_IF_LEASED = (
    _SEQ_OF
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[2] == '' then return 0 end
local new = seq(ARGV[2])
local held = redis.call('GET', KEYS[1])
if held and seq(held) >= new then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if KEYS[3] then
  local stale = redis.call('GET', KEYS[3])
  if not stale or seq(stale) <= new then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4]) end
end
return 1
"""
)

# Write-through after a commit: the lease goes (a reader's older row must not land later), and
# a held value is replaced only by a newer one. An absent key stays absent: nothing is cached
# that was not, and a writer delayed past an erasure cannot bring the lead back.
# The stale copy KEYS[3] (TTL ARGV[3]) counts as held, and is replaced with the value.
WRITE_THROUGH = (
    _SEQ_OF
    + """
redis.call('DEL', KEYS[2])
local held = redis.call('GET', KEYS[1])
local stale = false
if KEYS[3] then stale = redis.call('GET', KEYS[3]) end
if not held and not stale then return 0 end
local new = seq(ARGV[1])
if (held and seq(held) >= new) or (stale and seq(stale) >= new) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3]) end
return 1
"""
)

# Change counters (the staff inbox's ETag): read each, creating a missing one at its start
# ARGV[i] with the TTL ARGV[#KEYS + 1]; or add 1 to each (a missing one from its start) and
# give it that TTL again. GET and SET only, the commands the cache users' access strings
# allow (template.yaml); the values stay below 2**53, exact in Lua's doubles.
READ_COUNTERS = """
local ttl = ARGV[#KEYS + 1]
local values = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value then
    value = ARGV[i]
    redis.call('SET', key, value, 'EX', ttl)
  end
  values[i] = value
end
return values
"""
BUMP_COUNTERS = """
local ttl = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  local value = tonumber(redis.call('GET', key) or ARGV[i]) or tonumber(ARGV[i])
  redis.call('SET', key, string.format('%.0f', value + 1), 'EX', ttl)
end
return #KEYS
"""

_SCAN_BATCH = 500

ClientFactory = Callable[[], "redis.Redis | RedisCluster"]


def client_options(
    settings: Settings, username: str | None, password: str | None
) -> dict[str, Any]:
    """Keyword arguments shared by the single and the cluster client.

    redis-py 8 defaults to 5 s timeouts and several retries, so a silent server would cost
    seconds per call; here each call costs at most ``REDIS_TIMEOUT_MS`` and one retry on a
    connection error (a pooled socket that the server closed while the container was idle).
    """
    timeout = settings.redis_timeout_ms / 1000
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        # RESP2: every ElastiCache engine version speaks it, and the replies parsed here
        # (bulk strings and arrays) look the same in both protocols.
        "protocol": 2,
        "decode_responses": True,
        "client_name": "bici-lookups",
    }
    if username:
        options["username"] = username
    if password:
        options["password"] = password
    return options


class IamCredentialProvider(CredentialProvider):
    """ElastiCache IAM auth: the user id and a fresh-enough token for every new connection."""

    def __init__(self, user_id: str, tokens: Callable[[], str]) -> None:
        self._user_id = user_id
        self._tokens = tokens

    def get_credentials(self) -> tuple[str, str]:
        """(user, token) for the AUTH a new connection sends."""
        return self._user_id, self._tokens()


def iam_credential_provider(settings: Settings) -> IamCredentialProvider:
    """The provider for ``REDIS_IAM_USER`` on the cache ``REDIS_CACHE_NAME``."""
    if not settings.redis_cache_name:
        raise ConfigError("REDIS_CACHE_NAME is required with REDIS_IAM_USER")
    if not (settings.redis_url or "").startswith("rediss://"):
        # ElastiCache accepts IAM auth only over TLS; a token must not travel in clear.
        raise ConfigError("REDIS_IAM_USER needs a rediss:// REDIS_URL")
    # Imported here: only IAM deployments sign tokens.
    from leadlookup.adapters.aws.iam import elasticache_token_source

    user = settings.redis_iam_user or ""
    tokens = elasticache_token_source(settings.redis_cache_name, user, settings.env)
    return IamCredentialProvider(user, tokens)


def build_client(settings: Settings) -> redis.Redis | RedisCluster:
    """A redis-py client for ``REDIS_URL`` (single or cluster; TLS by ``rediss://``).

    Credentials: an IAM token per new connection (``REDIS_IAM_USER``), or the RBAC user and
    password of ``REDIS_AUTH_ARN``, or whatever the URL carries. A cluster client connects in
    its constructor (it reads the slot map), so callers build it inside the circuit breaker.
    """
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    username = password = None
    if settings.redis_auth_arn and not settings.redis_iam_user:
        secret = secret_json(settings.redis_auth_arn)
        username, password = secret.get("username"), secret.get("password")
    options = client_options(settings, username, password)
    if settings.redis_iam_user:
        options["credential_provider"] = iam_credential_provider(settings)
    if settings.redis_cluster:
        # Cluster mode has no database number; the same Retry object bounds its MOVED/ASK and
        # reconnect attempts (redis-py 6+ dropped the separate cluster retry counters).
        return RedisCluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


class RedisBackend:
    """The cache contract over one Redis or a Redis Cluster. The client is built on first use."""

    def __init__(
        self,
        factory: ClientFactory,
        *,
        write_script: str = WRITE_THROUGH,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        # Replaceable only so that tests can show what the seq check prevents.
        self._write_script = write_script
        self._client: redis.Redis | RedisCluster | None = None
        self._lock = threading.Lock()
        self._max_age_s = max_age_s
        self._clock = clock
        self._built_at = 0.0

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The redis-py client, built lazily (constructor errors reach the breaker).

        With ``max_age_s``, a client (and so each of its connections) older than that is
        closed and built anew: ElastiCache cuts IAM-authenticated connections at 12 hours,
        and a connection cut under a call would cost that call.
        """
        if (
            self._client is not None
            and self._max_age_s is not None
            and self._clock() - self._built_at >= self._max_age_s
        ):
            self.reset()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                    self._built_at = self._clock()
        return self._client

    def reset(self) -> None:
        """Drop the client so the next call builds a new one (after a failure)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            # Closing a broken client tells us nothing new.
            with contextlib.suppress(Exception):
                client.close()

    def get(self, key: str) -> str | None:
        """The value, or None."""
        value = self.client.get(key)
        return None if value is None else str(value)

    def get_or_lease(
        self, key: str, lease_key: str, token: str, lease_ms: int, stale_key: str | None = None
    ) -> LeaseResult:
        """The value if present; else take the free lease (one EVAL round trip)."""
        keys = (key, lease_key) if stale_key is None else (key, lease_key, stale_key)
        reply = self.client.eval(GET_OR_LEASE, len(keys), *keys, token, lease_ms)
        code = int(reply[0])
        if code == 1:
            return LeaseResult(LeaseState.HIT, str(reply[1]))
        stale = str(reply[1]) if len(reply) > 1 and reply[1] is not None else None
        return LeaseResult(LeaseState.GRANTED if code == 2 else LeaseState.HELD, stale=stale)

    def fill(
        self,
        key: str,
        lease_key: str,
        token: str,
        value: str | None,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """Store while ``token`` holds the lease, and release it (one EVAL round trip)."""
        keys = (key, lease_key) if stale is None else (key, lease_key, stale[0])
        stale_ttl = 0 if stale is None else stale[1]
        args = (token, value or "", ttl_s, stale_ttl)
        return bool(self.client.eval(FILL_IF_LEASED, len(keys), *keys, *args))

    def write(
        self,
        key: str,
        lease_key: str,
        value: str,
        ttl_s: int,
        stale: tuple[str, int] | None = None,
    ) -> bool:
        """Replace held copies of a smaller seq, drop the lease (one EVAL round trip)."""
        keys = (key, lease_key) if stale is None else (key, lease_key, stale[0])
        stale_ttl = 0 if stale is None else stale[1]
        script = self._write_script
        return bool(self.client.eval(script, len(keys), *keys, value, ttl_s, stale_ttl))

    def delete(self, *keys: str) -> None:
        """Remove keys (one round trip; callers pass keys of one hash slot)."""
        self.client.delete(*keys)

    def read_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> list[str]:
        """Each counter, a missing one created at its start (one EVAL round trip)."""
        reply = self.client.eval(READ_COUNTERS, len(keys), *keys, *starts, ttl_s)
        return [str(value) for value in reply]

    def bump_counters(self, keys: Sequence[str], starts: Sequence[int], ttl_s: int) -> None:
        """Add 1 to each counter and renew its TTL (one EVAL round trip)."""
        self.client.eval(BUMP_COUNTERS, len(keys), *keys, *starts, ttl_s)

    def delete_prefix(self, prefix: str) -> int:
        """SCAN and UNLINK every key under ``prefix``, on every primary of a cluster."""
        client = self.client
        removed = 0
        if isinstance(client, RedisCluster):
            for node in client.get_primaries():
                node_client = client.get_redis_connection(node)
                removed += _delete_matching(node_client, prefix)
            return removed
        return _delete_matching(client, prefix)

    def info(self) -> dict[str, Any]:
        """Server INFO (per node for a cluster): memory, keyspace hits and misses."""
        client = self.client
        if isinstance(client, RedisCluster):
            nodes = {
                node.name: _info_summary(client.get_redis_connection(node).info())
                for node in client.get_primaries()
            }
            return {"backend": "redis-cluster", "connected": True, "nodes": nodes}
        return {"backend": "redis", "connected": True, **_info_summary(client.info())}


def _delete_matching(client: redis.Redis, prefix: str) -> int:
    removed = 0
    # Escape glob characters so a prefix is matched literally.
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            removed += _unlink_each(client, batch)
            batch = []
    if batch:
        removed += _unlink_each(client, batch)
    return removed


def _unlink_each(client: redis.Redis, keys: list[str]) -> int:
    # One key per UNLINK: keys of a batch may sit in different slots of a cluster node.
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())


def _info_summary(info: dict[str, Any]) -> dict[str, Any]:
    hits = int(info.get("keyspace_hits", 0))
    misses = int(info.get("keyspace_misses", 0))
    return {
        "redis_version": info.get("redis_version"),
        "used_memory": info.get("used_memory"),
        "used_memory_human": info.get("used_memory_human"),
        "connected_clients": info.get("connected_clients"),
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "keyspace_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
    }
