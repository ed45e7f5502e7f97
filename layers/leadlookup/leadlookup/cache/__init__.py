"""Read-through cache: Redis (single or cluster) or in-memory backends behind one contract."""

from leadlookup.cache.base import CacheBackend, LeaseResult, LeaseState
from leadlookup.cache.breaker import CircuitBreaker
from leadlookup.cache.keys import CacheKeys
from leadlookup.cache.readthrough import ReadThroughCache
from leadlookup.cache.region import CacheRegion

__all__ = [
    "CacheBackend",
    "CacheKeys",
    "CacheRegion",
    "CircuitBreaker",
    "LeaseResult",
    "LeaseState",
    "ReadThroughCache",
]
