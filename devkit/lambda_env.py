"""Load a function of template.yaml the way Lambda does: its handler, layers and context.

Used by the local runner and `python -m devkit.cli invoke`. Only the parts of the SAM
template a local run needs are read (functions, their code, handler, memory, timeout and
events, the HTTP API's authorizers); intrinsic functions are kept as plain data, never
evaluated.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# The dashboard and the alarms: a nested application of template.yaml (resource Monitoring).
MONITORING_TEMPLATE = ROOT / "templates" / "monitoring.yaml"

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"
# What Lambda uses when the template does not say.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")


class TemplateError(ValueError):
    """The template lacks something a local run needs; the message names it."""


# -- YAML ---------------------------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short tags (`!Ref X`) as their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    # `!GetAtt Res.Attr` is the one short form whose scalar differs from the long form's list.
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data; intrinsic functions become ``{"Fn::X": ...}`` dicts."""
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return data


# -- the template's functions -------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event: ``METHOD /path/{param}`` (``ANY`` and ``$default`` included)."""

    function: str
    event: str
    method: str
    path: str
    authorizer: str | None = None
    payload_format: str = "2.0"
    # The authorizer is a JWT authorizer of the HTTP API (``JwtConfiguration``).
    jwt: bool = False

    @property
    def route_key(self) -> str:
        """The API Gateway route key, e.g. ``GET /leads/{lead_id}``."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def iam(self) -> bool:
        """Whether callers must sign with SigV4 (``AWS_IAM``)."""
        return (self.authorizer or "").upper() == "AWS_IAM"


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the template, with what Lambda would know about it."""

    logical_id: str
    code_dir: Path
    handler: str
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    layer_dirs: tuple[Path, ...] = ()
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: tuple[HttpRoute, ...] = ()
    # As written in the template (intrinsics unresolved); informative only, never applied:
    # it names the AWS resources (RDS Proxy, a cluster-mode TLS cache), not the local ones.
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def function_name(self) -> str:
        """The name `sam local` gives the function: its logical id."""
        return self.logical_id

    @property
    def module_file(self) -> Path:
        """The handler's source file, e.g. ``functions/x/app.py`` for ``app.lambda_handler``."""
        module, _ = self._handler_parts()
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")

    @property
    def handler_name(self) -> str:
        """The handler's attribute name in its module."""
        return self._handler_parts()[1]

    def _handler_parts(self) -> tuple[str, str]:
        module, sep, name = self.handler.rpartition(".")
        if not sep or not module or not name:
            raise TemplateError(
                f"{self.logical_id}: Handler {self.handler!r} is not module.function"
            )
        return module, name


def functions(template: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, FunctionSpec]:
    """Every Lambda function of the template whose code is a local folder, by logical id."""
    template = load_template() if template is None else template
    resources: dict[str, Any] = template["Resources"]
    globals_ = template.get("Globals") or {}
    fn_globals: dict[str, Any] = globals_.get("Function") or {}
    api_globals: dict[str, Any] = globals_.get("HttpApi") or {}
    found: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") not in FUNCTION_TYPES:
            continue
        props: dict[str, Any] = {**fn_globals, **(resource.get("Properties") or {})}
        code_uri = props.get("CodeUri", props.get("Code"))
        handler = props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            continue  # inline or S3 code: nothing to run locally
        events = {
            name: event
            for name, event in (props.get("Events") or {}).items()
            if isinstance(event, dict)
        }
        env = {**_variables(fn_globals), **_variables(resource.get("Properties") or {})}
        found[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(root / code_uri).resolve(),
            handler=handler,
            memory_mb=_int(props.get("MemorySize"), DEFAULT_MEMORY_MB),
            timeout_s=_int(props.get("Timeout"), DEFAULT_TIMEOUT_S),
            layer_dirs=_layer_dirs(props.get("Layers") or [], resources, root),
            events=events,
            routes=tuple(_routes(logical_id, events, resources, api_globals)),
            environment=env,
        )
    return found


def function(logical_id: str, template: dict[str, Any] | None = None) -> FunctionSpec:
    """One function by logical id; the error lists the ones there are."""
    found = functions(template)
    if logical_id not in found:
        known = ", ".join(sorted(found)) or "none"
        raise TemplateError(f"no function {logical_id!r} in template.yaml (there are: {known})")
    return found[logical_id]


def http_routes(template: dict[str, Any] | None = None) -> list[HttpRoute]:
    """Every HttpApi route of every function."""
    return [route for spec in functions(template).values() for route in spec.routes]


