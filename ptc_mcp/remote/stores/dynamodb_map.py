"""``DynamoDbSessionMap``: the session map in a DynamoDB table (boto3: the ``dynamodb`` extra).

One item per session; the partition key ``pk`` is the SHA-256 of the handle. The lease is a conditional
``UpdateItem``: free when no ``holder`` is set (released) or when ``lease_until`` has passed (its instance died);
each take bumps the ``fence`` counter, and renewals and releases are conditional on holder and fence. ``expires_at``
is the table's TTL attribute, set to twice the idle limit after each use: a backstop that DynamoDB applies within
days; the reaper (a filtered ``Scan``) expires idle sessions on time and stops their interpreters.

boto3 blocks, so every request runs on a worker thread (``anyio.to_thread``); botocore's standard retry mode retries
throttling and transient errors with exponential backoff and jitter (``max_attempts``). Lease times come from the
instances' clocks (``time.time``): keep them in sync (NTP, as on ECS), well within ``lease_s``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import anyio

from ptc_mcp.errors import ConfigError
from ptc_mcp.remote.session_map import Lease, SessionMapError, SharedRecord, digest

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError('remote.session_map.kind "dynamodb" needs boto3: pip install "ptc-mcp[dynamodb]"') from exc

__all__ = ["DynamoDbSessionMap", "create_session_table", "dynamodb_client"]

_THREADS = 16
"""Worker threads of the map's own: lease renewals must never queue behind a backend's long blocking calls (an
AgentCore step holds a thread of anyio's default pool for up to ``step_wait_s``)."""

KEY = "pk"
TTL_ATTRIBUTE = "expires_at"
_NAMES = {
    "#pk": KEY,
    "#owner": "owner",
    "#state": "state",
    "#version": "version",
    "#fence": "fence",
    "#holder": "holder",
    "#until": "lease_until",
    "#last": "last_used",
    "#expires": TTL_ATTRIBUTE,
}


def dynamodb_client(
    *, region: str | None, endpoint_url: str | None, max_attempts: int = 8, timeout_s: float = 10.0
) -> Any:
    """A boto3 DynamoDB client with standard retries (backoff with jitter on throttling)."""
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    try:
        return boto3.session.Session().client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)
    except NoRegionError:
        raise ConfigError("remote.session_map.region: no AWS region: set it, or AWS_REGION") from None


