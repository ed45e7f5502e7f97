"""Developer tooling: local services, the check runner, the local runner and benchmarks."""
