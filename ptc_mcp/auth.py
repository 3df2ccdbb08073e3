"""Who may call the server: ``TokenVerifier``s for the ``mcp`` SDK's bearer authentication.

- ``StaticTokenVerifier`` (``remote.auth.mode: bearer`` or ``--auth-token``): shared secrets, compared in constant
  time; each token is its own caller (``token-<8 hex of its SHA-256>``), so the audit trail tells them apart.
- ``JwtVerifier`` (``oauth``): JWT access tokens (RFC 9068) signed by the issuer's JWKS, a PEM public key or a
  shared HMAC key; checks signature, ``iss``, ``aud``, ``exp``/``nbf`` (with leeway) and reads the scopes from
  ``scope`` or ``scp``.
- ``IntrospectionVerifier`` (``oauth``): opaque tokens, checked by RFC 7662 introspection.

The SDK's middleware does the rest: 401 without a valid token, 403 ``insufficient_scope`` without the required
scopes, and the RFC 9728 protected-resource metadata that tells clients where to get a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from ptc_mcp.config.remote import AuthConfig
from ptc_mcp.errors import ConfigError

__all__ = [
    "IntrospectionVerifier",
    "JwtVerifier",
    "StaticTokenVerifier",
    "caller_identity",
    "token_verifier",
]

log = logging.getLogger(__name__)

_CACHE_ENTRIES = 4096


def caller_identity(token: AccessToken | None) -> str | None:
    """The principal a token stands for, as sessions and the audit trail record it: ``client[:subject][@issuer]``."""
    if token is None:
        return None
    identity = token.client_id
    if token.subject and token.subject != token.client_id:
        identity += f":{token.subject}"
    issuer = (token.claims or {}).get("iss")
    if issuer:
        identity += f"@{issuer}"
    return identity


class _TokenCache:
    """Verified tokens for ``ttl_s`` (never past their own expiry), keyed by a hash of the token, bounded in size."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[bytes, tuple[float, AccessToken]] = OrderedDict()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> AccessToken | None:
        if self._ttl_s <= 0:
            return None
        key = self._key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        until, access = entry
        if time.time() >= until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return access

    def put(self, token: str, access: AccessToken) -> None:
        if self._ttl_s <= 0:
            return
        until = time.time() + self._ttl_s
        if access.expires_at is not None:
            until = min(until, float(access.expires_at))
        self._entries[self._key(token)] = (until, access)
        while len(self._entries) > _CACHE_ENTRIES:
            self._entries.popitem(last=False)


class StaticTokenVerifier:
    """Accepts any of a few shared tokens; each grants ``scopes``."""

    def __init__(self, tokens: list[str], scopes: list[str] | None = None) -> None:
        accepted = [token for token in tokens if token]
        if not accepted:
            raise ConfigError("remote.auth.tokens: no non-empty token")
        self._digests = [hashlib.sha256(token.encode()).digest() for token in accepted]
        self._scopes = list(scopes or [])

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        matched = False
        for expected in self._digests:  # every comparison runs, so timing says nothing about which one matched
            matched |= hmac.compare_digest(digest, expected)
        if not matched:
            return None
        return AccessToken(token=token, client_id=f"token-{digest.hex()[:8]}", scopes=self._scopes)


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return raw.split()
    if isinstance(raw, list):
        return [str(item) for item in raw]
    return []


def _access_token(token: str, claims: Mapping[str, Any], resource: str | None) -> AccessToken:
    subject = claims.get("sub")
    client = claims.get("client_id") or claims.get("azp") or claims.get("cid") or subject or "unknown"
    expires = claims.get("exp")
    return AccessToken(
        token=token,
        client_id=str(client),
        scopes=_scopes(claims),
        expires_at=int(expires) if isinstance(expires, int | float) else None,
        resource=resource,
        subject=str(subject) if subject is not None else None,
        claims={"iss": claims.get("iss")},
    )


def _matching_audience(claims: Mapping[str, Any], audiences: list[str]) -> str | None:
    aud = claims.get("aud")
    values = aud if isinstance(aud, list) else [aud]
    return next((str(value) for value in values if value in audiences), None)


