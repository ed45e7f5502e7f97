"""Powertools Logger, Tracer and Metrics shared by every handler, and the metric sink.

``emf`` is the Powertools Metrics object (it writes CloudWatch Embedded Metric Format);
the metric *names* live in :mod:`leadlookup.metrics`.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from leadlookup.metrics import NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
# No auto-patching: patching every library X-Ray supports imports botocore (and pg8000, whose
# legacy connect() is all it wraps; this layer uses pg8000.native) into every cold start.
# A library is instrumented where it is first used: see trace_library.
tracer = Tracer(service=SERVICE_NAME, auto_patch=False)
emf = Metrics(namespace=NAMESPACE, service=SERVICE_NAME)


def trace_library(*modules: str) -> None:
    """Have X-Ray record calls made through ``modules`` (e.g. "botocore"); idempotent."""
    tracer.patch(modules)


class PowertoolsMetricSink:
    """Counts into the Powertools Metrics of this invocation (flushed as EMF by the handler)."""

    def count(self, name: str) -> None:
        """Add 1 to ``name``."""
        emf.add_metric(name=name, unit=MetricUnit.Count, value=1)


class RecordingMetricSink:
    """Keeps counts in a dict (tests and benchmarks)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str) -> None:
        """Add 1 to ``name``."""
        self.counts[name] = self.counts.get(name, 0) + 1
