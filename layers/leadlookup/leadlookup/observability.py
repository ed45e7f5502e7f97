"""Powertools Logger and Tracer shared by the handlers, and the EMF metrics they flush.

``emf`` collects one invocation's metrics and writes them as one CloudWatch Embedded Metric
Format record when the handler ends (``@emf.log_metrics``); the metric *names* live in
:mod:`leadlookup.metrics`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger

from leadlookup.metrics import NAMESPACE, SERVICE_NAME

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    # The module's __getattr__ builds it on first access (see get_tracer); typed here so
    # that handlers decorated with it stay typed.
    tracer: Tracer

logger = Logger(service=SERVICE_NAME)
_tracer: Tracer | None = None


def get_tracer() -> Tracer:
    """The Powertools Tracer, built on first use.

    Building it loads the X-Ray SDK: about 60 modules and 0.1-0.15 s of a cold start in the
    rehearsal (``python -m devkit.rehearsal --json``). The initiation webhook, which answers a
    ringing phone and uses no Tracer, never pays it; ``from leadlookup.observability import
    tracer`` builds it for the handlers that do.
    """
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        # No auto-patching: patching every library X-Ray supports imports botocore (and
        # pg8000, whose legacy connect() is all it wraps; this layer uses pg8000.native).
        # A library is instrumented where it is first used: see trace_library.
        _tracer = Tracer(service=SERVICE_NAME, auto_patch=False)
    return _tracer


def __getattr__(name: str) -> Any:
    # ``observability.tracer``: the Tracer, built when a handler first asks for it.
    if name == "tracer":
        return get_tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Handler = TypeVar("Handler", bound=Callable[..., Any])
# The variable Powertools Metrics honoured, kept so that local runs stay quiet the same way.
METRICS_DISABLED_ENV = "POWERTOOLS_METRICS_DISABLED"
# EMF takes at most 100 metrics per directive and 100 values per metric.
_EMF_MAX = 100


class EmbeddedMetrics:
    """Counts and millisecond samples of one invocation, written as one EMF record.

    The record is the one Powertools Metrics wrote (namespace, the ``service`` dimension, one
    root member per metric). Powertools Metrics wrote it until the warm initiation had to fit
    within 2x one Redis GET: its per-metric validation and its flush were about 13% of a warm
    request in ``python -m devkit.bench.profile initiation_warm``. This record costs about 35k
    instructions, counted alone with valgrind (see BENCHMARKS.md, "Second pass").
    """

    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = namespace
        self.service = service
        # Handlers are single-threaded, but a reply may count from a worker thread.
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._samples: dict[str, list[float]] = {}

    def count(self, name: str) -> None:
        """Add 1 to the count ``name``."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def milliseconds(self, name: str, value: float) -> None:
        """Record one latency sample."""
        with self._lock:
            samples = self._samples.setdefault(name, [])
            samples.append(round(value, 1))
            full = len(samples) >= _EMF_MAX
        if full:
            self.flush()

    def flush(self) -> None:
        """Write what was recorded (nothing when nothing was, or metrics are disabled)."""
        with self._lock:
            counts, samples = self._counts, self._samples
            if not (counts or samples):
                return
            self._counts, self._samples = {}, {}
        if _disabled():
            return
        timestamp = int(time.time() * 1000)
        head = None if samples else _counts_head(self.namespace, self.service, tuple(counts))
        if head is not None:
            # A warm answer's record: a few counts under a frame kept per set of names. Plain
            # names and int values need no JSON encoder (it was most of this method's cost).
            _write(head % (timestamp, ",".join([f'"{n}":{v}' for n, v in counts.items()])))
            return
        declared = [(name, "Count") for name in counts] + [(n, "Milliseconds") for n in samples]
        values: dict[str, Any] = {**counts, **samples}
        for start in range(0, len(declared), _EMF_MAX):
            chunk = tuple(declared[start : start + _EMF_MAX])
            members = _ENCODER.encode({name: values[name] for name, _unit in chunk})[1:-1]
            _write(_record_head(self.namespace, self.service, chunk) % (timestamp, members))

    def log_metrics(self, handler: Handler) -> Handler:
        """Decorate a Lambda handler: its metrics are written when it returns or raises."""

        @functools.wraps(handler)
        def flushed(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self.flush()

        return flushed  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _record_head(namespace: str, service: str, declared: tuple[tuple[str, str], ...]) -> str:
    """An EMF record with ``%d`` for its timestamp and ``%s`` for its metric members.

    A warm answer declares the same few metrics every time, so only the timestamp and the
    values are serialized per invocation.
    """
    head = {
        "_aws": {
            "Timestamp": 0,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in declared],
                }
            ],
        },
        "service": service,
    }
    text = json.dumps(head, separators=(",", ":")).replace("%", "%%")
    return text.replace('"Timestamp":0', '"Timestamp":%d', 1)[:-1] + ",%s}"


@functools.lru_cache(maxsize=64)
def _counts_head(namespace: str, service: str, names: tuple[str, ...]) -> str | None:
    """The record frame of counts ``names`` when each can be written as is: at most 100,
    each an ASCII identifier (a JSON string without escapes); else None."""
    if len(names) > _EMF_MAX or not all(n.isascii() and n.isidentifier() for n in names):
        return None
    return _record_head(namespace, service, tuple((name, "Count") for name in names))


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _write(record: str) -> None:
    # One line on stdout: Lambda sends it to CloudWatch Logs, which extracts the metrics.
    # sys.stdout is looked up per write: the runtime (and tests) may have replaced it.
    sys.stdout.write(record + "\n")


def _disabled() -> bool:
    value = os.environ.get(METRICS_DISABLED_ENV)  # unset in Lambda: no parsing per invocation
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


emf = EmbeddedMetrics(namespace=NAMESPACE, service=SERVICE_NAME)


def trace_library(*modules: str) -> None:
    """Have X-Ray record calls made through ``modules`` (e.g. "botocore"); idempotent."""
    get_tracer().patch(modules)


class RecordingMetricSink:
    """Keeps counts in a dict (tests and benchmarks)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str) -> None:
        """Add 1 to ``name``."""
        self.counts[name] = self.counts.get(name, 0) + 1