def _variables(props: dict[str, Any]) -> dict[str, Any]:
    env = props.get("Environment") or {}
    variables = env.get("Variables") if isinstance(env, dict) else None
    return dict(variables) if isinstance(variables, dict) else {}


def _int(value: Any, default: int) -> int:
    # A parameter reference (`!Ref Memory`) cannot be resolved locally: use Lambda's default.
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _layer_dirs(layers: Any, resources: dict[str, Any], root: Path) -> tuple[Path, ...]:
    dirs: list[Path] = []
    for layer in layers if isinstance(layers, list) else []:
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        resource = resources.get(ref) if isinstance(ref, str) else None
        if not isinstance(resource, dict) or resource.get("Type") not in LAYER_TYPES:
            continue  # a layer ARN from elsewhere: its code is not in this repository
        props = resource.get("Properties") or {}
        content = props.get("ContentUri", props.get("Content"))
        if isinstance(content, str):
            dirs.append(_layer_import_root((root / content).resolve(), resource))
    return tuple(dirs)


def _layer_import_root(content: Path, resource: dict[str, Any]) -> Path:
    # `BuildMethod: pythonX.Y` puts ContentUri's packages under python/ (on Lambda's path);
    # an unbuilt layer may hold a python/ folder itself.
    nested = content / "python"
    build_method = str((resource.get("Metadata") or {}).get("BuildMethod") or "")
    if not build_method.startswith("python") and nested.is_dir():
        return nested
    return content


def _routes(
    logical_id: str,
    events: dict[str, dict[str, Any]],
    resources: dict[str, Any],
    api_globals: dict[str, Any],
) -> list[HttpRoute]:
    routes: list[HttpRoute] = []
    for name, event in events.items():
        if event.get("Type") != "HttpApi":
            continue
        props: dict[str, Any] = event.get("Properties") or {}
        path = props.get("Path")
        method = props.get("Method")
        authorizer = _authorizer(props, resources, api_globals)
        routes.append(
            HttpRoute(
                function=logical_id,
                event=name,
                method=str(method).upper() if method else "ANY",
                path=str(path) if path else "$default",
                authorizer=authorizer,
                payload_format=str(props.get("PayloadFormatVersion") or "2.0"),
                jwt=_is_jwt(authorizer, props, resources, api_globals),
            )
        )
    return routes


def _is_jwt(
    name: str | None,
    props: dict[str, Any],
    resources: dict[str, Any],
    api_globals: dict[str, Any],
) -> bool:
    """Whether the authorizer ``name`` is one of the API's (or the globals') JWT authorizers."""
    if name is None:
        return False
    api_ref = props.get("ApiId")
    api_name = api_ref.get("Ref") if isinstance(api_ref, dict) else None
    api = resources.get(api_name) if isinstance(api_name, str) else None
    for auth in (((api or {}).get("Properties") or {}).get("Auth"), api_globals.get("Auth")):
        authorizers = (auth or {}).get("Authorizers") if isinstance(auth, dict) else None
        found = (authorizers or {}).get(name) if isinstance(authorizers, dict) else None
        if isinstance(found, dict):
            return "JwtConfiguration" in found
    return False


def _authorizer(
    props: dict[str, Any], resources: dict[str, Any], api_globals: dict[str, Any]
) -> str | None:
    """The event's authorizer, else its API's default, else the global default; NONE is none."""
    chosen = (props.get("Auth") or {}).get("Authorizer")
    if chosen is None:
        api_ref = props.get("ApiId")
        api_name = api_ref.get("Ref") if isinstance(api_ref, dict) else None
        api = resources.get(api_name) if isinstance(api_name, str) else None
        api_auth = ((api or {}).get("Properties") or {}).get("Auth") or {}
        chosen = api_auth.get("DefaultAuthorizer")
    if chosen is None:
        chosen = (api_globals.get("Auth") or {}).get("DefaultAuthorizer")
    if not isinstance(chosen, str) or chosen.upper() == "NONE":
        return None
    return chosen


# -- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    """A route that serves a request, with its decoded path parameters."""

    route: HttpRoute
    path_parameters: dict[str, str]


_PARAM = re.compile(r"^\{([A-Za-z0-9_.\-]+)(\+?)\}$")


