"""events/env.json: the environment of every function for `sam local invoke` / `start-api`.

    python -m devkit.sam_local [--host host.docker.internal] [--out events/env.json] [--check]

writes the ``--env-vars`` file of the SAM CLI: one entry per function of template.yaml (its
logical id), holding every variable the template declares for it (Globals and its own, read
by devkit.lambda_env) with a local value. `sam local` runs each function in a Docker
container and passes only the variables the template declares, so the entries are complete
or a variable keeps its AWS value. Local values:

- PostgreSQL and Redis on the Docker host (``--host``; ``host.docker.internal`` from inside a
  container, 127.0.0.1 with ``--docker-network host``): DATABASE_URL to the ``bici`` database,
  plain ``redis://`` without cluster mode, IAM authentication off for both;
- the webhooks' test secrets of README.md (``test-initiation-secret``...) under their plain
  names, and no secret ARN: nothing reads Secrets Manager;
- no queue URLs and no idempotency table: the hand-offs run in process, as in `make run`;
- a ``!Ref`` of a template parameter: its default; any other plain value: as written.

``--check`` compares the file with what would be written and fails when they differ (the
test in tests/infra/test_sam_local_env.py does the same), so a variable added to the template
needs its local value here, or the generator says which one is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from devkit.cli import DEMO_SECRETS, LOCAL_DEFAULTS
from devkit.lambda_env import ROOT, functions, load_template

ENV_FILE = ROOT / "events" / "env.json"
DOCKER_HOST = "host.docker.internal"
DATABASE = "bici"


class LocalEnvError(ValueError):
    """A declared variable has no local value; the message names it and its function."""


def local_values(host: str) -> dict[str, str]:
    """The local value of each variable whose template value names an AWS resource."""
    return {
        # DATABASE_URL wins over DB_HOST (leadlookup.config); the DB_* values say the same.
        "DATABASE_URL": f"postgresql://postgres@{host}:5432/{DATABASE}",
        "DB_HOST": host,
        "DB_PORT": "5432",
        "DB_NAME": DATABASE,
        "DB_USER": "postgres",
        "DB_IAM_AUTH": "false",
        "DB_SSLMODE": "disable",
        "REDIS_URL": f"redis://{host}:6379/0",
        "REDIS_CLUSTER": "false",
        "REDIS_IAM_USER": "",
        "REDIS_CACHE_NAME": "",
        "IDEMPOTENCY_TABLE": "",
        "TWILIO_STATUS_CALLBACK_URL": "",
        # The console's sign-in as under `make run` (the local issuer, which only the devkit
        # runner serves: under `sam local start-api` the page loads, its sign-in does not).
        "CONSOLE_AUTH_URL": LOCAL_DEFAULTS["CONSOLE_AUTH_URL"],
        "CONSOLE_CLIENT_ID": LOCAL_DEFAULTS["CONSOLE_CLIENT_ID"],
        **DEMO_SECRETS,
    }


def _value(name: str, declared: Any, fixed: dict[str, str], defaults: dict[str, str]) -> str:
    if name in fixed:
        return fixed[name]
    if name.endswith(("_ARN", "_QUEUE_URL")):
        return ""
    if isinstance(declared, str):
        return declared
    if isinstance(declared, dict) and set(declared) == {"Ref"} and declared["Ref"] in defaults:
        return defaults[declared["Ref"]]
    raise LocalEnvError(f"no local value for {name} (template value {json.dumps(declared)})")


def env_vars(template: dict[str, Any] | None = None, host: str = DOCKER_HOST) -> dict[str, Any]:
    """The ``--env-vars`` document: function logical id -> variable -> local value."""
    template = load_template() if template is None else template
    defaults = {
        name: str(parameter.get("Default", ""))
        for name, parameter in (template.get("Parameters") or {}).items()
    }
    fixed = local_values(host)
    document: dict[str, Any] = {}
    for logical_id, spec in sorted(functions(template).items()):
        try:
            document[logical_id] = {
                name: _value(name, declared, fixed, defaults)
                for name, declared in sorted(spec.environment.items())
            }
        except LocalEnvError as exc:
            raise LocalEnvError(f"{logical_id}: {exc}; add it to devkit/sam_local.py") from None
    return document


def render(document: dict[str, Any]) -> str:
    """The file's text: sorted, two-space indents, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the env-vars file."""
    parser = argparse.ArgumentParser(prog="python -m devkit.sam_local", description=__doc__)
    parser.add_argument("--host", default=DOCKER_HOST, help="where PostgreSQL and Redis listen")
    parser.add_argument("--out", type=Path, default=ENV_FILE)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    try:
        text = render(env_vars(host=args.host))
    except LocalEnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m devkit.sam_local", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(json.loads(text))} functions, PostgreSQL/Redis on {args.host})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
