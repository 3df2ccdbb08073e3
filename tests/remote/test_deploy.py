"""The ECS templates: valid by cfn-lint, least-privilege IAM, and the config they hand ptc-mcp is a valid config."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ptc_mcp.config import parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as {"Fn::X": value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    return document


def render_sub(template: str, values: dict[str, str]) -> str:
    """Fn::Sub: ${Name} from ``values``, ${!Literal} to ${Literal}."""
    rendered = re.sub(r"\$\{(?!!)([^}]+)\}", lambda m: values[m.group(1)], template)
    return rendered.replace("${!", "${")


def test_there_are_templates_for_fargate_with_agentcore_and_ec2_with_sibling_containers() -> None:
    assert {path.name for path in TEMPLATES} >= {"ecs-fargate-agentcore.yaml", "ecs-ec2-docker.yaml"}


@pytest.mark.skipif(importlib.util.find_spec("cfnlint") is None, reason="cfn-lint is not installed (dev extra)")
def test_cfn_lint_passes() -> None:
    linted = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", *map(str, TEMPLATES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_service_is_reached_only_through_mcp_paths_and_checked_by_readyz(path: Path) -> None:
    resources = load(path)["Resources"]
    assert resources["TargetGroup"]["Properties"]["HealthCheckPath"] == "/readyz"
    listener = resources["HttpsListener"]["Properties"]
    assert listener["Protocol"] == "HTTPS" and listener["DefaultActions"][0]["Type"] == "fixed-response"
    paths = resources["McpRule"]["Properties"]["Conditions"][0]["PathPatternConfig"]["Values"]
    assert "/metrics" not in paths and "/mcp" in paths  # metrics stay inside the VPC
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["ReadonlyRootFilesystem"] is True
    assert not container["User"].startswith("0")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_iam_grants_no_wildcard_actions_or_resources(path: Path) -> None:
    for name, resource in load(path)["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all("*" not in action for action in actions), (name, actions)
                assert statement.get("Resource") != "*", name


def test_the_fargate_task_may_drive_only_code_interpreter_sessions() -> None:
    role = load(DEPLOY / "ecs-fargate-agentcore.yaml")["Resources"]["TaskRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    actions = sorted(a for s in statements for a in s["Action"])
    assert actions == sorted(
        [
            "bedrock-agentcore:GetCodeInterpreterSession",
            "bedrock-agentcore:InvokeCodeInterpreter",
            "bedrock-agentcore:StartCodeInterpreterSession",
            "bedrock-agentcore:StopCodeInterpreterSession",
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",
        ]
    )
    table_statements = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    assert [s["Resource"] for s in table_statements] == [{"Fn::GetAtt": "SessionTable.Arn"}]  # that table only


def test_the_fargate_session_map_is_an_on_demand_dynamodb_table_with_ttl_and_throttle_alarms() -> None:
    resources = load(DEPLOY / "ecs-fargate-agentcore.yaml")["Resources"]
    assert not [name for name, r in resources.items() if r["Type"].startswith("AWS::EFS::")]  # EFS left
    table = resources["SessionTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    watched = {
        r["Properties"]["MetricName"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == "AWS/DynamoDB"
    }
    assert "ThrottledRequests" in watched


def test_the_template_table_matches_what_the_create_table_command_makes() -> None:
    from ptc_mcp.remote.stores.dynamodb_map import KEY, TTL_ATTRIBUTE

    table = load(DEPLOY / "ecs-fargate-agentcore.yaml")["Resources"]["SessionTable"]["Properties"]
    assert table["KeySchema"][0]["AttributeName"] == KEY
    assert table["TimeToLiveSpecification"]["AttributeName"] == TTL_ATTRIBUTE


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_config_the_task_gets_is_a_valid_ptc_mcp_config(path: Path) -> None:
    container = load(path)["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    value = next(env["Value"] for env in container["Environment"] if env["Name"] == "PTC_MCP_CONFIG")
    sub = value["Fn::Sub"]
    text = sub[0] if isinstance(sub, list) else sub
    values = {
        "AWS::Region": "us-east-1",
        "Interpreter": "aws.codeinterpreter.v1",
        "MaxConcurrentRuns": "16",
        "PublicHostName": "mcp.example.com",
        "ShutdownGraceSeconds": "60",
        "SessionTable": "ptc-mcp-SessionTable-ABC123",
        "SessionLeaseSeconds": "10",
        "SandboxImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ptc-mcp-sandbox:1",
    }
    config = parse_config(json.loads(render_sub(text, values)), environ={"PTC_MCP_AUTH_TOKEN": "t" * 32})
    assert config.remote.auth.mode == "bearer"
    assert config.remote.allowed_hosts == ["mcp.example.com"]
    if config.sandbox.kind == "agentcore":
        assert config.remote.stateless_http and config.remote.session_map.kind == "dynamodb"
        assert config.remote.session_map.table == "ptc-mcp-SessionTable-ABC123"
    else:
        assert config.sandbox.kind == "docker"
