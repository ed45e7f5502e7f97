"""One built function as one Lambda execution environment: a fresh python3.13 process started
by awslambdaric against its own :class:`~devkit.rehearsal.runtime_api.RuntimeApi`.

The process sees what Lambda's would: the function's build folder as the task root (and its
working directory), the built layer's ``python/`` folder where Lambda mounts ``/opt/python``,
boto3 from a separate runtime folder after it, the runtime interface client last, no user
site and no bytecode writes (``PYTHONDONTWRITEBYTECODE=1``: ``/var/task`` and ``/opt`` are
read-only in Lambda), the ``AWS_LAMBDA_*``/``_HANDLER``/``LAMBDA_TASK_ROOT`` variables, and
the function's environment from template.yaml with its references resolved to the stack.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit import toolchain
from devkit.lambda_env import LOCAL_ACCOUNT_ID, LOCAL_REGION, ROOT, FunctionSpec
from devkit.rehearsal.runtime_api import Invocation, RuntimeApi

BUILD = ROOT / ".aws-sam" / "build"
RUNTIME_DIR = ROOT / ".local" / "rehearsal"
PROBE_DIR = Path(__file__).with_name("probe")
# Start awslambdaric as its __main__ does, after the socket probe is in place.
BOOTSTRAP = (
    "import sys, runpy, rehearsal_probe; rehearsal_probe.install(); "
    "sys.argv = ['awslambdaric', sys.argv[1]]; "
    "runpy.run_module('awslambdaric', run_name='__main__', alter_sys=True)"
)
START_TIMEOUT_S = 60.0


class RehearsalError(RuntimeError):
    """The rehearsal cannot run (no build, no python3.13); the message says what to do."""


def python313() -> Path:
    """pyenv's python3.13 (or one on PATH)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(root / "versions/3.13*/bin/python3.13")), reverse=True)
    on_path = shutil.which("python3.13")
    for candidate in [*candidates, *([on_path] if on_path else [])]:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return Path(candidate)
    raise RehearsalError("the rehearsal needs python3.13 (e.g. `pyenv install 3.13`)")


@dataclass(frozen=True)
class Runtime:
    """The interpreter and the runtime's own folders (awslambdaric, boto3)."""

    python: Path
    ric_dir: Path
    boto3_dir: Path

    @classmethod
    def prepare(cls) -> Runtime:
        """Find python3.13; install awslambdaric and the runtime's boto3 from their locks (once)."""
        python = python313()
        try:
            ric = toolchain.ensure_target(RUNTIME_DIR / "ric", "awslambdaric", str(python))
            boto3 = toolchain.runtime_boto3(str(python))
        except toolchain.ToolchainError as exc:
            raise RehearsalError(str(exc)) from exc
        return cls(python, ric, boto3)


def build_dirs(spec: FunctionSpec, build: Path = BUILD) -> tuple[Path, Path]:
    """(task root, layer python/) of ``sam build``'s output for the function."""
    task = build / spec.logical_id
    # The template has one layer; sam build names its folder after the logical id.
    layer_names = (
        [p.name for p in build.iterdir() if (p / "python").is_dir()] if build.is_dir() else []
    )
    if not (task / spec.module_file.name).exists() or len(layer_names) != 1:
        raise RehearsalError(
            f"no sam build output for {spec.logical_id} in {build}: run `make build` first"
        )
    return task, build / layer_names[0] / "python"


def lambda_variables(spec: FunctionSpec, task: Path, api: RuntimeApi) -> dict[str, str]:
    """What Lambda's runtime puts in every function's environment."""
    name = spec.function_name
    return {
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(task),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"rehearsal/{int(time.time())}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        # The execution role's credentials; moto accepts any.
        "AWS_ACCESS_KEY_ID": "ASIAREHEARSAL",
        "AWS_SECRET_ACCESS_KEY": "rehearsal-secret-key",
        "AWS_SESSION_TOKEN": "rehearsal-session-token",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }


