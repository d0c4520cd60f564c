"""API tokens: random secrets shown once, kept in Redis only as SHA-256 hashes; revocable, and
optionally expiring. The one owner of token records (ingest serves TokenService on top of it;
every gRPC service authenticates calls through `authenticate`).

Keys (under `LABELLOOP_REDIS_KEY_PREFIX`): `<p>:token:<token_id>` (hash: name, role, projects,
created_ms, expires_ms, revoked, sha256), `<p>:token-secret:<sha256 hex>` -> token id, and
`<p>:tokens` (sorted set of token ids by creation time). Token ids are hex, hashes are hex:
no valid id collides with another key.

A token is `llt_<43 url-safe characters>` (256 random bits). The bootstrap admin token of a
deployment (`LABELLOOP_ADMIN_TOKEN`, from a Secret; the local stack writes one to
`<stack dir>/admin.token`) is registered by `ensure_token` at each gRPC service's start; its id
is derived from its hash, so registering it again is a no-op, and a revoked one stays revoked.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from labelloop.core import access, redis_store
from labelloop.core.access import Principal
from labelloop.core.errors import InvalidArgument, NotFound, Unauthenticated
from labelloop.v1 import auth_pb2

TOKEN_PREFIX = "llt_"
BEARER = "bearer "


def new_secret() -> str:
    """A fresh token secret (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a secret is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The token of `authorization: Bearer <token>` call metadata; Unauthenticated when absent
    or malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        if not text.lower().startswith(BEARER) or not text[len(BEARER) :].strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        return text[len(BEARER) :].strip()
    raise Unauthenticated("missing token: send 'authorization: Bearer <token>' metadata")


def _info(token_id: str, record: dict[str, str]) -> auth_pb2.TokenInfo:
    info = auth_pb2.TokenInfo(
        token_id=token_id,
        name=record.get("name", ""),
        role=int(record.get("role", "0")),  # type: ignore[arg-type]
        project_ids=[p for p in record.get("projects", "").split(",") if p],
        revoked=record.get("revoked") == "1",
    )
    info.created_at.FromMilliseconds(int(record.get("created_ms", "0")))
    expires_ms = int(record.get("expires_ms", "0"))
    if expires_ms:
        info.expires_at.FromMilliseconds(expires_ms)
    return info


class TokenStore:
    """Token records in Redis. Redis errors surface as DependencyUnavailable (UNAVAILABLE)."""

    def __init__(self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.keys = redis_store.Keys(prefix)
        self.clock = clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def create(
        self, name: str, role: int, project_ids: Sequence[str] = (), ttl_seconds: int = 0
    ) -> tuple[str, auth_pb2.TokenInfo]:
        """A new token: (the secret, shown once; its record). InvalidArgument names the bad field."""
        secret = new_secret()
        info = self._write(secrets.token_hex(8), secret, name, role, project_ids, ttl_seconds, only_new=False)
        return secret, info

    def ensure_token(self, secret: str, name: str, role: int = access.ADMIN) -> auth_pb2.TokenInfo:
        """Register a token whose secret was chosen elsewhere (the deployment's bootstrap admin
        token). Idempotent; never revives a revoked token."""
        if len(secret) < 16:
            raise InvalidArgument("token", "a bootstrap token must be at least 16 characters")
        return self._write(f"boot{digest(secret)[:12]}", secret, name, role, (), 0, only_new=True)

    def _write(
        self,
        token_id: str,
        secret: str,
        name: str,
        role: int,
        project_ids: Sequence[str],
        ttl_seconds: int,
        only_new: bool,
    ) -> auth_pb2.TokenInfo:
        name = name.strip()
        if not name:
            raise InvalidArgument("name", "is empty (who holds the token; the annotator id for annotators)")
        if role not in access.ROLE_NAMES:
            raise InvalidArgument("role", "must be client, annotator or admin")
        projects = sorted({p.strip() for p in project_ids if p.strip()})
        if role != access.ADMIN and not projects:
            raise InvalidArgument(
                "project_ids", f"a {access.role_name(role)} token needs at least one project"
            )
        if any("," in p for p in projects):
            raise InvalidArgument("project_ids", "a project id cannot contain ','")
        if ttl_seconds < 0:
            raise InvalidArgument("ttl_seconds", "must be 0 (never expires) or more")
        now = self._now_ms()
        sha = digest(secret)
        record = {
            "name": name,
            "role": str(role),
            "projects": ",".join(projects),
            "created_ms": str(now),
            "expires_ms": str(now + ttl_seconds * 1000 if ttl_seconds else 0),
            "revoked": "0",
            "sha256": sha,
        }
        key = self.keys("token", token_id)
        try:
            if only_new and self.client.exists(key):
                return self.info(token_id)
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=record)  # type: ignore[arg-type]
                pipe.set(self.keys("token-secret", sha), token_id)
                pipe.zadd(self.keys("tokens"), {token_id: now})
                pipe.execute()
        except redis.RedisError as exc:
            raise redis_store.unavailable(exc) from exc
        return _info(token_id, record)

    def _record(self, token_id: str) -> dict[str, str]:
        try:
            raw = self.client.hgetall(self.keys("token", token_id))
        except redis.RedisError as exc:
            raise redis_store.unavailable(exc) from exc
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def info(self, token_id: str) -> auth_pb2.TokenInfo:
        """A token's record; NotFound when unknown."""
        record = self._record(token_id) if token_id else {}
        if not record:
            raise NotFound(f"no token with id {token_id!r}")
        return _info(token_id, record)

    def list(self) -> list[auth_pb2.TokenInfo]:
        """Every token, revoked ones included, by creation time."""
        try:
            ids = [i.decode() for i in self.client.zrange(self.keys("tokens"), 0, -1)]  # type: ignore[union-attr]
        except redis.RedisError as exc:
            raise redis_store.unavailable(exc) from exc
        out = []
        for token_id in ids:
            record = self._record(token_id)
            if record:
                out.append(_info(token_id, record))
        return out

    def revoke(self, token_id: str) -> auth_pb2.TokenInfo:
        """Revoke a token (idempotent); NotFound when unknown. Takes effect on the next call."""
        self.info(token_id)
        try:
            self.client.hset(self.keys("token", token_id), "revoked", "1")
        except redis.RedisError as exc:
            raise redis_store.unavailable(exc) from exc
        return self.info(token_id)

    def authenticate(self, secret: str) -> Principal:
        """The principal of a presented secret; Unauthenticated for an unknown, revoked or expired one."""
        try:
            raw_id = self.client.get(self.keys("token-secret", digest(secret)))
        except redis.RedisError as exc:
            raise redis_store.unavailable(exc) from exc
        if raw_id is None:
            raise Unauthenticated("unknown token")
        token_id = raw_id.decode()  # type: ignore[union-attr]
        record = self._record(token_id)
        if not record:
            raise Unauthenticated("unknown token")
        if record.get("revoked") == "1":
            raise Unauthenticated(f"token {token_id!r} ({record.get('name')}) was revoked")
        expires_ms = int(record.get("expires_ms", "0"))
        if expires_ms and self._now_ms() >= expires_ms:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_ms / 1000))
            raise Unauthenticated(f"token {token_id!r} ({record.get('name')}) expired at {when}")
        return Principal(
            token_id=token_id,
            name=record.get("name", ""),
            role=int(record.get("role", "0")),
            project_ids=tuple(p for p in record.get("projects", "").split(",") if p),
        )
