"""When the opt-in tests against real AWS run: ``PTC_MCP_AWS_TESTS=1``, credentials and a region for boto3."""

from __future__ import annotations

import os


def aws_skip_reason(what_it_costs: str, extra: str = "agentcore") -> str | None:
    """Why a real-AWS test is skipped here, or ``None`` when it can run."""
    if os.environ.get("PTC_MCP_AWS_TESTS") != "1":
        return f"real-AWS tests are opt-in: set PTC_MCP_AWS_TESTS=1 ({what_it_costs})"
    try:
        import boto3
    except ImportError:
        return f'the {extra} extra is not installed (pip install "ptc-mcp[{extra}]")'
    session = boto3.Session()
    if session.get_credentials() is None:
        return "no AWS credentials in boto3's default chain (environment, ~/.aws, SSO, instance role)"
    if not session.region_name:
        return "no AWS region: set AWS_REGION"
    return None
