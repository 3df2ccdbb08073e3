"""Remote servers behind OAuth, against a real authorization server and a protected MCP server on loopback.

``tests/downstream/oauth_servers.py`` builds both on the ``mcp`` SDK's server-side auth pieces; ptc-mcp talks to
them with the SDK's client auth. The authorization-code flow is driven headlessly: the "browser" is an HTTP client
that follows the authorize redirect to ``login``'s loopback listener.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import pytest
from mcp.shared.auth import OAuthClientInformationFull

from ptc_mcp.config import HttpServerConfig, SseServerConfig, parse_config
from ptc_mcp.config.paths import TOKEN_DIR_ENV
from ptc_mcp.downstream.login import login, logout
from ptc_mcp.downstream.oauth import TokenStore
from ptc_mcp.downstream.pool import DownstreamPool
from ptc_mcp.errors import ToolCallError
from tests.downstream.oauth_servers import OAuthServers, client_metadata_document, oauth_servers
from tests.downstream.servers import fixture_server, text_of

pytestmark = pytest.mark.anyio

WAIT_S = 60.0


@pytest.fixture
def token_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "tokens"
    monkeypatch.setenv(TOKEN_DIR_ENV, str(directory))
    yield directory


async def follow_in_headless_browser(url: str) -> None:
    """What a person's browser does: open the authorize URL and follow the redirect back to ptc-mcp."""
    async with httpx2.AsyncClient(follow_redirects=True, timeout=WAIT_S) as browser:
        response = await browser.get(url)
    assert response.status_code == 200, response.text


def remote_entry(servers: OAuthServers, **auth: Any) -> HttpServerConfig | SseServerConfig:
    kind = "sse" if servers.mcp_url.endswith("/sse") else "http"
    entry = {"type": kind, "url": servers.mcp_url, "auth": {"type": "oauth", **auth}}
    parsed = parse_config({"mcpServers": {"remote": entry}}, environ={}).mcp_servers["remote"]
    assert isinstance(parsed, HttpServerConfig | SseServerConfig)
    return parsed


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_login_runs_the_code_flow_and_serving_uses_the_stored_tokens(
    token_dir: Path, transport: Literal["http", "sse"]
) -> None:
    async with oauth_servers(transport=transport) as servers:
        entry = remote_entry(servers)
        with anyio.fail_after(WAIT_S):
            assert await login("remote", entry, open_url=follow_in_headless_browser) >= 2
        assert servers.provider.grants == ["code"]
        assert len(servers.provider.clients) == 1  # registered itself dynamically
        async with DownstreamPool({"remote": entry}) as pool:
            assert pool.failures == {}
            result = await pool.call_tool("remote", "add", {"a": 2, "b": 3})
        assert result.structured_content == {"result": 5}


