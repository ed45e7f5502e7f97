"""template.yaml checks: linters, a self-sufficient `sam build`, and no drift from the code.

The template is the source of truth for routes, triggers and the dashboard, so these tests
read it and compare it with what the handlers register and what the layer emits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from leadlookup import metrics, observability
from leadlookup.adapters.queue import MAX_MESSAGE_BYTES

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
# The nested stacks' templates (the Monitoring application's among them).
TEMPLATES = [TEMPLATE, *sorted((REPO / "templates").glob("*.yaml"))]
FUNCTION_TYPE = "AWS::Serverless::Function"
INITIATION_EVENT = REPO / "events/conversation_initiation/known_caller.json"
SERVICE_DIMENSIONS = ("service", metrics.SERVICE_NAME)

# Runs in a fresh `python3.13 -I -S`: sys.path holds only the standard library until the
# script adds the built function, the built layer's python/ folder and boto3 (what the Lambda
# runtime provides). The system time zone database is hidden so that tzdata must serve.
IMPORT_SCRIPT = """
import sys, zoneinfo
function_dir, layer_dir, boto_dir = sys.argv[1:4]
sys.path[:0] = [function_dir, layer_dir, boto_dir]
zoneinfo.reset_tzpath([])
zoneinfo.ZoneInfo("America/Vancouver")
import app
assert callable(app.lambda_handler), "app.lambda_handler is not callable"
import os, botocore
assert botocore.__file__.startswith(boto_dir), f"botocore from {botocore.__file__}"
built = (function_dir, layer_dir)
uncompiled = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(built)
    and module.__file__.endswith(".py")
    and not os.path.exists(getattr(module, "__cached__", None) or "")
)
assert not uncompiled, f"imported from source without bytecode: {uncompiled}"
"""

INVOKE_SCRIPT = """
import json, sys, zoneinfo
function_dir, layer_dir, boto_dir, event_path, result_path = sys.argv[1:6]
sys.path[:0] = [function_dir, layer_dir, boto_dir]
zoneinfo.reset_tzpath([])
import app

class Context:
    function_name = "ConversationInitiationFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = (
        "arn:aws:lambda:us-east-1:123456789012:function:ConversationInitiationFunction"
    )
    aws_request_id = "infra-test"
    log_group_name = "/aws/lambda/infra-test"
    log_stream_name = "infra-test"

    def get_remaining_time_in_millis(self):
        return 5000

with open(event_path, encoding="utf-8") as f:
    event = json.load(f)
response = app.lambda_handler(event, Context())
with open(result_path, "w", encoding="utf-8") as f:
    json.dump(response, f)
