"""The HTTP face: a Starlette app serving the Anthropic Messages API on top of Bedrock.

``POST /v1/messages`` (also ``stream: true``), ``POST /v1/messages/count_tokens``, ``GET /v1/models`` and
``GET /v1/models/{id}``. API keys (``x-api-key`` or ``Authorization: Bearer``) are checked against the configured
list when there is one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ptc_mcp.proxy import sse
from ptc_mcp.proxy.errors import ApiError, invalid
from ptc_mcp.proxy.response import message
from ptc_mcp.proxy.routing import forward, instance_of
from ptc_mcp.proxy.translate import converse_request, new_id
from ptc_mcp.proxy.turn import Proxy, TurnRunner, check_api_key, container_id, validate

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
PING_INTERVAL_S = 10.0


def build_app(proxy: Proxy) -> Starlette:
    """The ASGI app; the caller runs ``proxy.registry`` (an async context manager) around it."""

    async def messages(request: Request) -> Response:
        request_id = new_id("req_")
        try:
            owner = check_api_key(proxy, request.headers)
            raw = await _read_body(request)
            body = _parse_json(raw)
            peer = _peer_for(proxy, body)
            if peer is not None:
                return await forward(request, raw, peer)
            turn = validate(body, _betas(request), proxy.model_map)
        except ApiError as exc:
            return _error(exc, request_id)
        message_id = new_id("msg_")
        model = str(body["model"])
        if body.get("stream"):
            return _EventStream(TurnRunner(proxy, turn, owner, _ignore), message_id, model, request_id)
        runner = TurnRunner(proxy, turn, owner, _ignore)
        try:
            result = await runner.run()
        except ApiError as exc:
            return _error(exc, request_id)
        return JSONResponse(
            message(message_id, model, runner.blocks, result.stop_reason, result.usage, result.container),
            headers={"request-id": request_id},
        )

    async def count_tokens(request: Request) -> Response:
        request_id = new_id("req_")
        try:
            check_api_key(proxy, request.headers)
            body = await _json_body(request)
            if isinstance(body, dict):
                body = {"max_tokens": 1, **body}
            turn = validate(body, _betas(request), proxy.model_map)
            converse = converse_request(turn.body, turn.model_id, turn.toolset, proxy.server_tools_description)
            tokens = await proxy.models.count_tokens(converse)
        except ApiError as exc:
            return _error(exc, request_id)
        return JSONResponse({"input_tokens": tokens}, headers={"request-id": request_id})

    async def list_models(request: Request) -> Response:
        try:
            check_api_key(proxy, request.headers)
        except ApiError as exc:
            return _error(exc, new_id("req_"))
        data = [_model_info(name) for name in proxy.model_map.models]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def get_model(request: Request) -> Response:
        try:
            check_api_key(proxy, request.headers)
        except ApiError as exc:
            return _error(exc, new_id("req_"))
        name = request.path_params["model_id"]
        if name not in proxy.model_map.models:
            return _error(ApiError("not_found_error", f"model: {name}"), new_id("req_"))
        return JSONResponse(_model_info(name))

    async def not_found(request: Request) -> Response:
        return _error(ApiError("not_found_error", f"no route {request.method} {request.url.path}"), new_id("req_"))

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )


async def _ignore(block: dict[str, Any]) -> None:
    return None


def _model_info(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}


def _betas(request: Request) -> list[str]:
    values = request.headers.getlist("anthropic-beta")
    return [beta.strip() for value in values for beta in value.split(",") if beta.strip()]


async def _read_body(request: Request) -> bytes:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError("request_too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    return bytes(raw)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid("the request body is not valid JSON") from None


async def _json_body(request: Request) -> Any:
    return _parse_json(await _read_body(request))


def _peer_for(proxy: Proxy, body: Any) -> str | None:
    """The base URL of the instance holding the request's container, when that is another instance."""
    if not proxy.peers or not isinstance(body, dict):
        return None
    cid = container_id(body)
    tag = instance_of(cid) if cid else None
    if tag is None or tag == proxy.registry.instance:
        return None
    return proxy.peers.get(tag)


def _error(exc: ApiError, request_id: str) -> JSONResponse:
    return JSONResponse(exc.body(request_id), status_code=exc.status, headers={"request-id": request_id})


class _EventStream(Response):
    """Server-sent events produced by running the turn; pings keep the connection alive while code runs."""

    media_type = "text/event-stream"

    def __init__(self, runner: TurnRunner, message_id: str, model: str, request_id: str) -> None:
        super().__init__(headers={"request-id": request_id, "cache-control": "no-cache"})
        self.raw_headers = [(key, value) for key, value in self.raw_headers if key != b"content-length"]
        self._runner = runner
        self._message_id = message_id
        self._model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        index = 0
        lock = anyio.Lock()

        async def write(chunk: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def emit(block: dict[str, Any]) -> None:
            nonlocal index
            for chunk in sse.block_events(index, block):
                await write(chunk)
            index += 1

        async def pings() -> None:
            while True:
                await anyio.sleep(PING_INTERVAL_S)
                await write(sse.ping())

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        self._runner.emit = emit
        chunks: list[bytes] = []
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(pings)
                tasks.start_soon(watch_disconnect)
                await write(sse.message_start(self._message_id, self._model))
                try:
                    result = await self._runner.run()
                    chunks = sse.message_end(result.stop_reason, result.usage, result.container)
                except ApiError as exc:
                    chunks = [sse.error(exc)]
                except Exception:
                    log.exception("the proxy failed while streaming a response")
                    chunks = [sse.error(ApiError("api_error", "internal error in the proxy"))]
                for chunk in chunks:
                    await write(chunk)
                tasks.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            log.info("the client went away during a streamed response")
