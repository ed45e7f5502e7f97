"""The rehearsal as one object: the stack, the runtime folders and the template's functions.

    with Rehearsal.open() as rehearsal:
        with rehearsal.function("ConversationInitiationFunction") as fn:   # init done
            first = fn.invoke(event)          # Invocation: .result, .error, .duration_ms
            fn.init_ms, fn.waits(fn.started_at, first.done_at)

``function(..., overrides={...})`` changes variables (a blackholed endpoint, a deadline);
``function(..., snapstart=True)`` stops after the before-snapshot hooks until ``fn.restore()``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devkit.lambda_env import FunctionSpec, functions, load_template
from devkit.rehearsal.function import BUILD, FunctionProcess, RehearsalError, Runtime
from devkit.rehearsal.stack import HOST, Stack, cache_user_name, running_stack

_SUB = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Rehearsal:
    """Start execution environments of the built functions against the local stack."""

    stack: Stack
    runtime: Runtime
    template: dict[str, Any]
    build: Path = BUILD
    specs: dict[str, FunctionSpec] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def open(cls, build: Path = BUILD) -> Iterator[Rehearsal]:
        """Prepare python3.13's runtime folders and start the stack (stopped on exit)."""
        runtime = Runtime.prepare()
        template = load_template()
        with running_stack(template) as stack:
            yield cls(stack, runtime, template, build, functions(template))

    @property
    def ports(self) -> dict[int, str]:
        """Peer port -> name, for the socket probe's split of the cold start."""
        moto = urlsplit(self.stack.moto_url).port or 0
        return {moto: "aws", self.stack.redis_port: "redis", self.stack.pg_port: "postgresql"}

    def spec(self, logical_id: str) -> FunctionSpec:
        """A function of the template; the error lists the ones there are."""
        if logical_id not in self.specs:
            known = ", ".join(sorted(self.specs))
            raise RehearsalError(f"no function {logical_id!r} in template.yaml ({known})")
        return self.specs[logical_id]

    def environment(
        self, logical_id: str, overrides: Mapping[str, str | None] | None = None
    ) -> dict[str, str]:
        """The function's template environment with every reference resolved locally."""
        env: dict[str, str] = {}
        for name, value in self.spec(logical_id).environment.items():
            resolved = self.resolve(value)
            if resolved is not None:
                env[name] = resolved
        # The one literal that names AWS: RDS Proxy listens on 5432, the local one elsewhere.
        if "DB_PORT" in env:
            env["DB_PORT"] = str(self.stack.pg_port)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.stack.moto_url,
                # The local CA stands in for Amazon's roots (RDS Proxy, ElastiCache).
                "SSL_CERT_FILE": str(self.stack.tls.ca),
                "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            }
        )
        for name, value in (overrides or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def resolve(self, value: Any) -> str | None:
        """One template value, with ``Ref``/``GetAtt``/``Sub`` resolved; None if it cannot be."""
        if isinstance(value, str | int | float | bool):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, dict) or len(value) != 1:
            return None
        ((kind, arg),) = value.items()
        if kind == "Ref":
            return self._ref(str(arg))
        if kind == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self._get_att(str(parts[0]), ".".join(map(str, parts[1:])))
        if kind == "Fn::Sub" and isinstance(arg, str):
            missing: list[str] = []

            def replace(match: re.Match[str]) -> str:
                name = match.group(1)
                head, _, attribute = name.partition(".")
                found = self._get_att(head, attribute) if attribute else self._ref(name)
                if found is None:
                    missing.append(name)
                return found or ""

            text = _SUB.sub(replace, arg)
            return None if missing else text.replace("${!", "${")
        return None

    def _ref(self, name: str) -> str | None:
        parameters = self.template.get("Parameters") or {}
        if name in parameters:
            default = parameters[name].get("Default")
            return None if default is None else str(default)
        if name in self.stack.secret_arns:
            return self.stack.secret_arns[name]
        if name in self.stack.queue_urls:
            return self.stack.queue_urls[name]
        resource = self.template["Resources"].get(name) or {}
        if resource.get("Type") == "AWS::ElastiCache::User":
            return cache_user_name(name, resource)
        if resource.get("Type") == "AWS::ElastiCache::ServerlessCache":
            return "bici-lookups-rehearsal"
        pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
        return pseudo.get(name, "rehearsal" if name == "AWS::StackName" else None)

    def _get_att(self, resource: str, attribute: str) -> str | None:
        kind = (self.template["Resources"].get(resource) or {}).get("Type", "")
        if kind == "AWS::RDS::DBProxy" and attribute == "Endpoint":
            return HOST
        if kind == "AWS::ElastiCache::ServerlessCache":
            if attribute == "Endpoint.Address":
                return HOST
            if attribute == "Endpoint.Port":
                return str(self.stack.redis_port)
        return None

    def function(
        self,
        logical_id: str,
        *,
        overrides: Mapping[str, str | None] | None = None,
        importtime: bool = False,
        snapstart: bool = False,
    ) -> FunctionProcess:
        """A new (not yet started) execution environment; use it as a context manager."""
        return FunctionProcess(
            self.spec(logical_id),
            self.environment(logical_id, overrides),
            self.runtime,
            build=self.build,
            importtime=importtime,
            snapstart=snapstart,
            ports=self.ports,
        )