"""


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == FUNCTION_TYPE
    }


def _code_dir(function: dict[str, Any]) -> Path:
    return REPO / function["Properties"]["CodeUri"]


def _events(function: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
    events = function["Properties"].get("Events", {}).values()
    return [event["Properties"] for event in events if event["Type"] == event_type]


def _template_routes(function: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["Method"].upper(), e["Path"]) for e in _events(function, "HttpApi")}


def _layer_build_dir(template: dict[str, Any], build_dir: Path) -> Path:
    layers = [
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    ]
    assert len(layers) == 1, layers
    return build_dir / layers[0] / "python"


def _run_py313(python313: Path, script: str, *args: str | Path, env: dict[str, str]):
    return subprocess.run(
        # -B: Lambda's /var/task and /opt are read-only, so nothing may rely on writing .pyc.
        [str(python313), "-I", "-S", "-B", "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _minimal_env(**extra: str) -> dict[str, str]:
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return {**base, "AWS_DEFAULT_REGION": "us-east-1", **extra}


def _resolve_sub(text: str) -> str:
    """Replace ${Name} and ${Res.Attr} with placeholders and ${!Literal} with ${Literal}."""
    text = re.sub(r"\$\{(?!!)([^}]+)\}", lambda m: m.group(1).replace("::", "-"), text)
    return text.replace("${!", "${")


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    dashboards = [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    assert len(dashboards) == 1, "expected exactly one dashboard"
    body = dashboards[0]["Properties"]["DashboardBody"]
    assert isinstance(body, dict) and set(body) == {"Fn::Sub"}, "DashboardBody must be !Sub"
    return json.loads(_resolve_sub(body["Fn::Sub"]))


def _metric_rows(widget: dict[str, Any]) -> list[list[Any]]:
    return widget.get("properties", {}).get("metrics", [])


def _split_row(row: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    if row and isinstance(row[-1], dict):
        return row[:-1], row[-1]
    return row, {}


def _custom_metrics_graphed(dashboard: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    graphed = []
    for widget in dashboard["widgets"]:
        for row in _metric_rows(widget):
            fields, _ = _split_row(row)
            if fields and fields[0] == metrics.NAMESPACE:
                assert "." not in fields, f"spell custom metrics out in full: {row}"
                graphed.append((fields[1], tuple(fields[2:])))
    return graphed


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return [props]
    return [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]


# ------------------------------------------------------------------------- linters


def test_cfn_lint_passes(cfn_lint: Path) -> None:
    result = subprocess.run(
        [str(cfn_lint), *map(str, TEMPLATES)], cwd=REPO, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes(sam_cli: str, sam_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sam_cli, "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=REPO,
        env=sam_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_suppressions_are_explained(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()

    unexplained = [
        number
        for number, line in enumerate(lines, start=1)
        if "ignore_checks" in line
        and not any(p.strip().startswith("#") for p in lines[max(0, number - 5) : number - 1])
    ]

    assert not unexplained, f"cfn-lint suppressions without a comment at lines {unexplained}"


# ------------------------------------------------------------------------- sam build


def test_built_handlers_import_with_only_stdlib_layer_and_boto3(
    template: dict[str, Any], sam_build: Path, python313: Path, boto3_py313: Path
) -> None:
    layer_dir = _layer_build_dir(template, sam_build)
    failures = {}

    for name in _functions(template):
        result = _run_py313(
            python313,
            IMPORT_SCRIPT,
            sam_build / name,
            layer_dir,
            boto3_py313,
            env=_minimal_env(
                POWERTOOLS_SERVICE_NAME=metrics.SERVICE_NAME,
                POWERTOOLS_METRICS_NAMESPACE=metrics.NAMESPACE,
            ),
        )
        if result.returncode != 0:
            failures[name] = result.stderr[-3000:]

    assert not failures, "\n\n".join(f"{name}:\n{err}" for name, err in failures.items())


def test_build_ships_unchecked_hash_bytecode_for_every_module(
    template: dict[str, Any], sam_build: Path, python313: Path
) -> None:
    magic = bytes.fromhex(
        _run_py313(
            python313, "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())", env={}
        ).stdout.strip()
    )
    roots = [_layer_build_dir(template, sam_build)] + [sam_build / n for n in _functions(template)]
    sources = [path for root in roots for path in root.rglob("*.py")]
    bad = []

    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        header = pyc.read_bytes()[:8] if pyc.exists() else b""
        # PEP 552: flags 0b01 = hash-based and not checked against the source.
        if header[:4] != magic or int.from_bytes(header[4:8], "little") != 1:
            bad.append(str(source.relative_to(sam_build)))

    assert len(sources) > 500, f"only {len(sources)} modules in the build"
    assert not bad, f"{len(bad)} modules without unchecked-hash 3.13 bytecode: {bad[:20]}"


def test_built_layer_leaves_boto3_and_its_dependencies_to_the_runtime(
    template: dict[str, Any], sam_build: Path
) -> None:
    layer = _layer_build_dir(template, sam_build)

    bundled = sorted(
        path.name
        for path in layer.iterdir()
        if path.name.split("-")[0] in {"boto3", "botocore", "s3transfer", "urllib3"}
    )

    assert (layer / "leadlookup" / "__init__.py").exists()
    assert (layer / "aws_xray_sdk").is_dir(), "the tracer's X-Ray SDK is still needed"
    assert not bundled, f"the layer bundles what the runtime provides: {bundled}"


def test_built_initiation_handler_answers_degraded_without_database_or_redis(
    template: dict[str, Any],
    sam_build: Path,
    python313: Path,
    boto3_py313: Path,
    tmp_path: Path,
) -> None:
    assert INITIATION_EVENT.exists(), f"missing sample event {INITIATION_EVENT}"
    result_path = tmp_path / "response.json"
    env = _minimal_env(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        REDIS_URL="redis://127.0.0.1:1",
        INITIATION_WEBHOOK_SECRET="test-initiation-secret",
        INITIATION_DEADLINE_MS="1500",
        POWERTOOLS_SERVICE_NAME=metrics.SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE=metrics.NAMESPACE,
        POWERTOOLS_TRACE_DISABLED="1",
    )

    result = _run_py313(
        python313,
        INVOKE_SCRIPT,
        sam_build / "ConversationInitiationFunction",
        _layer_build_dir(template, sam_build),
        boto3_py313,
        INITIATION_EVENT,
        result_path,
        env=env,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    response = json.loads(result_path.read_text(encoding="utf-8"))
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["type"] == "conversation_initiation_client_data"
    assert body["dynamic_variables"]["lead_id"] == ""
    assert all(isinstance(v, str) for v in body["dynamic_variables"].values())


# ------------------------------------------------------------------------- dashboard drift


def test_monitoring_gets_each_name_from_the_parent_resource_it_is_named_after(
    template: dict[str, Any], monitoring: dict[str, Any]
) -> None:
    resources = template["Resources"]
    app = resources["Monitoring"]["Properties"]
    passed = app["Parameters"]

    assert app["Location"] == "templates/monitoring.yaml"
    assert set(passed) == set(monitoring["Parameters"])
    assert passed.pop("StackName") == {"Ref": "AWS::StackName"}
    assert passed.pop("AlarmTopicArn") == {"Ref": "AlarmTopicArn"}
    for name, value in passed.items():
        queue = resources[name]["Type"] == "AWS::SQS::Queue"
        assert value == ({"Fn::GetAtt": [name, "QueueName"]} if queue else {"Ref": name}), name


def test_dashboard_graphs_exactly_the_metrics_the_layer_defines(
    monitoring: dict[str, Any],
) -> None:
    graphed = _custom_metrics_graphed(_dashboard(monitoring))

    assert {name for name, _ in graphed} == set(metrics.ALL_METRICS)
    assert {dims for _, dims in graphed} == {SERVICE_DIMENSIONS}


def test_dashboard_has_a_hit_rate_expression_per_cache(monitoring: dict[str, Any]) -> None:
    rate_inputs: set[str] = set()

    for widget in _dashboard(monitoring)["widgets"]:
        ids = {}
        expressions = []
        for row in _metric_rows(widget):
            fields, options = _split_row(row)
            if "expression" in options:
                expressions.append(options["expression"])
            elif fields and fields[0] == metrics.NAMESPACE and "id" in options:
                ids[options["id"]] = fields[1]
        for expression in expressions:
            tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression))
            rate_inputs |= {ids[token] for token in tokens if token in ids}

    hit_metrics = {metrics.cache_metric(c, metrics.Outcome.HIT) for c in metrics.Cache}
    assert hit_metrics <= rate_inputs


def test_alarms_on_custom_metrics_use_layer_metric_names(monitoring: dict[str, Any]) -> None:
    alarmed = [
        metric
        for resource in monitoring["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for metric in _alarm_metrics(resource)
        if metric.get("Namespace") == metrics.NAMESPACE
    ]

    names = {metric["MetricName"] for metric in alarmed}
    assert names <= set(metrics.ALL_METRICS)
    assert {
        "LeadCacheHit",
        "LeadCacheError",
        metrics.CACHE_INVALIDATION_FAILED,
        metrics.INITIATION_DEGRADED,
    } <= names
    for metric in alarmed:
        dims = tuple(x for d in metric["Dimensions"] for x in (d["Name"], d["Value"]))
        assert dims == SERVICE_DIMENSIONS, metric


def test_functions_share_one_service_name_and_namespace_set_in_globals(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Powertools' variables, set once for every function; the layer's defaults (local runs)
    # and the dashboard's namespace and dimension are the same names.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    overrides = [
        name
        for name, function in _functions(template).items()
        if {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
        & set(function["Properties"].get("Environment", {}).get("Variables", {}))
    ]

    assert variables["POWERTOOLS_SERVICE_NAME"] == metrics.SERVICE_NAME
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == metrics.NAMESPACE
    assert overrides == []
    # And the layer obeys them: Logger, Tracer and the EMF writer alike.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "from-the-template")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FromTheTemplate")
    assert observability.service_name() == "from-the-template"
    config = observability.EmbeddedMetrics().config
    assert (config.namespace, config.service) == ("FromTheTemplate", "from-the-template")
    # The Logger was built at import, before these changed, from the same variable.
    assert observability.logger.service == metrics.SERVICE_NAME


def test_globals_set_json_logs_and_their_levels_for_every_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What deploys: the SAM transform merges Globals' LoggingConfig with each function's own
    # log group, and its variables with each function's.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    source = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    for resource in source["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = "s3://bucket/key"  # what `sam validate` substitutes too
    deployed = transform(source, {}, _NoManagedPolicies())
    functions = {
        name: resource["Properties"]
        for name, resource in deployed["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }

    assert len(functions) >= 9
    for name, properties in functions.items():
        logging_config = properties["LoggingConfig"]
        assert {k: v for k, v in logging_config.items() if k != "LogGroup"} == {
            "LogFormat": "JSON",
            "ApplicationLogLevel": "INFO",
            "SystemLogLevel": "INFO",
        }, name
        assert "LogGroup" in logging_config, name
        variables = properties["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == metrics.SERVICE_NAME, name
        # One log level: ApplicationLogLevel (AWS_LAMBDA_LOG_LEVEL), which Powertools obeys first.
        assert "POWERTOOLS_LOG_LEVEL" not in variables, name


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


# ------------------------------------------------------------------------- routes and triggers


def _load_handler_module(code_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", metrics.SERVICE_NAME)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", metrics.NAMESPACE)
    monkeypatch.syspath_prepend(str(code_dir))
    module_name = f"infra_handler_{code_dir.name}"
    spec = importlib.util.spec_from_file_location(module_name, code_dir / "app.py")
    assert spec and spec.loader, f"cannot load {code_dir / 'app.py'}"
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def _handler_routes(module: Any) -> set[tuple[str, str]]:
    route = getattr(module, "ROUTE", None)
    if route is not None:  # a one-route handler without a resolver (http.single_route)
        return {route}
    routes_served = getattr(module, "ROUTES", None)
    if routes_served is not None:  # a handler that routes by hand (the console's files)
        return set(routes_served)
    resolver = getattr(module, "app", None)
    if not isinstance(resolver, ApiGatewayResolver):
        return set()
    routes = resolver._static_routes + resolver._dynamic_routes
    return {(route.method.upper(), re.sub(r"<(\w+)>", r"{\1}", route.path)) for route in routes}


@pytest.mark.parametrize(
    "function_name",
    [
        "ConversationInitiationFunction",
        "SmsWebhookFunction",
        "SmsProcessorFunction",
        "LeadUpdateFunction",
        "PostCallProcessorFunction",
        "CacheAdminFunction",
        "MigrateFunction",
        "ConsoleFunction",
    ],
)
def test_function_routes_match_template(
    template: dict[str, Any], function_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = _functions(template)[function_name]
    code_dir = _code_dir(function)
    assert (code_dir / "app.py").exists(), f"missing handler {code_dir / 'app.py'}"

    module = _load_handler_module(code_dir, monkeypatch)

    assert callable(module.lambda_handler)
    assert _handler_routes(module) == _template_routes(function)


def test_template_has_the_functions_of_the_design(template: dict[str, Any]) -> None:
    functions = _functions(template)

    assert {name: f["Properties"]["CodeUri"] for name, f in functions.items()} == {
        "ConversationInitiationFunction": "functions/conversation_initiation/",
        "SmsWebhookFunction": "functions/sms_webhook/",
        "SmsProcessorFunction": "functions/sms_processor/",
        "LeadUpdateFunction": "functions/lead_update/",
        "PostCallWebhookFunction": "functions/post_call_webhook/",
        "PostCallProcessorFunction": "functions/post_call_processor/",
        "CacheAdminFunction": "functions/cache_admin/",
        "MigrateFunction": "functions/migrate/",
        "SmsResponderFunction": "functions/sms_responder/",
        "SmsOutcomeFunction": "functions/sms_outcome/",
        "OutboundCallFunction": "functions/outbound_call/",
        "ConsoleFunction": "functions/console/",
    }
    globals_ = template["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Architectures"]) == ("python3.13", ["arm64"])
    assert globals_["Handler"] == "app.lambda_handler"
    assert globals_["Tracing"] == "Active"


def test_leads_routes_need_a_staff_token_and_webhooks_do_not(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    routes = [
        event
        for function in _functions(template).values()
        for event in _events(function, "HttpApi")
    ]

    assert "EnableIamAuthorizer" not in api["Auth"]
    jwt = api["Auth"]["Authorizers"]["StaffAuthorizer"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert jwt["JwtConfiguration"]["issuer"] == {
        "Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${StaffUserPool}"
    }
    assert jwt["JwtConfiguration"]["audience"] == [
        {"Ref": "StaffConsoleClient"},
        {"Ref": "StaffMachineClient"},
    ]
    assert {r["Path"] for r in routes if r["Path"].startswith("/leads")} >= {
        "/leads",
        "/leads/{lead_id}",
        "/leads/{lead_id}/messages",
        "/leads/{lead_id}/timeline",
        "/leads/{lead_id}/calls",
    }
    for route in routes:
        authorizer = route.get("Auth", {}).get("Authorizer", "NONE")
        expected = "StaffAuthorizer" if route["Path"].startswith("/leads") else "NONE"
        assert authorizer == expected, route
        assert route["ApiId"] == {"Ref": "HttpApi"}, route


def test_staff_sign_in_is_admin_created_strong_mfa_capable_and_pkce_for_the_console(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    pool = resources["StaffUserPool"]
    console = resources["StaffConsoleClient"]["Properties"]
    machine = resources["StaffMachineClient"]["Properties"]
    password = pool["Properties"]["Policies"]["PasswordPolicy"]

    assert pool["DeletionPolicy"] == pool["UpdateReplacePolicy"] == "Retain"
    assert pool["Properties"]["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert password["MinimumLength"] >= 12
    assert all(password[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers"))
    assert pool["Properties"]["MfaConfiguration"] == "OPTIONAL"
    assert pool["Properties"]["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    # The console is a public client: authorization code (with PKCE), no secret.
    assert (console["GenerateSecret"], console["AllowedOAuthFlows"]) == (False, ["code"])
    assert console["CallbackURLs"] == console["LogoutURLs"]
    assert machine["AllowedOAuthFlows"] == ["client_credentials"]
    assert machine["AllowedOAuthScopes"] == [{"Fn::Sub": "${StaffApiScopes}/all-stores"}]
    assert resources["StaffApiScopes"]["Properties"]["Identifier"] == "leadlookup"
    assert resources["StaffOwnersGroup"]["Properties"]["GroupName"] == "owners"
    assert {"SignInUrl", "StaffUserPoolId", "StaffConsoleClientId"} <= set(template["Outputs"])


def test_sms_processor_consumes_the_fifo_queue_with_partial_batch_failures(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    processor = resources["SmsProcessorFunction"]
    queue = resources["InboundSmsQueue"]["Properties"]

    (sqs,) = _events(processor, "SQS")

    assert sqs["Queue"] == {"Fn::GetAtt": ["InboundSmsQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    dlq_name = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert resources[dlq_name]["Properties"]["FifoQueue"] is True
    webhook_env = resources["SmsWebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert webhook_env["INBOUND_SMS_QUEUE_URL"] == {"Ref": "InboundSmsQueue"}


def test_post_call_processor_consumes_its_queue_with_partial_batch_failures(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    processor = resources["PostCallProcessorFunction"]["Properties"]
    queue = resources["PostCallQueue"]["Properties"]

    (sqs,) = _events(resources["PostCallProcessorFunction"], "SQS")

    assert sqs["Queue"] == {"Fn::GetAtt": ["PostCallQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "FifoQueue" not in queue  # standard: conversation_id deduplicates in the database
    assert queue["MaximumMessageSize"] == MAX_MESSAGE_BYTES
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["VisibilityTimeout"] >= 6 * processor["Timeout"]
    dlq_name = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert resources[dlq_name]["Type"] == "AWS::SQS::Queue"
    assert "VpcConfig" in processor
    # Its own role: receive/delete on its queue only, and the follow-up texts it may queue.
    role = resources[processor["Role"]["Fn::GetAtt"][0]]["Properties"]
    statements = {
        st["Sid"]: st for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]
    }
    assert statements["PostCallQueueOnly"]["Resource"] == {"Fn::GetAtt": ["PostCallQueue", "Arn"]}
    assert statements["FollowUpJobs"] == {
        "Sid": "FollowUpJobs",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": ["ReplyQueue", "Arn"]},
    }
    assert processor["Environment"]["Variables"]["REPLY_QUEUE_URL"] == {"Ref": "ReplyQueue"}


def test_only_the_post_call_webhook_may_send_to_the_post_call_queue(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    granted = {
        name
        for name, f in _functions(template).items()
        if "PostCallQueue" in json.dumps(f["Properties"].get("Policies", []))
    }
    webhook = resources["PostCallWebhookFunction"]["Properties"]
    send = {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["PostCallQueue", "QueueName"]}}}

    assert granted == {"PostCallWebhookFunction"}
    assert send in webhook["Policies"]
    assert webhook["Environment"]["Variables"]["POST_CALL_QUEUE_URL"] == {"Ref": "PostCallQueue"}
    # Outside the VPC, like the SMS webhook: it reaches SQS without the VPC's endpoint, whose
    # policy lets nothing but reply and call jobs through.
    assert "VpcConfig" not in webhook
    (statement,) = resources["SqsEndpoint"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Fn::GetAtt": ["PostCallQueue", "Arn"]} not in statement["Resource"]


@pytest.mark.parametrize(
    ("alarm", "queue"),
    [("PostCallAgeAlarm", "PostCallQueue"), ("PostCallDeadLetterAlarm", "PostCallDeadLetterQueue")],
)
def test_post_call_queues_are_alarmed_and_graphed(
    template: dict[str, Any], monitoring: dict[str, Any], alarm: str, queue: str
) -> None:
    props = monitoring["Resources"][alarm]["Properties"]
    body = monitoring["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    passed = template["Resources"]["Monitoring"]["Properties"]["Parameters"]

    assert props["Namespace"] == "AWS/SQS"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Ref": queue}}]
    assert passed[queue] == {"Fn::GetAtt": [queue, "QueueName"]}
    assert f'"QueueName", "${{{queue}}}"' in body
    assert '"${PostCallProcessorFunction}"' in body


def test_cache_admin_runs_the_daily_purge(template: dict[str, Any]) -> None:
    admin = template["Resources"]["CacheAdminFunction"]

    (schedule,) = _events(admin, "Schedule")

    assert json.loads(schedule["Input"]) == {"action": "purge"}
    assert schedule["Schedule"].startswith(("cron(", "rate(1 day)"))


def test_only_the_declared_triggers_exist(template: dict[str, Any]) -> None:
    kinds = {
        name: sorted({event["Type"] for event in f["Properties"].get("Events", {}).values()})
        for name, f in _functions(template).items()
    }

    assert kinds == {
        "ConversationInitiationFunction": ["HttpApi"],
        "SmsWebhookFunction": ["HttpApi"],
        "SmsProcessorFunction": ["SQS"],
        "LeadUpdateFunction": ["HttpApi"],
        "PostCallWebhookFunction": ["HttpApi"],
        "PostCallProcessorFunction": ["SQS"],
        "CacheAdminFunction": ["Schedule"],
        "MigrateFunction": [],
        "SmsResponderFunction": ["SQS"],
        "SmsOutcomeFunction": ["SQS"],
        "OutboundCallFunction": ["SQS"],
        "ConsoleFunction": ["HttpApi"],
    }


def test_migrations_rerun_when_the_layer_changes(template: dict[str, Any]) -> None:
    (migrations,) = [
        r for r in template["Resources"].values() if r["Type"] == "Custom::DatabaseMigrations"
    ]
    props = migrations["Properties"]

    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert props["MigrationsHash"] == {"Ref": "LeadLookupLayer"}
    assert 0 < props["ServiceTimeout"] <= 3600


def test_template_failed_scheduled_purge_raises_an_alarm(
    template: dict[str, Any], monitoring: dict[str, Any]
) -> None:
    resources = template["Resources"]
    schedules = [
        event["Properties"]
        for event in resources["CacheAdminFunction"]["Properties"]["Events"].values()
        if event["Type"] == "Schedule"
    ]
    passed = resources["Monitoring"]["Properties"]["Parameters"]
    alarms = [
        r["Properties"]
        for r in monitoring["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("Namespace") == "AWS/Lambda"
        and r["Properties"].get("MetricName") == "Errors"
        and r["Properties"].get("Dimensions")
        == [{"Name": "FunctionName", "Value": {"Ref": "CacheAdminFunction"}}]
    ]

    assert [json.loads(s["Input"]) for s in schedules] == [{"action": "purge"}]
    assert passed["CacheAdminFunction"] == {"Ref": "CacheAdminFunction"}
    assert len(alarms) == 1
    assert (alarms[0]["Threshold"], alarms[0]["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarms[0]["AlarmActions"] == alarms[0]["OKActions"]


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("", True),
        ("https://api.example.com", True),
        ("https://api.example.com:8443", True),
        ("https://api.example.com/voice", True),  # a custom domain's API mapping path
        ("https://api.example.com/v1/voice", True),
        ("https://api.example.com/voice/", False),  # rawPath starts with "/"
        ("http://api.example.com/voice", False),
        ("https://api.example.com/voice?x=1", False),
    ],
)
def test_template_public_base_url_accepts_an_origin_with_a_base_path(
    template: dict[str, Any], value: str, allowed: bool
) -> None:
    pattern = template["Parameters"]["PublicBaseUrl"]["AllowedPattern"]

    assert (re.fullmatch(pattern, value) is not None) is allowed