class DynamoDbSessionMap:
    """A ``SessionMap`` in one DynamoDB table (on-demand capacity, TTL on ``expires_at``)."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        expire_s: float = 900.0,
        max_attempts: int = 8,
        client: Any | None = None,
    ) -> None:
        self.table = table
        self._client = client or dynamodb_client(region=region, endpoint_url=endpoint_url, max_attempts=max_attempts)
        self._expire_s = max(expire_s * 2, 60.0)
        self._threads: anyio.CapacityLimiter | None = None  # made on the event loop, at first use

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(_THREADS)
        return self._threads

    async def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        """One request on a worker thread; ``ConditionalCheckFailedException`` comes back as ``{"failed": True}``."""
        method: Callable[..., dict[str, Any]] = getattr(self._client, operation)
        try:
            answer: dict[str, Any] = await anyio.to_thread.run_sync(
                functools.partial(method, TableName=self.table, **request), limiter=self._limiter()
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return {"failed": True}
            if code == "ResourceNotFoundException":
                raise SessionMapError(
                    f"the session map's DynamoDB table {self.table!r} does not exist: create it with "
                    f"`ptc-mcp session-map create-table --table {self.table}` (or deploy/ecs-fargate-agentcore.yaml)"
                ) from None
            raise SessionMapError(f"the session map (DynamoDB {operation}) failed: {code}: {exc}") from None
        except BotoCoreError as exc:
            raise SessionMapError(f"the session map (DynamoDB {operation}) failed: {exc}") from None
        return answer

    @staticmethod
    def _expression(names: tuple[str, ...], **values: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"ExpressionAttributeNames": {name: _NAMES[name] for name in names}}
        if values:
            request["ExpressionAttributeValues"] = {f":{name}": _typed(value) for name, value in values.items()}
        return request

    def _key(self, handle: str) -> dict[str, Any]:
        return {KEY: {"S": digest(handle)}}

    async def create(self, handle: str, owner: str | None) -> None:
        now = time.time()
        item = {
            KEY: {"S": digest(handle)},
            "owner": {"S": digest(owner)},
            "version": {"N": "0"},
            "fence": {"N": "0"},
            "lease_until": {"N": "0"},
            "last_used": _typed(now),
            TTL_ATTRIBUTE: _typed(int(now + self._expire_s)),
        }
        # Two instances re-creating an expired session at once: the second finds it there, which is what it wants.
        await self._call(
            "put_item", Item=item, ConditionExpression="attribute_not_exists(#pk)", **self._expression(("#pk",))
        )

    async def lookup(self, handle: str) -> SharedRecord | None:
        answer = await self._call("get_item", Key=self._key(handle), ConsistentRead=True)
        item = answer.get("Item")
        return _record(item) if item is not None else None

    async def acquire(self, handle: str, holder: str, lease_s: float) -> Lease | None:
        now = time.time()
        taking = "SET #holder = :me, #until = :until, #fence = #fence + :one"
        attempts = (
            # Free: the last holder released it.
            (taking, "attribute_exists(#pk) AND attribute_not_exists(#holder)", ("#pk", "#holder", "#until", "#fence")),
            # A takeover from a holder whose lease ran out: it counts as a change of the session.
            (
                taking + ", #version = #version + :one",
                "attribute_exists(#holder) AND #until < :now",
                ("#holder", "#until", "#fence", "#version"),
            ),
        )
        for update, condition, names in attempts:
            values: dict[str, Any] = {"me": holder, "until": now + lease_s, "one": 1}
            if ":now" in condition:
                values["now"] = now
            answer = await self._call(
                "update_item",
                Key=self._key(handle),
                UpdateExpression=update,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **self._expression(names, **values),
            )
            if not answer.get("failed"):
                item = answer["Attributes"]
                return Lease(_record(item), int(item["fence"]["N"]))
        return None

    async def renew(self, handle: str, holder: str, fence: int, lease_s: float) -> bool:
        answer = await self._call(
            "update_item",
            Key=self._key(handle),
            UpdateExpression="SET #until = :until",
            ConditionExpression="#holder = :me AND #fence = :fence",
            **self._expression(("#until", "#holder", "#fence"), until=time.time() + lease_s, me=holder, fence=fence),
        )
        return not answer.get("failed")

    async def release(self, handle: str, holder: str, fence: int, state: dict[str, Any] | None) -> int:
        now = time.time()
        values: dict[str, Any] = {"one": 1, "now": now, "zero": 0, "expires": int(now + self._expire_s)}
        values |= {"me": holder, "fence": fence}
        update = "SET #version = #version + :one, #last = :now, #until = :zero, #expires = :expires"
        if state is not None:
            update += ", #state = :state"
            values["state"] = json.dumps(state, separators=(",", ":"))
        update += " REMOVE #holder" + ("" if state is not None else ", #state")
        answer = await self._call(
            "update_item",
            Key=self._key(handle),
            UpdateExpression=update,
            ConditionExpression="#holder = :me AND #fence = :fence",
            ReturnValues="UPDATED_NEW",
            **self._expression(("#version", "#last", "#until", "#expires", "#state", "#holder", "#fence"), **values),
        )
        if answer.get("failed"):
            return -1
        return int(answer["Attributes"]["version"]["N"])

    async def delete(self, handle: str) -> None:
        await self._call("delete_item", Key=self._key(handle))

    async def reap_idle(self, idle_s: float) -> list[tuple[str, dict[str, Any] | None]]:
        now = time.time()
        condition = "#last < :cutoff AND #until < :now"
        expression = self._expression(("#last", "#until"), cutoff=now - idle_s, now=now)
        reaped: list[tuple[str, dict[str, Any] | None]] = []
        start: dict[str, Any] | None = None
        while True:
            page = await self._call(
                "scan", FilterExpression=condition, **expression, **({"ExclusiveStartKey": start} if start else {})
            )
            for item in page.get("Items", []):
                gone = await self._call(
                    "delete_item",
                    Key={KEY: item[KEY]},
                    ConditionExpression=condition,
                    ReturnValues="ALL_OLD",
                    **expression,
                )
                if not gone.get("failed"):
                    reaped.append((item[KEY]["S"], _record(gone.get("Attributes", item)).state))
            start = page.get("LastEvaluatedKey")
            if not start:
                return reaped

    async def aclose(self) -> None:
        """Nothing to close: boto3's connection pool goes with the client."""


async def create_session_table(client: Any, table: str) -> dict[str, Any]:
    """Create the session map's table (on-demand capacity, TTL on ``expires_at``) if missing; returns its state."""

    def create() -> dict[str, Any]:
        try:
            client.create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                SSESpecification={"Enabled": True},
            )
            created = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            created = False
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
            )
        return {"table": table, "created": created, "ttl_attribute": TTL_ATTRIBUTE}

    try:
        result: dict[str, Any] = await anyio.to_thread.run_sync(create)
    except (ClientError, BotoCoreError) as exc:
        raise SessionMapError(f"could not create the DynamoDB table {table!r}: {exc}") from None
    return result


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"cannot store {type(value).__name__} in the session map")
    return {"S": value} if isinstance(value, str) else {"N": repr(value)}


def _record(item: dict[str, Any]) -> SharedRecord:
    state = item.get("state", {}).get("S")
    return SharedRecord(
        owner=item["owner"]["S"],
        state=json.loads(state) if state else None,
        version=int(item["version"]["N"]),
        last_used=float(item["last_used"]["N"]),
    )
