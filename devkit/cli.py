"""The developer CLI behind the Makefile: run, invoke, migrate, events, cache, agent-check, token.

    python -m devkit.cli run [--host 127.0.0.1] [--port 3000]
    python -m devkit.cli token ana            # a sign-in token of a sample user of `make run`
    python -m devkit.cli invoke ConversationInitiationFunction events/.../known_caller.json
    python -m devkit.cli migrate
    python -m devkit.cli events
    python -m devkit.cli cache status | flush_lead --phone P --organization-id ID | ...
    python -m devkit.cli agent-check --agent exported-agent.json | --agent-id agent_...

PostgreSQL and Redis come from ``DATABASE_URL``/``REDIS_URL``, else the machine's own
servers, else embedded ones (devkit.services). The environment of template.yaml is not
applied: it names the AWS resources (RDS Proxy, a cluster-mode TLS cache, secret ARNs).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from devkit import lambda_env

ROOT = lambda_env.ROOT
EVENTS = ROOT / "events"
EMBEDDED_DIR = ROOT / ".local"
CACHE_ADMIN_FUNCTION = "CacheAdminFunction"
CACHE_ACTIONS = ("status", "flush_lead", "flush_org", "flush_all", "upsert_org", "purge")

# The documented local demo secrets: the same values the sample events are signed with.
DEMO_SECRETS = {
    "INITIATION_WEBHOOK_SECRET": "test-initiation-secret",
    "TWILIO_AUTH_TOKEN": "test-twilio-auth-token",
    "ELEVENLABS_WEBHOOK_SECRET": "test-elevenlabs-secret",
}
# Local defaults that keep the output readable; the environment wins.
LOCAL_DEFAULTS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    # The staff console signs in with the local issuer on the runner's own origin
    # (docs/CONSOLE.md): the same endpoints as Cognito's, under /local-auth.
    "CONSOLE_AUTH_URL": "/local-auth",
    "CONSOLE_CLIENT_ID": "local-console",
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# -- environment ---------------------------------------------------------------------------


def prepare_environment(
    err: IO[str], secrets: bool = True, embedded_dir: Path = EMBEDDED_DIR
) -> frozenset[str]:
    """Point the process at PostgreSQL and Redis, and fill in the local defaults.

    Returns the embedded servers started here (not those found running), for the caller
    to stop when it is done.
    """
    started: frozenset[str] = frozenset()
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from devkit.services import ServiceError, start_services

        try:
            # Local demo data lives in the git-ignored .local/ folder, never in a database of
            # the machine's own servers (README.md, "Two commands").
            services = start_services(embedded_dir, embedded=True)
        except ServiceError as exc:
            raise CliError(str(exc)) from None
        started = services.started
        for name, url in services.urls.items():
            os.environ.setdefault(name, url)
    for name in ("DATABASE_URL", "REDIS_URL"):
        print(f"{name}={_redact(os.environ[name])}", file=err)
    for name, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if secrets:
        for name, value in DEMO_SECRETS.items():
            if os.environ.get(name) or os.environ.get(f"{name}_ARN"):
                print(f"{name} from the environment", file=err)
            else:
                os.environ[name] = value
                print(f"{name}={value} (local demo secret)", file=err)
    lambda_env.add_layers_to_path()
    return started


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def apply_migrations(err: IO[str]) -> list[str]:
    """Migrate ``DATABASE_URL`` and seed the default organization; the versions applied."""
    from leadlookup.adapters.db import Database
    from leadlookup.adapters.migrate import load_migrations, migrate
    from leadlookup.config import Settings

    db = Database(Settings.from_env())
    try:
        applied = [str(version) for version in migrate(db)]
    finally:
        db.close()
    if applied:
        print(f"migrations applied: {', '.join(applied)}", file=err)
    else:
        print(f"schema up to date ({len(load_migrations())} migrations)", file=err)
    return applied


# Store B of the local sign-in's sample staff (store A is the seeded default organization).
SEED_STORE = """
INSERT INTO organizations (id, name, phone_number, phone_number_normalized, settings)
VALUES (:id, :name, :phone_number, :phone_number_normalized, :settings::jsonb)
ON CONFLICT DO NOTHING"""


def seed_local_stores(err: IO[str]) -> None:
    """Add store B (devkit.local_auth.STORE_B) to ``DATABASE_URL`` if it is not there."""
    from devkit.local_auth import STORE_B
    from leadlookup.adapters.db import Database
    from leadlookup.config import Settings

    db = Database(Settings.from_env())
    try:
        db.query(SEED_STORE, STORE_B)
    finally:
        db.close()
    print(f"store B: {STORE_B['name']} {STORE_B['phone_number']} ({STORE_B['id']})", file=err)


# The sample stores call from the agent stand-in's number (a store's setting; leads of a
# store without one are refused 409), unless they name a number of their own.
LOCAL_CALLS = """
UPDATE organizations
SET settings = settings || jsonb_build_object('agent_phone_number_id', CAST(:phone_id AS text))
WHERE id IN (:store_a, :store_b) AND NOT jsonb_exists(settings, 'agent_phone_number_id')
RETURNING name"""


def enable_local_calls(err: IO[str]) -> None:
    """Give the sample stores the agent stand-in's phone number, so a local call is placed."""
    from devkit.local_auth import STORE_B
    from devkit.standins import STANDIN_PHONE_NUMBER_ID
    from leadlookup.adapters.db import Database
    from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings

    db = Database(Settings.from_env())
    try:
        db.query(
            LOCAL_CALLS,
            {
                "phone_id": STANDIN_PHONE_NUMBER_ID,
                "store_a": DEFAULT_ORGANIZATION_ID,
                "store_b": STORE_B["id"],
            },
        )
    finally:
        db.close()
    print(
        f"outbound calls: the sample stores call from the agent stand-in's number "
        f"({STANDIN_PHONE_NUMBER_ID})",
        file=err,
    )


