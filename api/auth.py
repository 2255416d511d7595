"""API keys and scopes: who may call what, and whose tasks a caller sees.

Keys are configured in API_KEYS as `id:scope:sha256hex` entries, so the settings, the
environment and `.env` hold only hashes. A key is random and long (`python -m api.auth new`),
so one SHA-256 is enough: there is nothing to brute-force that a slow hash would protect.

Two scopes: `submit` creates tasks and reads, cancels, retries and deletes its own; `admin`
does everything (any task, queues, DLQ, breaker, workers, metrics). Every route declares one
access decision (`Public`, `SubmitDep` or `AdminDep`); `check_routes` refuses to build an app
with a route that has none, so a new route cannot ship open by accident.

With no key configured the API runs open (every caller is an anonymous admin), as a first
`make run` expects; it says so at start-up and in `/health`. AUTH_REQUIRED refuses that.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from api.errors import ApiError
from core.settings import Settings

log = logging.getLogger(__name__)

# A key id becomes part of a Redis key name (the owner's index) and of the task hash: keep it tame.
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
OPEN_WARNING = "no API_KEYS configured: the API is open to anyone who can reach it"


class Scope(StrEnum):
    """What a key may do; `admin` includes `submit`."""

    SUBMIT = "submit"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its id (stored as the owner of its tasks), scope and SHA-256 digest."""

    id: str
    scope: Scope
    digest: bytes


@dataclass(frozen=True)
class Principal:
    """Who is calling. `owner` is what their tasks are stored under; `sees_all` callers (admin
    keys, and everyone when the API runs open) see and act on every task."""

    id: str
    scope: Scope
    anonymous: bool = False

    @property
    def sees_all(self) -> bool:
        return self.scope is Scope.ADMIN

    @property
    def owner(self) -> str:
        return "" if self.anonymous else self.id


ANONYMOUS = Principal(id="", scope=Scope.ADMIN, anonymous=True)


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as API_KEYS stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(raw: str) -> list[ApiKey]:
    """API_KEYS (entries `id:scope:sha256hex`, separated by commas or white space) as keys.
    Raises ValueError naming the faulty entry by position (an entry may hold a pasted key)."""
    keys: list[ApiKey] = []
    for position, entry in enumerate(re.split(r"[,\s]+", raw.strip()), start=1):
        if not entry:
            continue
        key_id, _, rest = entry.partition(":")
        scope, _, digest = rest.partition(":")
        if not _KEY_ID.match(key_id) or scope not in set(Scope) or not _DIGEST.match(digest.lower()):
            raise ValueError(f"API_KEYS entry {position} is not `id:submit|admin:<sha256 hex>`")
        if any(k.id == key_id for k in keys):
            raise ValueError(f"API_KEYS entry {position} repeats the id {key_id!r}")
        keys.append(ApiKey(key_id, Scope(scope), bytes.fromhex(digest)))
    return keys


class KeyRing:
    """The configured keys; `authenticate` finds the one a request presents."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys of API_KEYS; with AUTH_REQUIRED, none is a start-up error (not an open API)."""
        ring = cls(parse_keys(settings.api_keys.get_secret_value()))
        if settings.auth_required and ring.open:
            raise RuntimeError("AUTH_REQUIRED is set but API_KEYS is empty; create one with `python -m api.auth new`")
        return ring

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key whose digest matches, comparing against every key in constant time each."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


# Declared as security schemes, so the OpenAPI document (and Swagger UI's Authorize button) shows them.
_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key: `X-API-Key: <key>`.")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
HeaderKey = Annotated[str | None, Security(_HEADER)]


# Dependencies are `async def` although none awaits (see api/deps.py).
async def _principal(request: Request, bearer: BearerCredentials, header: HeaderKey) -> Principal:
    ring: KeyRing = request.app.state.keyring
    if ring.open:
        return ANONYMOUS
    presented = (bearer.credentials if bearer else None) or header
    key = ring.authenticate(presented) if presented else None
    if key is None:
        # Never log what was presented: a mistyped key is usually one character away from a real one.
        log.warning("unauthenticated %s %s (%s)", request.method, request.url.path,
                    "unknown key" if presented else "no key")  # fmt: skip
        raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer <key> or X-API-Key)")
    return Principal(id=key.id, scope=key.scope)


async def public() -> None:
    """Access decision: no key needed (probes, the health summary, the API's own schema)."""


async def submit_scope(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    """Access decision: a `submit` or `admin` key; the caller acts on its own tasks."""
    return principal


async def admin_scope(request: Request, principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    """Access decision: an `admin` key."""
    if principal.scope is not Scope.ADMIN:
        log.warning("key %s refused on %s %s: admin scope needed", principal.id, request.method, request.url.path)
        raise ApiError(403, "forbidden", "this API key's scope does not allow this; an admin key is needed")
    return principal


Public = Depends(public)
Admin = Depends(admin_scope)
SubmitDep = Annotated[Principal, Depends(submit_scope)]
AdminDep = Annotated[Principal, Depends(admin_scope)]
DECISIONS: dict[Any, str] = {public: "public", submit_scope: Scope.SUBMIT.value, admin_scope: Scope.ADMIN.value}


def decisions_of(route: APIRoute) -> set[str]:
    """The access decisions among a route's dependencies (router-level ones included)."""
    found: set[str] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call in DECISIONS:
            found.add(DECISIONS[dependant.call])
        pending.extend(dependant.dependencies)
    return found


def check_routes(routes: Iterable[BaseRoute], error_model: type[Any]) -> None:
    """Refuse a route that has no access decision, or two that disagree; document each route's 401
    (and 403 for admin) with `error_model`. Run on a router before the app includes it: the app's
    copy of each route then builds the OpenAPI entries of those responses."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        decisions = decisions_of(route)
        if len(decisions) != 1:
            methods = ",".join(sorted(route.methods or ()))
            raise RuntimeError(f"route {methods} {route.path} needs exactly one access decision (api/auth.py)")
        statuses = {"public": (), Scope.SUBMIT.value: (401,), Scope.ADMIN.value: (401, 403)}[decisions.pop()]
        for status in statuses:
            route.responses.setdefault(status, {"model": error_model})


def owns(principal: Principal, owner: str) -> bool:
    """Whether `principal` may see and act on a task stored under `owner`."""
    return principal.sees_all or (bool(owner) and owner == principal.owner)


def new_key(key_id: str, scope: str) -> tuple[str, str]:
    """A fresh random key and its API_KEYS entry."""
    if not _KEY_ID.match(key_id) or scope not in set(Scope):
        raise ValueError("usage: python -m api.auth new <id> submit|admin")
    key = f"atf_{secrets.token_urlsafe(32)}"
    return key, f"{key_id}:{scope}:{hash_key(key)}"


def main(argv: list[str]) -> int:
    """`python -m api.auth new <id> <scope>`: print a new key (give it to the client) and its
    API_KEYS entry (put it in the settings); the key itself is stored nowhere."""
    if len(argv) != 3 or argv[0] != "new":
        sys.stderr.write("usage: python -m api.auth new <id> submit|admin\n")
        return 2
    try:
        key, entry = new_key(argv[1], argv[2])
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(f"key (give to the client, shown once): {key}\nAPI_KEYS entry: {entry}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
