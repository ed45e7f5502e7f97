"""SnapStart runtime hooks: what a snapshot may keep, and what each restored copy redoes.

With SnapStart, Lambda initializes a published version once, snapshots the memory, and
resumes every new container from that one snapshot, maybe days later. So before the
snapshot:
- the modules the first answer needs are imported (the point of the snapshot: a cold
  container's time goes on imports), without opening a connection or reading a secret;
- every per-container object is dropped: sockets (PostgreSQL, Redis, Secrets Manager) would
  be dead or shared after a restore, cached secrets and credentials may have rotated or
  expired, the breaker's and the L1's deadlines are on a monotonic clock that does not carry
  over. The runtime is rebuilt lazily on the first call after the restore, as in any cold
  container.
After the restore, ``random`` is reseeded: its state is in the snapshot, so every restored
container would draw the same TTL jitter. Lease tokens and ids come from ``secrets``/``uuid4``
(the OS's generator, drawn per call), and nothing else unique is made at import time.
"""

from __future__ import annotations

import importlib
import random

from snapshot_restore_py import register_after_restore, register_before_snapshot

from leadlookup import container as runtime
from leadlookup.adapters import queue
from leadlookup.adapters.aws import iam, secretsmanager

# What a first answer may import besides the handler's own import chain: the drivers, and
# the Secrets Manager reader for secrets given as ARNs. Importing opens no connection and
# reads no credential.
SNAPSHOT_IMPORTS = (
    "pg8000.native",
    "redis",
    "redis.cluster",
    "phonenumbers",
    "leadlookup.adapters.aws.secretsmanager",
)

_registered = False


def before_snapshot() -> None:
    """Import what the first answer needs; drop every connection and per-container state."""
    for name in SNAPSHOT_IMPORTS:
        importlib.import_module(name)
    runtime.set_runtime(None)
    secretsmanager.reset()
    iam.reset()
    queue.forget_clients()


def after_restore() -> None:
    """Give this restored container its own random state."""
    random.seed()


def register_hooks() -> None:
    """Register the hooks with the Lambda runtime (once; they run only under SnapStart)."""
    global _registered
    if not _registered:
        register_before_snapshot(before_snapshot)
        register_after_restore(after_restore)
        _registered = True
