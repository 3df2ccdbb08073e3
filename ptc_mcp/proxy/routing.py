"""Several proxy instances: every container id carries its instance's tag; a request for a container held by
another instance is forwarded to it, so a plain round-robin load balancer in front of the instances works.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ptc_mcp.proxy.errors import ApiError

FORWARDED_HEADERS = ("content-type", "x-api-key", "authorization", "anthropic-version", "anthropic-beta")
HOP_MARK = "x-ptc-proxy-forwarded"
_TAG = re.compile(r"^container_([A-Za-z0-9-]+)_")


def instance_of(container_id: str) -> str | None:
    """The instance tag in a container id (``container_<tag>_<token>``), if it has one."""
    match = _TAG.match(container_id)
    return match.group(1) if match else None


def parse_peers(spec: str | None) -> dict[str, str]:
    """``tag=http://host:port,tag2=…`` → ``{tag: base_url}``."""
    peers: dict[str, str] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        tag, sep, url = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9-]+", tag.strip()) or not url.strip().startswith("http"):
            raise ValueError(f"--peers: expected tag=http://host:port, got {item!r}")
        peers[tag.strip()] = url.strip().rstrip("/")
    return peers


async def forward(request: Request, body: bytes, peer_url: str) -> Response:
    """Send the request to the instance holding the container and relay its answer (streamed as it comes)."""
    import httpx2 as httpx  # the HTTP client the mcp SDK already depends on

    if request.headers.get(HOP_MARK):
        raise ApiError("not_found_error", "the container's instance does not hold it (forwarding loop refused)")
    headers: Mapping[str, str] = {
        **{name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers},
        HOP_MARK: "1",
    }
    client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
    try:
        upstream = await client.send(
            client.build_request("POST", peer_url + request.url.path, content=body, headers=headers), stream=True
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ApiError("overloaded_error", f"the instance holding this container is unreachable: {exc}") from None

    async def relay() -> AsyncIterator[bytes]:
        async for chunk in upstream.aiter_raw():
            yield chunk

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "request-id")}
    return StreamingResponse(
        relay(), status_code=upstream.status_code, headers=passed, background=BackgroundTask(close)
    )
