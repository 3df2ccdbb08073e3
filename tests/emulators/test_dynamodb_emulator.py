"""The DynamoDB emulator answers real boto3 the way DynamoDB does for the operations the session map uses."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from ptc_mcp.emulators.dynamodb import running_dynamodb_emulator
from ptc_mcp.remote.stores.dynamodb_map import create_session_table, dynamodb_client
from tests.remote.helpers import FAKE_AWS

pytestmark = pytest.mark.anyio


@pytest.fixture
async def table(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    async with running_dynamodb_emulator() as (endpoint, _emulator):
        client = dynamodb_client(region="us-east-1", endpoint_url=endpoint, max_attempts=1)
        await create_session_table(client, "t")
        yield client


async def call(client: Any, operation: str, **request: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: getattr(client, operation)(TableName="t", **request))


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


async def test_a_failed_condition_is_conditional_check_failed_and_changes_nothing(table: Any) -> None:
    key = {"pk": {"S": "a"}}
    await call(table, "put_item", Item={**key, "n": {"N": "1"}})
    with pytest.raises(ClientError) as refused:
        await call(
            table,
            "update_item",
            Key=key,
            UpdateExpression="SET #n = #n + :one",
            ConditionExpression="#n > :one OR attribute_exists(#missing)",
            ExpressionAttributeNames={"#n": "n", "#missing": "m"},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    assert code(refused.value) == "ConditionalCheckFailedException"
    answer = await call(
        table,
        "update_item",
        Key=key,
        UpdateExpression="SET #n = #n + :one REMOVE #gone",
        ConditionExpression="NOT (#n > :one) AND attribute_not_exists(#gone)",
        ExpressionAttributeNames={"#n": "n", "#gone": "gone"},
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    assert answer["Attributes"] == {"n": {"N": "2"}}


async def test_names_and_values_no_expression_uses_are_refused_as_dynamodb_does(table: Any) -> None:
    with pytest.raises(ClientError) as refused:
        await call(
            table,
            "delete_item",
            Key={"pk": {"S": "a"}},
            ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#pk": "pk", "#extra": "x"},
        )
    assert code(refused.value) == "ValidationException"
    assert "#extra" in str(refused.value)


async def test_scan_pages_and_filters(table: Any) -> None:
    for index in range(5):
        await call(table, "put_item", Item={"pk": {"S": f"k{index}"}, "n": {"N": str(index)}})
    found: list[str] = []
    start: dict[str, Any] | None = None
    pages = 0
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = await call(
            table,
            "scan",
            Limit=2,
            FilterExpression="#n >= :two",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":two": {"N": "2"}},
            **extra,
        )
        pages += 1
        found += [item["pk"]["S"] for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert found == ["k2", "k3", "k4"] and pages == 3


async def test_items_past_their_ttl_are_gone(table: Any) -> None:
    await call(table, "put_item", Item={"pk": {"S": "old"}, "expires_at": {"N": "1"}})
    await call(table, "put_item", Item={"pk": {"S": "new"}, "expires_at": {"N": "99999999999"}})
    assert "Item" not in await call(table, "get_item", Key={"pk": {"S": "old"}})
    assert "Item" in await call(table, "get_item", Key={"pk": {"S": "new"}})


async def test_the_emulate_command_serves_it_on_loopback_and_refuses_other_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    command = [sys.executable, "-m", "ptc_mcp", "emulate", "dynamodb", "--port", "0"]
    refused = await anyio.run_process([*command, "--host", "0.0.0.0"], check=False)
    assert refused.returncode == 2 and b"loopback" in refused.stderr
    async with await anyio.open_process(command) as process:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(60):
            while b"endpoint_url=" not in seen:
                seen += await process.stderr.receive()
        endpoint = re.search(rb"endpoint_url='([^']+)'", seen)
        assert endpoint is not None
        client = dynamodb_client(region="us-east-1", endpoint_url=endpoint.group(1).decode())
        created = await create_session_table(client, "served")
        process.terminate()
    assert created["created"] is True