async def test_the_token_file_is_readable_by_the_user_only(token_dir: Path) -> None:
    async with oauth_servers() as servers:
        entry = remote_entry(servers)
        with anyio.fail_after(WAIT_S):
            await login("remote", entry, open_url=follow_in_headless_browser)
        store = TokenStore("remote", entry.url)
        assert store.path.parent == token_dir
        assert stat.S_IMODE(os.stat(token_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        assert logout("remote", entry)
        assert not store.path.exists()


async def test_without_a_login_the_call_fails_with_a_tool_error_naming_the_login_command(token_dir: Path) -> None:
    async with oauth_servers() as servers, DownstreamPool({"remote": remote_entry(servers)}) as pool:
        assert "ptc-mcp login remote" in pool.failures["remote"]
        assert pool.servers["remote"].login_needed is not None
        with pytest.raises(ToolCallError) as raised:
            await pool.call_tool("remote", "add", {"a": 1, "b": 1})
        assert "ptc-mcp login remote" in raised.value.message
        assert servers.provider.clients == {}  # serving never registers a client it could not log in with


async def logged_in(servers: OAuthServers, **auth: Any) -> HttpServerConfig | SseServerConfig:
    entry = remote_entry(servers, **auth)
    with anyio.fail_after(WAIT_S):
        await login("remote", entry, open_url=follow_in_headless_browser)
    return entry


async def test_tokens_living_two_seconds_are_refreshed_and_calls_keep_working_past_five(token_dir: Path) -> None:
    async with oauth_servers(access_ttl_s=2) as servers:
        entry = await logged_in(servers)
        async with DownstreamPool({"remote": entry}) as pool:
            start = anyio.current_time()
            calls = 0
            with anyio.fail_after(WAIT_S):
                while anyio.current_time() - start < 5.5:
                    result = await pool.call_tool("remote", "add", {"a": calls, "b": 1})
                    assert not result.is_error and result.structured_content == {"result": calls + 1}
                    calls += 1
                    await anyio.sleep(0.25)  # pacing: a call every quarter second across the window
        assert servers.provider.grants.count("refresh") >= 2


async def test_a_401_with_a_token_the_client_thought_valid_is_refreshed_once_and_the_call_retried(
    token_dir: Path,
) -> None:
    async with oauth_servers() as servers:
        entry = await logged_in(servers)
        async with DownstreamPool({"remote": entry}) as pool:
            await pool.call_tool("remote", "add", {"a": 1, "b": 1})
            servers.provider.expire_all_access_tokens()  # the server forgets them; the client does not know
            result = await pool.call_tool("remote", "add", {"a": 2, "b": 2})
        assert result.structured_content == {"result": 4}
        assert servers.provider.grants == ["code", "refresh"]


async def test_a_revoked_refresh_token_fails_the_call_with_a_login_hint_and_other_servers_keep_working(
    token_dir: Path,
) -> None:
    async with oauth_servers() as servers:
        entry = await logged_in(servers)
        async with DownstreamPool({"remote": entry, "local": fixture_server()}) as pool:
            await pool.call_tool("remote", "add", {"a": 1, "b": 1})
            servers.provider.revoke_all_refresh_tokens()
            servers.provider.expire_all_access_tokens()
            with anyio.fail_after(WAIT_S), pytest.raises(ToolCallError) as raised:
                await pool.call_tool("remote", "add", {"a": 2, "b": 2})
            assert raised.value.error_type == "tool_error"
            assert "ptc-mcp login remote" in raised.value.message
            assert text_of(await pool.call_tool("local", "echo", {"text": "still here"})) == "still here"


async def test_client_credentials_need_no_person_and_get_a_new_token_when_one_expires(token_dir: Path) -> None:
    async with oauth_servers(access_ttl_s=2) as servers:
        servers.provider.clients["machine"] = OAuthClientInformationFull(
            client_id="machine",
            client_secret="machine-secret",
            grant_types=["client_credentials"],
            token_endpoint_auth_method="client_secret_post",
            redirect_uris=None,
        )
        entry = remote_entry(
            servers,
            grant="client_credentials",
            client_id="machine",
            client_secret="machine-secret",
            issuer=servers.issuer,
        )
        async with DownstreamPool({"remote": entry}) as pool:
            assert pool.failures == {}
            first = await pool.call_tool("remote", "add", {"a": 1, "b": 2})
            issued = len(servers.provider.grants)
            with anyio.fail_after(WAIT_S):
                while len(servers.provider.grants) == issued:  # until the early refresh fetched a new token
                    await pool.call_tool("remote", "add", {"a": 1, "b": 2})
                    await anyio.sleep(0.25)
            last = await pool.call_tool("remote", "add", {"a": 3, "b": 4})
        assert first.structured_content == {"result": 3} and last.structured_content == {"result": 7}
        assert set(servers.provider.grants) == {"client_credentials"}


async def test_a_client_registered_by_hand_is_used_instead_of_registering(token_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with oauth_servers() as servers:
        servers.provider.clients["by-hand"] = OAuthClientInformationFull(
            client_id="by-hand",
            client_secret="by-hand-secret",
            redirect_uris=[f"http://127.0.0.1:{port}/callback"],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="client_secret_post",
            scope="mcp:tools",
        )
        entry = await logged_in(servers, client_id="by-hand", client_secret="by-hand-secret", redirect_port=port)
        async with DownstreamPool({"remote": entry}) as pool:
            servers.provider.expire_all_access_tokens()  # the refresh authenticates with the secret too
            result = await pool.call_tool("remote", "add", {"a": 5, "b": 5})
        assert result.structured_content == {"result": 10}
        assert list(servers.provider.clients) == ["by-hand"]  # nothing registered dynamically
        assert servers.provider.grants == ["code", "refresh"]


def test_every_config_in_the_oauth_guide_is_valid() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "remote-oauth.md").read_text(encoding="utf-8")
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", guide, flags=re.S)]
    assert len(blocks) >= 3
    for document in blocks:
        if "mcpServers" not in document:  # a client ID metadata document
            assert document["client_id"].startswith("https://") and document["redirect_uris"]
            continue
        if "ptc" in document["mcpServers"]:  # Claude Desktop's own config
            assert document["mcpServers"]["ptc"]["args"][0] == "serve"
            continue
        config = parse_config(document, environ={"REPORTS_CLIENT_SECRET": "s"})
        assert any(getattr(entry, "auth", None) is not None for entry in config.mcp_servers.values())


async def test_a_client_id_metadata_document_is_used_where_the_server_supports_it(
    token_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    document = {
        "client_id": "{url}",
        "client_name": "ptc-mcp",
        "redirect_uris": [f"http://127.0.0.1:{port}/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp:tools",
    }
    async with (
        client_metadata_document(tmp_path, "/ptc-mcp/client.json", document) as published,
        oauth_servers(metadata_documents=published.context) as servers,
    ):
        entry = await logged_in(servers, client_metadata_url=published.url, redirect_port=port)
        async with DownstreamPool({"remote": entry}) as pool:
            result = await pool.call_tool("remote", "add", {"a": 6, "b": 7})
        assert result.structured_content == {"result": 13}
        assert servers.provider.clients == {}  # not registered dynamically
        assert set(servers.provider.fetched_documents) == {published.url}
