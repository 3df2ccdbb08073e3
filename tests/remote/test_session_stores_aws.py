"""Opt-in: the ``dynamodb`` session map against real Amazon DynamoDB.

Runs only with ``PTC_MCP_AWS_TESTS=1`` and AWS credentials from boto3's default chain (region from ``AWS_REGION``
or the profile). It creates an on-demand table with a random name the way ``ptc-mcp session-map create-table`` does,
runs the lease cycle against it from two map instances (a takeover included), and always deletes the table. IAM:
``dynamodb:CreateTable``, ``DescribeTable``, ``DeleteTable``, ``UpdateTimeToLive``, ``DescribeTimeToLive`` and the
item actions in the Fargate template.
"""

from __future__ import annotations

import secrets

import anyio
import pytest

from tests.aws import aws_skip_reason

pytestmark = [pytest.mark.anyio, pytest.mark.aws]


def _skip_reason() -> str | None:
    return aws_skip_reason("this one creates and deletes a DynamoDB table", extra="dynamodb")


async def test_leases_fencing_and_takeover_work_on_real_dynamodb() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from ptc_mcp.remote.stores.dynamodb_map import DynamoDbSessionMap, create_session_table, dynamodb_client

    table = f"ptc-mcp-test-{secrets.token_hex(4)}"
    client = dynamodb_client(region=None, endpoint_url=None)
    try:
        with anyio.fail_after(300):
            created = await create_session_table(client, table)
        assert created["created"] is True
        first, second = DynamoDbSessionMap(table, client=client), DynamoDbSessionMap(table, client=client)
        await first.create("ptc_handle", "alice")
        held = await first.acquire("ptc_handle", "a", lease_s=1)
        assert held is not None and await second.acquire("ptc_handle", "b", lease_s=60) is None
        with anyio.fail_after(30):
            while (taken := await second.acquire("ptc_handle", "b", lease_s=60)) is None:
                await anyio.sleep(0.2)  # bounded poll: a's lease runs out
        assert taken.record.version == 1 and taken.fence == held.fence + 1  # a takeover counts as a change
        assert await first.release("ptc_handle", "a", held.fence, None) == -1
        assert await second.release("ptc_handle", "b", taken.fence, {"session_id": "s"}) == 2
    finally:
        await anyio.to_thread.run_sync(lambda: client.delete_table(TableName=table))
