"""The model side of the agent: Bedrock Converse through boto3, called off the event loop."""

from __future__ import annotations

import functools
from typing import Any, Protocol

import anyio

__all__ = ["BedrockConverse", "ConverseClient", "parse_model_spec"]

BEDROCK_PREFIX = "bedrock:"


class ConverseClient(Protocol):
    """Anything that answers a Converse request (without ``modelId``) with a Converse response."""

    model_id: str

    async def converse(self, request: dict[str, Any]) -> dict[str, Any]: ...


def parse_model_spec(spec: str) -> str:
    """``"bedrock:<model-id>"`` → the model id; anything else is a ``ValueError``."""
    if not spec.startswith(BEDROCK_PREFIX) or len(spec) == len(BEDROCK_PREFIX):
        raise ValueError(f"--model must look like bedrock:<model-id> (got {spec!r})")
    return spec[len(BEDROCK_PREFIX) :]


class BedrockConverse:
    """Converse on Amazon Bedrock (or an emulator at ``endpoint_url``), with boto3's credential chain.

    boto3 blocks, so every call runs on a worker thread (``anyio.to_thread.run_sync``). ``credentials`` is
    ``(access_key, secret_key)`` for emulators that need any signature at all; leave it out for AWS.
    """

    def __init__(
        self,
        model_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        credentials: tuple[str, str] | None = None,
        read_timeout_s: float = 300.0,
    ) -> None:
        self.model_id = model_id
        self._region = region
        self._endpoint_url = endpoint_url
        self._credentials = credentials
        self._read_timeout_s = read_timeout_s
        self._client: Any = None

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('the Bedrock agent needs boto3: pip install "ptc-mcp[bedrock]"') from exc
        options: dict[str, Any] = {
            "region_name": self._region,
            "endpoint_url": self._endpoint_url,
            "config": Config(read_timeout=self._read_timeout_s, retries={"mode": "standard", "max_attempts": 4}),
        }
        if self._credentials is not None:
            options["aws_access_key_id"], options["aws_secret_access_key"] = self._credentials
            options["region_name"] = self._region or "us-east-1"
        return boto3.client("bedrock-runtime", **options)

    async def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            self._client = await anyio.to_thread.run_sync(self._make_client)
        call = functools.partial(self._client.converse, modelId=self.model_id, **request)
        response: dict[str, Any] = await anyio.to_thread.run_sync(call)
        response.pop("ResponseMetadata", None)
        return response
