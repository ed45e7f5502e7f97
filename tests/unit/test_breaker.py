"""The circuit breaker, on a fake clock."""

from __future__ import annotations

from leadlookup.adapters.cache import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_starts_closed_and_allows() -> None:
    breaker = CircuitBreaker(5, FakeClock())

    assert breaker.allow() and breaker.state == "closed"


def test_breaker_opens_on_a_failure_and_refuses_during_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5, clock)

    breaker.failure()
    clock.now += 4.9

    assert breaker.state == "open"
    assert not breaker.allow()


def test_breaker_allows_one_trial_after_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5, clock)
    breaker.failure()
    clock.now += 5.1

    first, second = breaker.allow(), breaker.allow()

    assert (first, second) == (True, False)


def test_breaker_closes_after_a_successful_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5, clock)
    breaker.failure()
    clock.now += 6
    breaker.allow()

    breaker.success()

    assert breaker.state == "closed" and breaker.allow()


def test_breaker_reopens_after_a_failed_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5, clock)
    breaker.failure()
    clock.now += 6
    breaker.allow()

    breaker.failure()

    assert breaker.state == "open" and breaker.failures == 2
