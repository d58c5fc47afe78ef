"""Bearer API keys with two roles: ``feeder`` posts inputs (and reads), ``reader`` only reads.

The service keeps SHA-256 digests of the keys, never the keys. A presented key is hashed and compared
with *every* configured digest using :func:`hmac.compare_digest`, without stopping at a match, so the
time taken does not tell which key (or which prefix) was close. No key or a wrong key → 401 with
``WWW-Authenticate: Bearer``; a valid key whose role may not do the call → 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from deleverage.service.config import ApiKey, Role

ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "feeder": frozenset({"read", "write"}),
    "reader": frozenset({"read"}),
}


def hash_key(key: str) -> str:
    """SHA-256 hex digest of an API key: what goes into the config."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its digest (give the key to the client, put the digest in the config)."""
    key = secrets.token_urlsafe(32)
    return key, hash_key(key)


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: the key's name (stored with each input it posts) and its role."""

    name: str
    role: Role


class KeyRing:
    """The configured keys; :meth:`identify` maps a presented key to its client in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), Client(k.name, k.role)) for k in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def identify(self, presented: str) -> Client | None:
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: Client | None = None
        for stored, client in self._keys:
            if hmac.compare_digest(digest, stored) and found is None:
                found = client
        return found


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer API key")
    return token.strip()


def require(right: str) -> Callable[[Request], Client]:
    """A FastAPI dependency: the caller's :class:`Client` if its role has ``right``, else 401/403."""

    def dependency(request: Request) -> Client:
        ring: KeyRing = request.app.state.keyring
        client = ring.identify(bearer_token(request))
        if client is None:
            raise _unauthorized("unknown API key")
        if right not in ROLE_RIGHTS[client.role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"role {client.role!r} may not {right}")
        return client

    return dependency


__all__ = ["ROLE_RIGHTS", "Client", "KeyRing", "bearer_token", "hash_key", "new_key", "require"]
