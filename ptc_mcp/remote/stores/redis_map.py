"""``RedisSessionMap``: the session map in Redis (the ``redis`` extra: ``pip install "ptc-mcp[redis]"``).

One hash per session (``<prefix>{<key>}:s``: owner, state, version, fence, last_used), the lease in its own key
(``<prefix>{<key>}:l``), taken by ``SET NX PX`` with the value ``<holder>:<fence>``, so it runs out by itself when its
instance dies. Each operation is one Lua script, atomic on the server; the two keys of a session share a hash tag, so
it works on Redis Cluster too. ``EXPIRE`` removes a session's hash some time after its idle limit (a backstop for a
fleet with no instance left to reap); the reaper, through a sorted set of last uses, stops interpreters first.
TLS and AUTH come through the URL (``rediss://user:password@host:6380/0``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ptc_mcp.errors import ConfigError
from ptc_mcp.remote.session_map import Lease, SessionMapError, SharedRecord, digest

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError('remote.session_map.kind "redis" needs the redis client: pip install "ptc-mcp[redis]"') from exc

__all__ = ["RedisSessionMap"]

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'version', 0, 'fence', 0, 'leased', 0, 'last_used', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') + 1
if not redis.call('SET', KEYS[2], ARGV[1] .. ':' .. fence, 'NX', 'PX', ARGV[2]) then return false end
redis.call('HSET', KEYS[1], 'fence', fence)
if redis.call('HGET', KEYS[1], 'leased') == '1' then redis.call('HINCRBY', KEYS[1], 'version', 1) end
redis.call('HSET', KEYS[1], 'leased', 1)
local record = redis.call('HMGET', KEYS[1], 'owner', 'state', 'version', 'last_used')
return {record[1], record[2] or '', record[3], record[4], fence}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'last_used', ARGV[3], 'leased', 0)
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return version
"""

_REAP = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local last_used = redis.call('HGET', KEYS[1], 'last_used')
if last_used and tonumber(last_used) >= tonumber(ARGV[1]) then return false end
local state = redis.call('HGET', KEYS[1], 'state') or ''
redis.call('DEL', KEYS[1])
return {state}
"""


class RedisSessionMap:
    """A ``SessionMap`` in Redis (``redis.asyncio``: no thread, no blocking)."""

    def __init__(self, url: str, *, expire_s: float, prefix: str = "ptc-mcp:", timeout_s: float = 5.0) -> None:
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._prefix = prefix
        self._expire_s = max(int(expire_s * 2), 60)  # after the reaper's turn (idle_s), not before
        self._idle = f"{prefix}idle"
        self._create = self._client.register_script(_CREATE)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._reap = self._client.register_script(_REAP)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}{{{key}}}:s", f"{self._prefix}{{{key}}}:l"

    async def create(self, handle: str, owner: str | None) -> None:
        key, now = digest(handle), time.time()
        record, _lease = self._keys(key)
        try:
            await self._create(keys=[record], args=[digest(owner), repr(now), self._expire_s])
            await self._client.zadd(self._idle, {key: now})
        except RedisError as exc:
            raise _failure(exc) from None

    async def lookup(self, handle: str) -> SharedRecord | None:
        record, _lease = self._keys(digest(handle))
        try:
            owner, state, version, last_used = map(
                _text, await self._client.hmget(record, ["owner", "state", "version", "last_used"])
            )
        except RedisError as exc:
            raise _failure(exc) from None
        if owner is None or version is None or last_used is None:
            return None
        return _record(owner, state, version, last_used)

    async def acquire(self, handle: str, holder: str, lease_s: float) -> Lease | None:
        try:
            found = await self._acquire(keys=list(self._keys(digest(handle))), args=[holder, int(lease_s * 1000)])
        except RedisError as exc:
            raise _failure(exc) from None
        if not found:
            return None
        owner, state, version, last_used, fence = found
        return Lease(_record(owner, state, version, last_used), int(fence))

    async def renew(self, handle: str, holder: str, fence: int, lease_s: float) -> bool:
        _record_key, lease = self._keys(digest(handle))
        try:
            return bool(await self._renew(keys=[lease], args=[f"{holder}:{fence}", int(lease_s * 1000)]))
        except RedisError as exc:
            raise _failure(exc) from None

    async def release(self, handle: str, holder: str, fence: int, state: dict[str, Any] | None) -> int:
        key, now = digest(handle), time.time()
        encoded = json.dumps(state, separators=(",", ":")) if state is not None else ""
        try:
            version = int(
                await self._release(
                    keys=list(self._keys(key)), args=[f"{holder}:{fence}", encoded, repr(now), self._expire_s]
                )
            )
            if version >= 0:
                await self._client.zadd(self._idle, {key: now})
        except RedisError as exc:
            raise _failure(exc) from None
        return version

    async def delete(self, handle: str) -> None:
        key = digest(handle)
        try:
            await self._client.delete(*self._keys(key))
            await self._client.zrem(self._idle, key)
        except RedisError as exc:
            raise _failure(exc) from None

    async def reap_idle(self, idle_s: float) -> list[tuple[str, dict[str, Any] | None]]:
        cutoff = time.time() - idle_s
        reaped: list[tuple[str, dict[str, Any] | None]] = []
        try:
            for found_key in await self._client.zrangebyscore(self._idle, "-inf", cutoff):
                key = str(found_key)
                found = await self._reap(keys=list(self._keys(key)), args=[repr(cutoff)])
                if found:
                    reaped.append((key, json.loads(found[0]) if found[0] else None))
                    await self._client.zrem(self._idle, key)
                elif not await self._client.exists(self._keys(key)[0]):
                    await self._client.zrem(self._idle, key)  # expired by Redis meanwhile
        except RedisError as exc:
            raise _failure(exc) from None
        return reaped

    async def aclose(self) -> None:
        await self._client.aclose()


def _record(owner: str, state: str | None, version: str, last_used: str) -> SharedRecord:
    return SharedRecord(
        owner=owner, state=json.loads(state) if state else None, version=int(version), last_used=float(last_used)
    )


def _text(value: object) -> str | None:
    """``decode_responses`` gives ``str``; the client's types cannot say so."""
    return None if value is None else str(value)


def _failure(exc: RedisError) -> SessionMapError:
    return SessionMapError(f"the session map (Redis) failed: {type(exc).__name__}: {exc}")
