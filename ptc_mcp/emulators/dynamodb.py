"""A local emulator of the Amazon DynamoDB API, for the ``dynamodb`` session map's tests and for development.

Real boto3 reaches it through ``endpoint_url``::

    boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:8000")

It speaks DynamoDB's wire protocol (JSON 1.0: ``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Operation>``) for
the operations ptc-mcp uses: CreateTable, DescribeTable, DeleteTable, UpdateTimeToLive, DescribeTimeToLive, PutItem,
GetItem, UpdateItem, DeleteItem and Scan, with condition, update and filter expressions (comparisons, ``AND``/``OR``/
``NOT``, ``attribute_exists``/``attribute_not_exists``, ``SET a = b + :v``, ``if_not_exists``, ``REMOVE``) on tables
with a string partition key. Every request is handled atomically, as DynamoDB does for one item. Items past their
TTL are deleted at once (DynamoDB takes up to a few days). ``throttle_next`` answers that many requests with
``ProvisionedThroughputExceededException``, to exercise a client's retries. Requests are not authenticated (SigV4
signatures are accepted unchecked), so it binds to loopback only.

Written for ptc-mcp rather than taken from a package: the operations are few, and the emulator must be exact about
conditional writes and atomic under concurrent requests, which the tests of the session map lean on.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ptc_mcp.listening import is_loopback, serving_asgi

__all__ = ["DynamoDbEmulator", "running_dynamodb_emulator", "serve_dynamodb_emulator"]

_TARGET_PREFIX = "DynamoDB_20120810."
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"

Item = dict[str, dict[str, Any]]


class _Refused(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class _Table:
    name: str
    key: str
    definitions: list[dict[str, str]]
    created: float = field(default_factory=time.time)
    ttl_attribute: str | None = None
    items: dict[str, Item] = field(default_factory=dict)

    def description(self) -> dict[str, Any]:
        return {
            "TableName": self.name,
            "TableStatus": "ACTIVE",
            "KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}],
            "AttributeDefinitions": self.definitions,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "TableArn": f"arn:aws:dynamodb:us-east-1:000000000000:table/{self.name}",
            "CreationDateTime": self.created,
            "ItemCount": len(self.items),
        }


class DynamoDbEmulator:
    """The emulator as an ASGI app (``.app``); ``requests`` and ``throttled`` count what it answered."""

    def __init__(self) -> None:
        self.tables: dict[str, _Table] = {}
        self.throttle_next = 0
        self.requests = 0
        self.throttled = 0
        self.operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateTable": self._create_table,
            "DescribeTable": self._describe_table,
            "DeleteTable": self._delete_table,
            "UpdateTimeToLive": self._update_ttl,
            "DescribeTimeToLive": self._describe_ttl,
            "PutItem": self._put_item,
            "GetItem": self._get_item,
            "UpdateItem": self._update_item,
            "DeleteItem": self._delete_item,
            "Scan": self._scan,
        }
        self.app = Starlette(routes=[Route("/", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        self.requests += 1
        target = request.headers.get("x-amz-target", "")
        operation = self.operations.get(target.removeprefix(_TARGET_PREFIX))
        try:
            if operation is None or not target.startswith(_TARGET_PREFIX):
                raise _Refused("UnknownOperationException", f"unknown operation {target!r}")
            body = json.loads(await request.body() or b"{}")
            if self.throttle_next > 0:
                self.throttle_next -= 1
                self.throttled += 1
                raise _Refused("ProvisionedThroughputExceededException", "throttled by the emulator")
            _check_all_used(body)
            answer = operation(body)  # no await in between: every request is atomic
        except _Refused as refused:
            content = {"__type": _ERROR_PREFIX + refused.code, "message": str(refused)}
            return _json(content, refused.status)
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"__type": _ERROR_PREFIX + "ValidationException", "message": str(exc)}, 400)
        return _json(answer, 200)

    def _table(self, body: dict[str, Any]) -> _Table:
        table = self.tables.get(body["TableName"])
        if table is None:
            raise _Refused("ResourceNotFoundException", f"Requested resource not found: {body['TableName']}")
        if table.ttl_attribute is not None:
            now = Decimal(time.time())
            expired = [
                key
                for key, item in table.items.items()
                if "N" in item.get(table.ttl_attribute, {}) and Decimal(item[table.ttl_attribute]["N"]) < now
            ]
            for key in expired:
                del table.items[key]
        return table

    def _create_table(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["TableName"]
        if name in self.tables:
            raise _Refused("ResourceInUseException", f"Table already exists: {name}")
        hashes = [k["AttributeName"] for k in body["KeySchema"] if k["KeyType"] == "HASH"]
        if len(body["KeySchema"]) != 1 or len(hashes) != 1:
            raise _Refused("ValidationException", "the emulator supports tables with one HASH key only")
        self.tables[name] = _Table(name, hashes[0], body.get("AttributeDefinitions", []))
        return {"TableDescription": self.tables[name].description()}

    def _describe_table(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Table": self._table(body).description()}

    def _delete_table(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        del self.tables[table.name]
        return {"TableDescription": table.description()}

    def _update_ttl(self, body: dict[str, Any]) -> dict[str, Any]:
        table, spec = self._table(body), body["TimeToLiveSpecification"]
        table.ttl_attribute = spec["AttributeName"] if spec["Enabled"] else None
        return {"TimeToLiveSpecification": spec}

    def _describe_ttl(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        if table.ttl_attribute is None:
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": table.ttl_attribute}}

    def _key_of(self, table: _Table, key: Item) -> str:
        value = key.get(table.key, {})
        if set(key) != {table.key} or "S" not in value:
            raise _Refused("ValidationException", "The provided key element does not match the schema")
        return str(value["S"])

    def _check(self, body: dict[str, Any], item: Item | None) -> None:
        condition = body.get("ConditionExpression")
        if condition and not _Expression(condition, body).condition(item or {}):
            raise _Refused("ConditionalCheckFailedException", "The conditional request failed")

    def _put_item(self, body: dict[str, Any]) -> dict[str, Any]:
        table, item = self._table(body), body["Item"]
        key = self._key_of(table, {table.key: item.get(table.key, {})})
        old = table.items.get(key)
        self._check(body, old)
        table.items[key] = item
        return {"Attributes": old} if old is not None and body.get("ReturnValues") == "ALL_OLD" else {}

    def _get_item(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        item = table.items.get(self._key_of(table, body["Key"]))
        return {"Item": item} if item is not None else {}

    def _update_item(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        key = self._key_of(table, body["Key"])
        old = table.items.get(key)
        self._check(body, old)
        new: Item = dict(old) if old is not None else dict(body["Key"])
        changed = _Expression(body.get("UpdateExpression", ""), body).update(new)
        table.items[key] = new
        wanted = body.get("ReturnValues", "NONE")
        if wanted == "ALL_NEW":
            return {"Attributes": new}
        if wanted == "UPDATED_NEW":
            return {"Attributes": {name: new[name] for name in changed if name in new}}
        if wanted == "ALL_OLD" and old is not None:
            return {"Attributes": old}
        return {}

    def _delete_item(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        key = self._key_of(table, body["Key"])
        old = table.items.get(key)
        self._check(body, old)
        table.items.pop(key, None)
        return {"Attributes": old} if old is not None and body.get("ReturnValues") == "ALL_OLD" else {}

    def _scan(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body)
        keys = sorted(table.items)
        start = body.get("ExclusiveStartKey")
        if start is not None:
            after = self._key_of(table, start)
            keys = [key for key in keys if key > after]
        limit = int(body.get("Limit", len(keys) or 1))
        page, rest = keys[:limit], keys[limit:]
        found = [table.items[key] for key in page]
        condition = body.get("FilterExpression")
        items = [item for item in found if _Expression(condition, body).condition(item)] if condition else found
        answer: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(page)}
        if rest:
            answer["LastEvaluatedKey"] = {table.key: {"S": page[-1]}}
        return answer


_TOKEN = re.compile(r"\s*(?:(<>|<=|>=|[=<>+\-(),])|([#:]?[A-Za-z0-9_]+))")


class _Expression:
    """One condition or update expression with its ``ExpressionAttributeNames``/``Values``."""

    def __init__(self, text: str, body: dict[str, Any]) -> None:
        self._names: dict[str, str] = body.get("ExpressionAttributeNames", {})
        self._values: dict[str, dict[str, Any]] = body.get("ExpressionAttributeValues", {})
        self._tokens: list[str] = []
        position = 0
        while position < len(text.rstrip()):
            match = _TOKEN.match(text, position)
            if match is None:
                raise _Refused("ValidationException", f"Invalid expression: {text!r} at {position}")
            self._tokens.append(match.group(1) or match.group(2))
            position = match.end()
        self._at = 0

    def _peek(self) -> str | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise _Refused("ValidationException", f"Invalid expression: expected {expected or 'more'}, got {token}")
        self._at += 1
        return token

    def _name(self, token: str) -> str:
        if token.startswith("#"):
            if token not in self._names:
                raise _Refused("ValidationException", f"An expression attribute name is not defined: {token}")
            return self._names[token]
        return token

    def _operand(self, item: Item) -> dict[str, Any] | None:
        token = self._take()
        if token.startswith(":"):
            if token not in self._values:
                raise _Refused("ValidationException", f"An expression attribute value is not defined: {token}")
            value: dict[str, Any] | None = self._values[token]
        elif token.lower() == "if_not_exists":
            self._take("(")
            current = item.get(self._name(self._take()))
            self._take(",")
            fallback = self._operand(item)
            self._take(")")
            value = current if current is not None else fallback
        else:
            value = item.get(self._name(token))
        if self._peek() in ("+", "-"):
            sign = self._take()
            other = self._operand(item)
            if value is None or other is None or "N" not in value or "N" not in other:
                raise _Refused("ValidationException", "An operand in the update expression has an incorrect data type")
            left, right = Decimal(value["N"]), Decimal(other["N"])
            value = {"N": str(left + right if sign == "+" else left - right)}
        return value

    def condition(self, item: Item) -> bool:
        self._at = 0
        outcome = self._or(item)
        if self._peek() is not None:
            raise _Refused("ValidationException", f"Invalid expression: unexpected {self._peek()}")
        return outcome

    def _or(self, item: Item) -> bool:
        outcome = self._and(item)
        while (self._peek() or "").upper() == "OR":
            self._take()
            right = self._and(item)
            outcome = outcome or right
        return outcome

    def _and(self, item: Item) -> bool:
        outcome = self._not(item)
        while (self._peek() or "").upper() == "AND":
            self._take()
            right = self._not(item)
            outcome = outcome and right
        return outcome

    def _not(self, item: Item) -> bool:
        if (self._peek() or "").upper() == "NOT":
            self._take()
            return not self._not(item)
        if self._peek() == "(":
            self._take()
            outcome = self._or(item)
            self._take(")")
            return outcome
        function = (self._peek() or "").lower()
        if function in ("attribute_exists", "attribute_not_exists"):
            self._take()
            self._take("(")
            present = self._name(self._take()) in item
            self._take(")")
            return present if function == "attribute_exists" else not present
        left = self._operand(item)
        operator = self._take()
        right = self._operand(item)
        return _compare(left, operator, right)

    def update(self, item: Item) -> list[str]:
        """Apply ``SET``/``REMOVE`` clauses to ``item``; returns the names it changed."""
        self._at = 0
        changed: list[str] = []
        while self._peek() is not None:
            clause = self._take().upper()
            while True:
                name = self._name(self._take())
                if clause == "SET":
                    self._take("=")
                    value = self._operand(item)
                    if value is None:
                        raise _Refused("ValidationException", "The provided expression refers to a missing attribute")
                    item[name] = value
                elif clause == "REMOVE":
                    item.pop(name, None)
                else:
                    raise _Refused("ValidationException", f"the emulator does not support {clause} clauses")
                changed.append(name)
                if self._peek() != ",":
                    break
                self._take()
        return changed


def _compare(left: dict[str, Any] | None, operator: str, right: dict[str, Any] | None) -> bool:
    if left is None or right is None:
        return operator == "<>" and (left is None) != (right is None)
    if "N" in left and "N" in right:
        a: Any = Decimal(left["N"])
        b: Any = Decimal(right["N"])
    elif "S" in left and "S" in right:
        a, b = left["S"], right["S"]
    else:
        return operator == "<>" if operator in ("=", "<>") else False
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda x, y: x == y,
        "<>": lambda x, y: x != y,
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }
    if operator not in comparisons:
        raise _Refused("ValidationException", f"Invalid operator {operator!r}")
    return comparisons[operator](a, b)


def _check_all_used(body: dict[str, Any]) -> None:
    """DynamoDB refuses names and values that no expression of the request uses; so does the emulator."""
    texts = " ".join(
        str(body.get(part, ""))
        for part in ("ConditionExpression", "UpdateExpression", "FilterExpression", "ProjectionExpression")
    )
    used = set(re.findall(r"[#:][A-Za-z0-9_]+", texts))
    for kind, given in (
        ("Names", body.get("ExpressionAttributeNames", {})),
        ("Values", body.get("ExpressionAttributeValues", {})),
    ):
        unused = sorted(set(given) - used)
        if unused:
            raise _Refused(
                "ValidationException",
                f"Value provided in ExpressionAttribute{kind} unused in expressions: keys: {{{', '.join(unused)}}}",
            )


def _json(content: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(content), status_code=status, media_type="application/x-amz-json-1.0")


@asynccontextmanager
async def running_dynamodb_emulator(
    host: str = "127.0.0.1", port: int = 0, *, emulator: DynamoDbEmulator | None = None
) -> AsyncIterator[tuple[str, DynamoDbEmulator]]:
    """Serve an emulator on loopback (``port=0``: any free port); yields ``(endpoint_url, emulator)``."""
    if not is_loopback(host):
        raise ValueError(f"the DynamoDB emulator binds to loopback only, not {host!r}: it checks no credentials")
    emulator = emulator or DynamoDbEmulator()
    async with serving_asgi(emulator.app, host, port) as url:
        yield url, emulator


async def serve_dynamodb_emulator(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until cancelled (``ptc-mcp emulate dynamodb``); prints the endpoint to use."""
    async with running_dynamodb_emulator(host, port) as (url, _emulator):
        sys.stderr.write(f"DynamoDB emulator on {url} (boto3: endpoint_url={url!r})\n")
        await anyio.sleep_forever()
