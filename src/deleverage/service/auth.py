"""Bearer API keys with two roles: ``feeder`` posts inputs (and reads), ``reader`` only reads.

The service keeps SHA-256 digests of the keys, never the keys. A presented key is hashed and compared
with *every* configured digest using :func:`hmac.compare_digest`, without stopping at a match, so the
time taken does not tell which key (or which prefix) was close. No key or a wrong key → 401 with
``WWW-Authenticate: Bearer``; a valid key whose role may not do the call → 403.

A reader key may be *scoped* to accounts (``accounts = [...]`` in its config): it reads those
accounts, their liquidations, events and stream messages, and nothing venue-wide (``/v1/state``,
``/v1/inputs``, ``/metrics`` answer 403). Keys are checked from the request headers before any body is
read, so an unauthenticated client cannot make the service read (or parse) a large body.
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
    """Who is calling: the key's name (stored with each input it posts), its role and its scope."""

    name: str
    role: Role
    accounts: frozenset[str] | None = None  # None: every account

    @property
    def scoped(self) -> bool:
        return self.accounts is not None

    def may_read(self, account_id: str | None) -> bool:
        return self.accounts is None or (account_id is not None and account_id in self.accounts)


class KeyRing:
    """The configured keys; :meth:`identify` maps a presented key to its client in constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), Client(k.name, k.role, None if k.accounts is None
                                                          else frozenset(k.accounts))) for k in keys]

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


def token_of(header: str) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_token(request: Request) -> str:
    token = token_of(request.headers.get("authorization", ""))
    if token is None:
        raise _unauthorized("missing bearer API key")
    return token


def check(ring: KeyRing, token: str | None, right: str, *, venue_wide: bool = False) -> tuple[int, str] | Client:
    """The caller's :class:`Client`, or (status, message) for a 401/403."""
    if token is None:
        return 401, "missing bearer API key"
    client = ring.identify(token)
    if client is None:
        return 401, "unknown API key"
    if right not in ROLE_RIGHTS[client.role]:
        return 403, f"role {client.role!r} may not {right}"
    if venue_wide and client.scoped:
        return 403, f"key {client.name!r} is scoped to accounts; this is venue-wide"
    return client


def require(right: str, *, venue_wide: bool = False) -> Callable[[Request], Client]:
    """A FastAPI dependency: the caller's :class:`Client` if its role has ``right``, else 401/403."""

    def dependency(request: Request) -> Client:
        ring: KeyRing = request.app.state.keyring
        outcome = check(ring, bearer_token(request), right, venue_wide=venue_wide)
        if isinstance(outcome, Client):
            return outcome
        code, message = outcome
        if code == 401:
            raise _unauthorized(message)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=message)

    return dependency


__all__ = ["ROLE_RIGHTS", "Client", "KeyRing", "bearer_token", "check", "hash_key", "new_key", "require",
           "token_of"]