@contextlib.contextmanager
def stdout_for_result() -> Iterator[IO[str]]:
    """Send everything written to stdout (logs, EMF) to stderr; yield the real stdout.

    Powertools' logger holds the original ``sys.stdout`` object, so redirecting the Python
    object is not enough: file descriptor 1 itself is pointed at stderr meanwhile, the way
    `sam local invoke` keeps stdout for the function's response alone.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as result:
            yield result
            result.flush()
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# -- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """Serve every HttpApi route of template.yaml, like `sam local start-api`."""
    err = sys.stderr
    # Before anything starts: a second `make run` ends in one line, not a traceback after
    # the migrations.
    for port, what, how in run_ports(args.host, args.port, os.environ):
        require_free_port(args.host if what == API_PORT_NAME else "127.0.0.1", port, what, how)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C too, set here: a process started with SIGINT ignored (a background job of a
    # non-interactive shell, as CI may start it) keeps it ignored, and would never stop.
    signal.signal(signal.SIGINT, _interrupt)
    started = prepare_environment(err, embedded_dir=args.data_dir)
    try:
        return _run(args, err)
    except KeyboardInterrupt:
        return 130  # stopped while starting up
    finally:
        _close_runtime()
        if started:
            # What this run started, it stops; servers it found running stay up (another
            # `make run`, or `make test`, may be using them).
            from devkit.services import stop_embedded

            stop_embedded(args.data_dir, only=started)


def _run(args: argparse.Namespace, err: IO[str]) -> int:
    # The line per request carries the cache counts; EMF blobs would double every request.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    apply_migrations(err)
    seed_local_stores(err)
    banner = unsigned_banner(os.environ)
    if banner:
        print(banner, file=err, flush=True)
    from devkit.standins import start_for_local_run

    # The stand-in Twilio posts delivery updates back to this runner's status route.
    host = "127.0.0.1" if args.host in ("", "0.0.0.0", "::") else args.host
    api_url = f"http://{host}:{args.port}" if args.port else None
    try:
        stand_ins = start_for_local_run(os.environ, err, api_url)
    except OSError as exc:
        raise _bind_failed(exc, args.host, args.port) from None
    if stand_ins:
        enable_local_calls(err)

    from devkit.local_auth import SAMPLE_STAFF
    from devkit.runner import serve

    specs = lambda_env.functions()

    def ready(api: Any) -> None:
        for route in api.router.routes:
            auth = ""
            if route.iam:
                auth = " (AWS_IAM: local developer identity)"
            elif route.jwt:
                auth = " (JWT: local sign-in)"
            print(f"  {route.route_key:55} -> {route.function}{auth}", file=err)
        for route in api.skipped:
            print(f"  skipped {route.route_key}: payload format {route.payload_format}", file=err)
        print(
            f"local sign-in: {api.auth.issuer} (users: {', '.join(SAMPLE_STAFF)}; a token: "
            "python -m devkit.cli token ana)",
            file=err,
        )
        print(f"serving on {api.url} (Ctrl-C stops)", file=err, flush=True)

    try:
        serve(specs, args.host, args.port, on_ready=ready)
    except OSError as exc:
        raise _bind_failed(exc, args.host, args.port) from None
    finally:
        for stand_in in stand_ins:
            stand_in.stop()
    print("stopped", file=err)
    return 0


# -- ports and the unsigned-mode banner ----------------------------------------------------

API_PORT_NAME = "the local API"
# Unused ports are free to pick; the README's curl lines name the defaults.
_ANOTHER_API_PORT = "make run PORT=3001"


def run_ports(host: str, port: int, env: Any) -> list[tuple[int, str, str]]:
    """(port, what listens there, how to choose another) for each fixed port of `make run`.

    Port 0 means "any free port" and needs no check; the stand-ins are not started when
    ``ELEVENLABS_AGENT_ID`` names a real agent (devkit.standins.start_for_local_run).
    """
    from devkit.standins import LOCAL_AGENT_PORT, LOCAL_TWILIO_PORT

    ports = [(port, API_PORT_NAME, _ANOTHER_API_PORT)]
    if not env.get("ELEVENLABS_AGENT_ID"):
        for variable, default, what in (
            ("STANDIN_AGENT_PORT", LOCAL_AGENT_PORT, "the ElevenLabs agent stand-in"),
            ("STANDIN_TWILIO_PORT", LOCAL_TWILIO_PORT, "the Twilio stand-in"),
        ):
            chosen = int(env.get(variable) or default)
            ports.append((chosen, what, f"{variable}={chosen + 10} make run"))
    return [entry for entry in ports if entry[0]]


def require_free_port(host: str, port: int, what: str, how: str) -> None:
    """Raise a one-line :class:`CliError` when ``host:port`` cannot be listened on now.

    The probe listens as the servers do (SO_REUSEADDR, so a port in TIME_WAIT after the last
    run counts as free) and closes at once.
    """
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {port} ({what}) is already in use: another `make run` is probably "
                f"running (stop it with Ctrl-C), or choose another port: {how}"
            ) from None
        raise CliError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


def _bind_failed(exc: OSError, host: str, port: int) -> CliError:
    # A port taken between the check and the server's own bind: the same one line.
    for number, what, how in run_ports(host, port, os.environ):
        try:
            require_free_port(host if what == API_PORT_NAME else "127.0.0.1", number, what, how)
        except CliError as taken:
            return taken
    return CliError(f"cannot start the local API: {exc.strerror or exc}")


def unsigned_banner(env: Any) -> str | None:
    """The warning `make run` prints when ``ALLOW_UNSIGNED_WEBHOOKS`` is on, else None."""
    from leadlookup.config import Settings

    if not Settings.from_env(dict(env)).allow_unsigned_webhooks:
        return None
    rule = "!" * 78
    return "\n".join(
        [
            rule,
            "!! ALLOW_UNSIGNED_WEBHOOKS is on: webhook secrets and signatures are NOT checked.",
            "!! Anyone who reaches this server can post as Twilio or ElevenLabs. Local demos",
            "!! only: never set it on a deployed stack.",
            rule,
        ]
    )


def _interrupt(signum: int, frame: Any) -> None:
    # `kill` stops the server as cleanly as Ctrl-C does.
    raise KeyboardInterrupt


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke one function with one event file, like `sam local invoke -e`."""
    spec = lambda_env.function(args.function)
    event = _read_json(args.event)
    with stdout_for_result() as out:
        prepare_environment(sys.stderr)
        if not args.no_migrate:
            apply_migrations(sys.stderr)
        return _invoke_and_print(spec, event, out)


