"""Read-through cache: Redis (single or cluster) or in-memory backends behind one contract."""

from leadlookup.adapters.cache.base import CacheBackend, LeaseResult, LeaseState
from leadlookup.adapters.cache.breaker import CircuitBreaker
from leadlookup.adapters.cache.keys import CacheKeys
from leadlookup.adapters.cache.readthrough import ReadThroughCache
from leadlookup.adapters.cache.region import CacheRegion

__all__ = [
    "CacheBackend",
    "CacheKeys",
    "CacheRegion",
    "CircuitBreaker",
    "LeaseResult",
    "LeaseState",
    "ReadThroughCache",
]
