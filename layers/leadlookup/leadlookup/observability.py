"""Powertools Logger and Tracer shared by the handlers, and the EMF metrics they flush.

``emf`` collects one invocation's metrics and writes them as one CloudWatch Embedded Metric
Format record when the handler ends (``@emf.log_metrics``), plus Powertools' ``ColdStart``
metric once per container; the metric *names* live in :mod:`leadlookup.metrics`. All three
honour Powertools' environment variables (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_METRICS_DISABLED``, ...), which the template
sets once in ``Globals`` (docs/DEPLOY.md, "Metrics, logs and traces").
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger

from leadlookup.metrics import COLD_START, NAMESPACE, SERVICE_NAME

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    # The module's __getattr__ builds it on first access (see get_tracer); typed here so
    # that handlers decorated with it stay typed.
    tracer: Tracer

# Powertools' own variables, read the way Powertools reads them.
SERVICE_NAME_ENV = "POWERTOOLS_SERVICE_NAME"
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
METRICS_DISABLED_ENV = "POWERTOOLS_METRICS_DISABLED"
DEV_ENV = "POWERTOOLS_DEV"
FUNCTION_NAME_ENV = "POWERTOOLS_METRICS_FUNCTION_NAME"
# Set by Lambda; a provisioned environment's first invocation is not a cold start.
INITIALIZATION_TYPE_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})


def service_name(environ: Mapping[str, str] = os.environ) -> str:
    """``POWERTOOLS_SERVICE_NAME``, else the layer's own name (local runs, tests)."""
    return environ.get(SERVICE_NAME_ENV) or SERVICE_NAME


# Built at import like every Powertools Logger (the handlers' decorators need it), so the
# service name is read then: Lambda's environment is set before the first import.
logger = Logger(service=service_name())
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
        _tracer = Tracer(service=service_name(), auto_patch=False)
    return _tracer


def __getattr__(name: str) -> Any:
    # ``observability.tracer``: the Tracer, built when a handler first asks for it.
    if name == "tracer":
        return get_tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Handler = TypeVar("Handler", bound=Callable[..., Any])
# EMF takes at most 100 metrics per directive and 100 values per metric.
_EMF_MAX = 100


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


@dataclass(frozen=True)
class MetricsConfig:
    """What Powertools' variables say about metrics, read once per container."""

    namespace: str
    service: str
    disabled: bool
    # POWERTOOLS_METRICS_FUNCTION_NAME: the ColdStart metric's function_name, else the
    # invocation context's.
    function_name: str | None
    provisioned: bool

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        namespace: str | None = None,
        service: str | None = None,
    ) -> MetricsConfig:
        """Explicit names first, then Powertools' variables, then the layer's names."""
        dev = _truthy(environ.get(DEV_ENV))
        disabled = environ.get(METRICS_DISABLED_ENV)
        return cls(
            namespace=namespace or environ.get(NAMESPACE_ENV) or NAMESPACE,
            service=service or service_name(environ),
            # As Powertools decides: disabled when asked, or in dev mode unless asked not to be.
            disabled=_truthy(disabled) or (dev and disabled is None),
            function_name=environ.get(FUNCTION_NAME_ENV) or None,
            provisioned=environ.get(INITIALIZATION_TYPE_ENV) == "provisioned-concurrency",
        )


class EmbeddedMetrics:
    """Counts and millisecond samples of one invocation, written as one EMF record.

    The record is the one Powertools Metrics writes (namespace, the ``service`` dimension, one
    root member per metric), and the container's first invocation adds Powertools'
    ``ColdStart`` record. It is written here rather than by Powertools Metrics because the
    warm initiation has to fit within 2x one Redis GET: Powertools' per-metric validation and
    its flush were about 13% of a warm request in ``python -m devkit.bench.profile
    initiation_warm``, this record costs about 35k instructions (BENCHMARKS.md, "Second
    pass"). Where speed does not matter (every other function) the one writer is kept too:
    ``python -m devkit.bench.metrics`` measured what Powertools Metrics would cost there
    (BENCHMARKS.md, "Metrics where speed does not matter").

    Powertools' variables are read on the first flush and kept for the container
    (:meth:`reset` forgets them, with the ColdStart flag: tests and ``container.set_runtime``).
    """

    def __init__(self, namespace: str | None = None, service: str | None = None) -> None:
        self._names = (namespace, service)
        self._config: MetricsConfig | None = None
        self._cold = True
        # Handlers are single-threaded, but a reply may count from a worker thread.
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._samples: dict[str, list[float]] = {}

    @property
    def config(self) -> MetricsConfig:
        """This container's settings (read from the environment on first use)."""
        config = self._config
        if config is None:
            config = self._config = MetricsConfig.from_env(os.environ, *self._names)
        return config

    @property
    def namespace(self) -> str:
        """The CloudWatch namespace the records are written to."""
        return self.config.namespace

    @property
    def service(self) -> str:
        """The ``service`` dimension of every record."""
        return self.config.service

    def reset(self) -> None:
        """Start over as a new container: variables read again, ColdStart written again."""
        with self._lock:
            self._config = None
            self._cold = True
            self._counts, self._samples = {}, {}

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
        config = self.config
        if config.disabled:
            return
        timestamp = int(time.time() * 1000)
        head = None if samples else _counts_head(config.namespace, config.service, tuple(counts))
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
            _write(_record_head(config.namespace, config.service, chunk) % (timestamp, members))

    def cold_start(self, context: Any) -> None:
        """Powertools' ``ColdStart`` metric, the first time a handler of this container ends.

        The same record Powertools Metrics writes with ``capture_cold_start_metric=True``:
        ``ColdStart`` = 1 (Count) with the dimensions ``function_name`` and ``service``, in
        a record of its own. Unlike Powertools it is written even when that first invocation
        raised: a container is cold once, whatever its first answer was. A provisioned
        environment, or a call without a Lambda context (no function to name), writes none.
        """
        if not self._cold:
            return
        self._cold = False
        config = self.config
        name = config.function_name or getattr(context, "function_name", None)
        if config.disabled or config.provisioned or not name:
            return
        record = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": config.namespace,
                        "Dimensions": [["function_name", "service"]],
                        "Metrics": [{"Name": COLD_START, "Unit": "Count"}],
                    }
                ],
            },
            "function_name": str(name),
            "service": config.service,
            COLD_START: [1.0],
        }
        _write(_ENCODER.encode(record))

    def log_metrics(self, handler: Handler) -> Handler:
        """Decorate a Lambda handler: its metrics are written when it returns or raises."""

        @functools.wraps(handler)
        def flushed(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                if self._cold:
                    self.cold_start(args[1] if len(args) > 1 else kwargs.get("context"))
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


# Namespace and service from Powertools' variables (else the layer's names), on first flush.
emf = EmbeddedMetrics()


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
