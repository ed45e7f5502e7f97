"""The rehearsal: the `sam build` output run the way Lambda runs it (`make invoke`, benchmarks).

- ``runtime_api.RuntimeApi``: a local Lambda Runtime API for one execution environment
  (``next``, ``response``, ``error``, ``init/error``, and SnapStart's ``restore/next`` and
  ``restore/error``), recording when init finished and each invocation's duration.
- ``function.FunctionProcess``: one fresh python3.13 process under awslambdaric against it;
  ``invoke(event)``, ``init_ms``, ``waits(start, end)`` (connect/TLS/I-O per peer, from a
  socket probe loaded before awslambdaric), ``stderr()`` (``-X importtime`` when asked),
  ``snapstart=True`` + ``restore()`` to run the before-snapshot and after-restore hooks.
- ``stack.running_stack``: moto (Secrets Manager, SQS), a TLS cluster-mode Redis with an RBAC
  user and the default user off, a TLS-only PostgreSQL with a local CA.
- ``session.Rehearsal``: all of it, with each function's template environment resolved.

``python -m devkit.rehearsal FN EVENT`` (``make invoke``) prints one cold start;
tests/infra/test_rehearsal.py runs a few.
"""