class JwtVerifier:
    """JWT access tokens from one issuer, for one audience (this server)."""

    def __init__(self, config: AuthConfig) -> None:
        assert config.issuer is not None
        self._issuer = config.issuer
        self._audiences = config.audience or [str(config.resource_server_url)]
        self._leeway_s = config.leeway_s
        self._cache = _TokenCache(config.cache_s)
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any = None
        if config.shared_secret is not None:
            self._key = config.shared_secret
            self._algorithms = ["HS256", "HS384", "HS512"]
        else:
            self._algorithms = [alg for alg in config.algorithms if not alg.startswith("HS")]
            if not self._algorithms:
                raise ConfigError("remote.auth.algorithms: no asymmetric algorithm for jwks_url/public_key_file")
            if config.public_key_file is not None:
                try:
                    self._key = Path(config.public_key_file).read_text(encoding="utf-8")
                except OSError as exc:
                    raise ConfigError(f"remote.auth.public_key_file: {exc.strerror}") from None
            else:
                assert config.jwks_url is not None
                self._jwks = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=max(int(config.cache_s), 1))

    async def verify_token(self, token: str) -> AccessToken | None:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        try:
            key = self._key
            if self._jwks is not None:
                jwks = self._jwks
                key = (await anyio.to_thread.run_sync(jwks.get_signing_key_from_jwt, token)).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as exc:
            log.warning("cannot fetch the issuer's signing keys: %s", exc)
            return None
        except jwt.InvalidTokenError as exc:
            log.info("refused a bearer token: %s", exc)
            return None
        access = _access_token(token, claims, _matching_audience(claims, self._audiences))
        self._cache.put(token, access)
        return access


class IntrospectionVerifier:
    """Opaque tokens, checked by the authorization server's RFC 7662 introspection endpoint."""

    def __init__(self, config: AuthConfig, *, http: httpx2.AsyncClient | None = None) -> None:
        assert config.introspection_url is not None and config.issuer is not None
        self._url = config.introspection_url
        self._issuer = config.issuer
        self._audiences = config.audience or [str(config.resource_server_url)]
        self._headers: dict[str, str] = {}
        if config.introspection_client_id:  # client_secret_basic (RFC 7662 section 2.1)
            pair = f"{config.introspection_client_id}:{config.introspection_client_secret or ''}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self._cache = _TokenCache(config.cache_s)
        self._http = http

    async def verify_token(self, token: str) -> AccessToken | None:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        try:
            if self._http is not None:
                response = await self._http.post(self._url, data={"token": token}, headers=self._headers)
            else:
                async with httpx2.AsyncClient(timeout=10.0) as http:
                    response = await http.post(self._url, data={"token": token}, headers=self._headers)
            claims = response.json() if response.status_code == 200 else {}
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("token introspection failed: %s", exc)
            return None
        if not isinstance(claims, dict) or claims.get("active") is not True:
            return None
        if claims.get("iss", self._issuer) != self._issuer:
            return None
        resource = _matching_audience(claims, self._audiences)
        if "aud" in claims and resource is None:
            return None
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires < time.time():
            return None
        access = _access_token(token, {"iss": self._issuer, **claims}, resource)
        self._cache.put(token, access)
        return access


def token_verifier(config: AuthConfig, extra_tokens: list[str] | None = None) -> TokenVerifier | None:
    """The verifier ``remote.auth`` asks for (``None``: no auth); ``extra_tokens`` (``--auth-token``) add bearer."""
    tokens = [*config.tokens, *(extra_tokens or [])]
    if config.mode == "oauth":
        if extra_tokens:
            raise ConfigError("--auth-token cannot be combined with remote.auth.mode 'oauth'")
        if config.introspection_url is not None:
            return IntrospectionVerifier(config)
        return JwtVerifier(config)
    if config.mode == "bearer" or any(tokens):
        return StaticTokenVerifier(tokens, config.required_scopes)
    return None