def cmd_cache(args: argparse.Namespace) -> int:
    """Run a cache admin action through the CacheAdminFunction handler."""
    event: dict[str, Any] = {"action": args.action}
    if args.phone is not None:
        event["phone"] = args.phone
    if args.organization_id is not None:
        event["organization_id"] = args.organization_id
    if args.json is not None:
        data = _read_json(args.json)
        if args.action == "upsert_org":
            event["organization"] = data
        elif isinstance(data, dict):
            event.update(data)
        else:
            raise CliError(f"{args.json} must hold a JSON object")
    spec = lambda_env.function(CACHE_ADMIN_FUNCTION)
    with stdout_for_result() as out:
        prepare_environment(sys.stderr, secrets=False)
        return _invoke_and_print(spec, event, out)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the layer's migrations to DATABASE_URL (or the local/embedded PostgreSQL)."""
    prepare_environment(sys.stderr, secrets=False)
    for version in apply_migrations(sys.stderr):
        print(version)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """Re-sign the signed sample events with the documented test secrets."""
    import importlib

    lambda_env.add_layers_to_path()  # the signers reuse the layer's own signature code
    failed = False
    for name in ("devkit.sms_events", "devkit.postcall_events"):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"{name}: cannot import ({exc})", file=sys.stderr)
            failed = True
            continue
        for path in module.resign(args.events_dir):
            print(_relative(Path(path)))
    return 1 if failed else 0


