"""The model behind the proxy: Bedrock Converse through boto3 (off the event loop), and the model-id map."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from ptc_mcp.proxy.errors import from_bedrock

log = logging.getLogger(__name__)


class ModelClient(Protocol):
    """What the proxy needs from Bedrock."""

    async def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        """A Converse call; raises ``ApiError``."""
        ...

    async def count_tokens(self, request: dict[str, Any]) -> int:
        """Input tokens of a Converse request; raises ``ApiError``."""
        ...


class BedrockModels:
    """``ModelClient`` over a boto3 ``bedrock-runtime`` client (every call runs on a worker thread)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def create(cls, *, region: str | None = None, endpoint_url: str | None = None) -> BedrockModels:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(f'the proxy needs boto3: pip install "ptc-mcp[proxy]" ({exc})') from exc
        config = BotoConfig(read_timeout=300, retries={"max_attempts": 3, "mode": "standard"})
        return cls(boto3.client("bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config))

    async def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = await anyio.to_thread.run_sync(lambda: self._client.converse(**request))
        except Exception as exc:
            raise from_bedrock(exc) from None
        return response

    async def count_tokens(self, request: dict[str, Any]) -> int:
        """Bedrock's ``CountTokens`` where the model supports it, else an estimate (about 4 characters a token)."""
        converse: dict[str, Any] = {k: request[k] for k in ("messages", "system", "toolConfig") if k in request}
        try:
            response = await anyio.to_thread.run_sync(
                lambda: self._client.count_tokens(modelId=request["modelId"], input={"converse": converse})
            )
        except Exception as exc:
            error = from_bedrock(exc)
            if error.kind in ("authentication_error", "permission_error", "rate_limit_error"):
                raise error from None
            log.info("CountTokens is not available for %s (%s): estimating", request["modelId"], error.message)
            return estimate_tokens(converse)
        return int(response.get("inputTokens", 0))


def estimate_tokens(converse: dict[str, Any]) -> int:
    """A rough count for models without ``CountTokens``: about four characters of JSON text per token."""
    text = json.dumps(converse, ensure_ascii=False, default=lambda value: "x" * min(len(value), 4000))
    return max(1, len(text) // 4)


@dataclass
class ModelMap:
    """Anthropic model names → Bedrock model ids; names not in the map go to Bedrock unchanged."""

    models: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        return self.models.get(name, name)

    @classmethod
    def parse(cls, spec: str | None) -> ModelMap:
        """``name=bedrock-id,name2=id2``, or the path of a JSON object file with the same mapping."""
        if not spec:
            return cls()
        path = Path(spec)
        if path.is_file():
            data = json.loads(path.read_text())
            if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError(f"{spec}: expected a JSON object of model name → Bedrock model id")
            return cls({str(k): str(v) for k, v in data.items()})
        models: dict[str, str] = {}
        for item in spec.split(","):
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"--model-map: expected name=bedrock-model-id, got {item!r}")
            models[name.strip()] = target.strip()
        return cls(models)