class Router:
    """Picks the route API Gateway would: most specific path first, then method over ANY."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        self.routes = sorted(routes, key=_specificity)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The route for ``method`` and ``raw_path`` (percent-encoded, no query), or None."""
        segments = raw_path.strip("/").split("/") if raw_path.strip("/") else []
        for route in self.routes:
            if route.method not in (method.upper(), "ANY"):
                continue
            if route.path == "$default":
                return RouteMatch(route, {})
            params = _match_path(route.path, segments)
            if params is not None:
                return RouteMatch(route, {k: unquote(v) for k, v in params.items()})
        return None


def _specificity(route: HttpRoute) -> tuple[int, int, int, int]:
    if route.path == "$default":
        return (2, 0, 0, 1 if route.method == "ANY" else 0)
    parts = route.path.strip("/").split("/")
    greedy = 1 if parts and parts[-1].endswith("+}") else 0
    params = sum(1 for p in parts if _PARAM.match(p))
    # Longer literal prefixes and fewer variables win, as in API Gateway's route selection.
    return (greedy, -len(parts) + params, params, 1 if route.method == "ANY" else 0)


def _match_path(template_path: str, segments: list[str]) -> dict[str, str] | None:
    parts = template_path.strip("/").split("/") if template_path.strip("/") else []
    params: dict[str, str] = {}
    for index, part in enumerate(parts):
        found = _PARAM.match(part)
        if found and found.group(2):  # {proxy+}: the rest of the path, at least one segment
            rest = segments[index:]
            if not rest or rest == [""]:
                return None
            params[found.group(1)] = "/".join(rest)
            return params
        if index >= len(segments):
            return None
        if found:
            if segments[index] == "":
                return None
            params[found.group(1)] = segments[index]
        elif part != segments[index]:
            return None
    return params if len(parts) == len(segments) else None


# -- handlers and the context object -------------------------------------------------------

_import_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}


def load_module(spec: FunctionSpec) -> ModuleType:
    """Import the function's handler module once, as Lambda does on a cold start.

    Each function's module gets a name of its own (every handler file is ``app.py``); its
    layers go on ``sys.path`` like ``/opt/python``, its code folder like ``/var/task``.
    """
    with _import_lock:
        module = _modules.get(spec.logical_id)
        if module is None:
            module = _import(spec)
            _modules[spec.logical_id] = module
    return module


def load_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    """The function's handler (its module imported once, see :func:`load_module`)."""
    handler = getattr(load_module(spec), spec.handler_name, None)
    if not callable(handler):
        raise TemplateError(f"{spec.module_file} has no function {spec.handler_name!r}")
    return handler


def function_for_code(code_dir_name: str, template: dict[str, Any] | None = None) -> FunctionSpec:
    """The template's function whose code is ``functions/<code_dir_name>``."""
    for spec in functions(template).values():
        if spec.code_dir.name == code_dir_name:
            return spec
    raise TemplateError(f"no function in template.yaml has its code in {code_dir_name!r}")


def is_loaded(spec: FunctionSpec) -> bool:
    """Whether the function's handler module is imported (its next invoke is warm)."""
    return spec.logical_id in _modules


def _import(spec: FunctionSpec) -> ModuleType:
    path = spec.module_file
    if not path.is_file():
        raise TemplateError(f"{spec.logical_id}: handler file {path} does not exist")
    for layer in spec.layer_dirs:
        if str(layer) not in sys.path:
            sys.path.append(str(layer))
    name = f"_lambda_{spec.logical_id}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise TemplateError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    # The code folder is importable while the handler imports its siblings, and no longer:
    # every function's folder would otherwise shadow the others' modules of the same name.
    sys.path.insert(0, str(spec.code_dir))
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(spec.code_dir))
    return module


class LambdaContext:
    """The Lambda context object: what Powertools and handlers read of it."""

    function_version = "$LATEST"
    identity = None
    client_context = None

    def __init__(self, spec: FunctionSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.function_name = spec.function_name
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{spec.function_name}"
        )
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = (
            f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        )
        self._clock = clock
        self._deadline = clock() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's configured timeout."""
        return max(0, int((self._deadline - self._clock()) * 1000))


def add_layers_to_path(specs: dict[str, FunctionSpec] | None = None) -> None:
    """Put every layer of the template on ``sys.path`` (``/opt/python`` in Lambda)."""
    for spec in (functions() if specs is None else specs).values():
        for layer in spec.layer_dirs:
            if str(layer) not in sys.path:
                sys.path.append(str(layer))


def invoke(spec: FunctionSpec, event: Any) -> Any:
    """Call the function's handler once with ``event`` and a fresh context."""
    return load_handler(spec)(event, LambdaContext(spec))