def cmd_agent_check(args: argparse.Namespace) -> int:
    """Check an ElevenLabs agent's configuration against this stack (exit 1: blocked)."""
    lambda_env.add_layers_to_path()
    from devkit import agent_check

    try:
        return agent_check.run(
            agent_file=args.agent,
            agent_id=args.agent_id,
            organization_file=args.organization,
            at=args.at,
            environ=os.environ,
            out=sys.stdout,
            timeout_s=args.timeout,
        )
    except agent_check.ConfigError as exc:
        raise CliError(str(exc)) from None


def cmd_token(args: argparse.Namespace) -> int:
    """Print a sign-in token of a sample user (or the machine client) for `make run`."""
    from devkit.local_auth import SAMPLE_STAFF, LocalAuth

    auth = LocalAuth(args.base_url)
    if args.user == "machine":
        print(auth.mint_machine())
    elif args.user in SAMPLE_STAFF:
        print(auth.mint(args.user, kind="access" if args.access else "id"))
    else:
        raise CliError(f"no sample user {args.user!r}: {', '.join(SAMPLE_STAFF)} or machine")
    return 0


def _invoke_and_print(spec: lambda_env.FunctionSpec, event: Any, out: IO[str]) -> int:
    try:
        result = lambda_env.invoke(spec, event)
    except Exception as exc:
        import traceback

        traceback.print_exc(file=sys.stderr)
        # The error document Lambda returns for an unhandled exception.
        error = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
        print(json.dumps(error), file=out)
        return 1
    finally:
        _close_runtime()
    print(json.dumps(result, indent=2, default=str), file=out)
    if isinstance(result, dict) and result.get("ok") is False:
        return 1
    return 0


def _close_runtime() -> None:
    with contextlib.suppress(ImportError):
        from leadlookup.container import set_runtime

        set_runtime(None)


def _read_json(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{name} is not JSON: {exc}") from None


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# -- parsing -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit.cli", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help=cmd_run.__doc__)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=3000)
    run.add_argument(
        "--data-dir",
        type=Path,
        default=EMBEDDED_DIR,
        help="folder of the embedded PostgreSQL and Redis (default .local/)",
    )
    run.set_defaults(func=cmd_run)

    invoke = commands.add_parser("invoke", help=cmd_invoke.__doc__)
    invoke.add_argument("function", metavar="FN", help="logical id in template.yaml")
    invoke.add_argument("event", metavar="EVENT", help="event JSON file ('-' for stdin)")
    invoke.add_argument("--no-migrate", action="store_true", help="do not migrate first")
    invoke.set_defaults(func=cmd_invoke)

    migrate = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate.set_defaults(func=cmd_migrate)

    events = commands.add_parser("events", help=cmd_events.__doc__)
    events.add_argument("--events-dir", type=Path, default=EVENTS)
    events.set_defaults(func=cmd_events)

    cache = commands.add_parser("cache", help=cmd_cache.__doc__)
    cache.add_argument("action", choices=CACHE_ACTIONS)
    cache.add_argument("--phone", help="phone number (flush_lead, flush_org)")
    cache.add_argument("--organization-id", help="organization id (flush_lead)")
    cache.add_argument(
        "--json",
        metavar="FILE",
        help="JSON object: the organization for upsert_org, else extra event fields",
    )
    cache.set_defaults(func=cmd_cache)

    token = commands.add_parser("token", help=cmd_token.__doc__)
    token.add_argument("user", help="ana (store A), ben (store B), olga (owner) or machine")
    token.add_argument(
        "--base-url",
        default="http://127.0.0.1:3000",
        help="the runner the token is for (its issuer; default http://127.0.0.1:3000)",
    )
    token.add_argument(
        "--access", action="store_true", help="the access token instead of the ID token"
    )
    token.set_defaults(func=cmd_token)

    check = commands.add_parser("agent-check", help=cmd_agent_check.__doc__)
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--agent", metavar="FILE", help="the agent's exported JSON")
    source.add_argument(
        "--agent-id",
        metavar="ID",
        help="fetch the agent (GET /v1/convai/agents/ID with ELEVENLABS_API_KEY)",
    )
    check.add_argument(
        "--organization",
        metavar="FILE",
        help="the store as upsert_org takes it (default: the seeded store)",
    )
    check.add_argument(
        "--at", metavar="ISO", help="render at this time (no offset: store time; default: now)"
    )
    check.add_argument(
        "--timeout", type=float, default=10.0, help="seconds for the fetch (default 10)"
    )
    check.set_defaults(func=cmd_agent_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status says whether it worked."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, lambda_env.TemplateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
