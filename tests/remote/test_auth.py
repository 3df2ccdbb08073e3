"""Auth over streamable HTTP and SSE with the real MCP client: 401 without a valid token, 403 without the scope.

The server runs in this process (uvicorn on a loopback port) in OAuth 2.1 resource-server mode with HS256 JWTs;
every response status the client sees is recorded by an httpx event hook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from ptc_mcp.auth import IntrospectionVerifier, JwtVerifier, StaticTokenVerifier, caller_identity
from ptc_mcp.config.remote import AuthConfig, RemoteConfig
from ptc_mcp.errors import ConfigError
from tests.conftest import test_config
from tests.remote.helpers import ISSUER, OAUTH, RESOURCE, WAIT_S, make_token, serving_in_process

pytestmark = pytest.mark.anyio

COUNT = "len(await expenses.get_team_members(department='engineering'))"


class Recorder:
    """An httpx client that remembers every response status."""

    def __init__(self, token: str | None) -> None:
        self.statuses: list[int] = []
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        async def record(response: httpx2.Response) -> None:
            self.statuses.append(response.status_code)

        self.http = httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(WAIT_S), event_hooks={"response": [record]}
        )


async def call_with(
    url: str, token: str | None, code: str = COUNT, mode: str = "legacy", **arguments: Any
) -> tuple[list[int], Any]:
    """Run ``code`` through the real MCP client; returns the statuses seen and the result (or the exception)."""
    recorder = Recorder(token)
    outcome: Any
    try:
        with anyio.fail_after(WAIT_S):
            async with (
                recorder.http,
                Client(streamable_http_client(url, http_client=recorder.http), mode=mode) as client,  # type: ignore[arg-type]
            ):
                outcome = await client.call_tool("execute_program", {"code": code, **arguments})
    except Exception as exc:  # the client's error for a refused connection: what matters is the status
        outcome = exc
    return recorder.statuses, outcome


def oauth_config(tmp_path: Path) -> Any:
    return test_config(remote={"auth": OAUTH}, audit={"file": str(tmp_path / "audit.jsonl")})


async def test_requests_without_a_valid_token_are_refused_with_401(tmp_path: Path) -> None:
    async with serving_in_process(oauth_config(tmp_path)) as (base, _app, _state):
        url = f"{base}/mcp"
        for token in (
            None,
            "not-a-jwt",
            make_token(audience="https://another.example.invalid/mcp"),
            make_token(issuer="https://evil.example.invalid"),
            make_token(expires_in=-3600),
        ):
            statuses, outcome = await call_with(url, token)
            assert statuses[:1] == [401], (token, statuses)
            assert isinstance(outcome, BaseException)
        async with httpx2.AsyncClient() as http:
            refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            metadata = await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]
    assert metadata.status_code == 200
    assert metadata.json()["authorization_servers"] == [ISSUER]
    assert metadata.json()["resource"] == RESOURCE


async def test_a_token_without_the_required_scope_is_refused_with_403(tmp_path: Path) -> None:
    async with serving_in_process(oauth_config(tmp_path)) as (base, _app, _state):
        statuses, outcome = await call_with(f"{base}/mcp", make_token(scope="ptc:read profile"))
    assert statuses[:1] == [403]
    assert isinstance(outcome, BaseException)


async def test_a_valid_token_runs_programs_and_the_audit_trail_names_the_caller(tmp_path: Path) -> None:
    async with serving_in_process(oauth_config(tmp_path)) as (base, _app, _state):
        statuses, outcome = await call_with(f"{base}/mcp", make_token(scope="openid ptc:execute"))
    assert set(statuses) <= {200, 202, 204}, statuses
    assert isinstance(outcome, types.CallToolResult)
    assert outcome.structured_content is not None and outcome.structured_content["result"] == 8
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    callers = {line["event"]: line.get("caller") for line in lines}
    assert callers == {"call": f"agent-7:alice@{ISSUER}", "run": f"agent-7:alice@{ISSUER}"}


async def test_sse_is_behind_the_same_auth(tmp_path: Path) -> None:
    async with serving_in_process(oauth_config(tmp_path), transport="sse") as (base, _app, _state):
        async with httpx2.AsyncClient(timeout=WAIT_S) as http:
            anonymous = await http.get(f"{base}/sse")
            scoped_out = await http.get(
                f"{base}/sse", headers={"Authorization": f"Bearer {make_token(scope='ptc:read')}"}
            )
            posted = await http.post(f"{base}/messages/", json={})
        headers = {"Authorization": f"Bearer {make_token()}"}
        with anyio.fail_after(WAIT_S):
            async with Client(sse_client(f"{base}/sse", headers=headers), mode="legacy") as client:
                result = await client.call_tool("execute_program", {"code": COUNT})
    assert (anonymous.status_code, scoped_out.status_code, posted.status_code) == (401, 403, 401)
    assert result.structured_content is not None and result.structured_content["result"] == 8


async def test_sessions_are_bound_to_the_caller(tmp_path: Path) -> None:
    async with serving_in_process(oauth_config(tmp_path)) as (base, _app, _state):
        url, alice, mallory = f"{base}/mcp", make_token(sub="alice"), make_token(sub="mallory")
        _, first = await call_with(url, alice, "secret = 42", mode="2026-07-28")
        handle = first.structured_content["session"]
        _, stolen = await call_with(url, mallory, "secret", mode="2026-07-28", session=handle)
        _, owned = await call_with(url, alice, "secret", mode="2026-07-28", session=handle)
    assert stolen.structured_content["error"]["type"] == "invalid_input"
    assert owned.structured_content["result"] == 42


async def test_static_bearer_tokens_are_told_apart_in_the_identity() -> None:
    verifier = StaticTokenVerifier(["first-token", "", "second-token"], ["ptc:execute"])
    first = await verifier.verify_token("first-token")
    second = await verifier.verify_token("second-token")
    assert await verifier.verify_token("") is None
    assert await verifier.verify_token("first-token ") is None
    assert first is not None and second is not None
    assert first.scopes == ["ptc:execute"]
    assert caller_identity(first) != caller_identity(second)
    with pytest.raises(ConfigError):
        StaticTokenVerifier(["", ""])


async def test_jwt_tokens_signed_by_a_public_key_are_verified(tmp_path: Path) -> None:
    import jwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "issuer.pem").write_bytes(pem)
    config = AuthConfig.model_validate(
        {**OAUTH, "shared_secret": None, "public_key_file": str(tmp_path / "issuer.pem"), "algorithms": ["RS256"]}
    )
    verifier = JwtVerifier(config)
    claims = {"iss": ISSUER, "aud": [RESOURCE, "other"], "sub": "bob", "scp": ["ptc:execute"], "exp": 2**31}
    good = await verifier.verify_token(jwt.encode(claims, key, algorithm="RS256"))
    # A token signed with the public key as an HMAC secret (the classic algorithm confusion) is refused.
    confused = await verifier.verify_token(jwt.encode(claims, "x" * 32, algorithm="HS256"))
    assert good is not None and good.scopes == ["ptc:execute"] and good.resource == RESOURCE
    assert confused is None


async def test_opaque_tokens_are_checked_by_introspection() -> None:
    seen: list[str] = []

    def introspect(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("authorization", ""))
        token = dict(item.split("=") for item in request.content.decode().split("&"))["token"]
        if token == "live":
            body = {"active": True, "iss": ISSUER, "aud": RESOURCE, "sub": "carol", "scope": "ptc:execute"}
        else:
            body = {"active": False}
        return httpx2.Response(200, json=body)

    config = AuthConfig.model_validate(
        {
            **OAUTH,
            "shared_secret": None,
            "introspection_url": "https://issuer.example.invalid/introspect",
            "introspection_client_id": "rs",
            "introspection_client_secret": "pw",
        }
    )
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(introspect)) as http:
        verifier = IntrospectionVerifier(config, http=http)
        live = await verifier.verify_token("live")
        again = await verifier.verify_token("live")
        dead = await verifier.verify_token("revoked")
    assert live is not None and live.subject == "carol" and again == live
    assert dead is None
    assert len(seen) == 2 and seen[0].startswith("Basic ")  # the second "live" came from the cache


def test_auth_settings_are_checked_at_start_up() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AuthConfig.model_validate({"mode": "oauth", "issuer": ISSUER, "audience": ["x"]})
    with pytest.raises(ValueError, match="token"):
        AuthConfig.model_validate({"mode": "bearer", "tokens": [""]})
    with pytest.raises(ValueError):
        RemoteConfig.model_validate({"session_map": {"kind": "sqlite"}})