class FunctionProcess:
    """A started execution environment: :meth:`invoke` events, :meth:`stop` it.

    For SnapStart (helper "snap"): ``snapstart=True`` starts it with
    ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, so awslambdaric runs the before-snapshot
    hooks after init and waits in ``/restore/next``; :meth:`restore` lets it run the
    after-restore hooks and take events.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        env: Mapping[str, str],
        runtime: Runtime,
        *,
        build: Path = BUILD,
        importtime: bool = False,
        snapstart: bool = False,
        ports: Mapping[int, str] | None = None,
    ) -> None:
        self.spec = spec
        self.task, self.layer = build_dirs(spec, build)
        self.api = RuntimeApi(
            f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{spec.function_name}",
            spec.timeout_s,
        )
        self._tmp = Path(tempfile.mkdtemp(prefix=f"rehearsal-{spec.logical_id}-"))
        self.stdout_path = self._tmp / "stdout.log"
        self.stderr_path = self._tmp / "stderr.log"
        self.probe_path = self._tmp / "probe.log"
        self.env = {
            **env,
            **lambda_variables(spec, self.task, self.api),
            "PYTHONPATH": os.pathsep.join(
                map(str, (self.layer, runtime.boto3_dir, runtime.ric_dir, PROBE_DIR))
            ),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "REHEARSAL_PROBE_FILE": str(self.probe_path),
            "REHEARSAL_PORTS": ",".join(f"{p}={label}" for p, label in (ports or {}).items()),
        }
        if snapstart:
            self.env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        # -S: this interpreter's own site-packages (and .pth hooks) are not Lambda's runtime.
        self._command = [str(runtime.python), "-S", *(["-X", "importtime"] if importtime else [])]
        self._command += ["-c", BOOTSTRAP, spec.handler]
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, wait: bool = True) -> FunctionProcess:
        """Start the runtime process; with ``wait``, until its init is done (first /next)."""
        self.api.start()
        self.started_at = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self._command, cwd=self.task, env=self.env, stdout=out, stderr=err
            )
        if wait:
            self.wait_initialized()
        return self

    def wait_initialized(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Block until init finished (or failed); the init duration in ms."""
        deadline = time.monotonic() + timeout_s
        while not self.api.initialized.wait(0.05):
            if self.process is not None and self.process.poll() is not None:
                raise RehearsalError(f"{self.spec.logical_id} exited during init:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise RehearsalError(f"{self.spec.logical_id} init took over {timeout_s} s")
        if self.api.init_error is not None:
            raise RehearsalError(
                f"{self.spec.logical_id} init failed: {json.dumps(self.api.init_error)[:2000]}"
            )
        return self.init_ms

    @property
    def init_ms(self) -> float:
        """Process start to the first ``/next`` (Lambda's Init Duration)."""
        assert self.api.init_done_at is not None, "not initialized yet"
        return (self.api.init_done_at - self.started_at) * 1000

    def restore(self) -> None:
        """SnapStart: continue past ``/restore/next`` (runs the after-restore hooks)."""
        self.api.restore()

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        """Send one event and wait for its answer (or error)."""
        invocation = self.api.submit(event)
        limit = timeout_s if timeout_s is not None else self.spec.timeout_s + 5
        deadline = time.monotonic() + limit
        while not invocation.done.wait(0.05):
            if self.process is not None and self.process.poll() is not None:
                raise RehearsalError(f"{self.spec.logical_id} exited:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise RehearsalError(f"{self.spec.logical_id} did not answer in {limit} s")
        return invocation

    def waits(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Milliseconds spent on connects, TLS handshakes and I/O per peer between two
        ``time.monotonic()`` instants (overlapping records counted once)."""
        spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
        if self.probe_path.exists():
            for line in self.probe_path.read_text().splitlines():
                first, last, kind, label = line.split(" ", 3)
                a, b = max(float(first), start), min(float(last), end)
                if b > a:
                    spans.setdefault((label, kind), []).append((a, b))
        result: dict[str, dict[str, float]] = {}
        for (label, kind), intervals in spans.items():
            result.setdefault(label, {})[kind] = round(_union(intervals) * 1000, 1)
        return result

    def stdout(self) -> str:
        """The function's stdout so far (its logs and EMF lines)."""
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        """The function's stderr so far (``-X importtime`` lines among them)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self) -> None:
        """Kill the environment (Lambda freezes and later discards it) and clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.api.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FunctionProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total
