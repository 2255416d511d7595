"""API keys for the tests of the keyed mode: three keys, their API_KEYS value and headers."""

from __future__ import annotations

from pydantic import SecretStr

from api.auth import hash_key
from core.settings import Settings

ADMIN_KEY = "atf_test-admin-7Qm2vX9pL4"
ALICE_KEY = "atf_test-alice-Zr8nK3wB6y"
BOB_KEY = "atf_test-bob-Hd5tF1cJ0s"
API_KEYS = f"ops:admin:{hash_key(ADMIN_KEY)},alice:submit:{hash_key(ALICE_KEY)} bob:submit:{hash_key(BOB_KEY)}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ADMIN, ALICE, BOB = bearer(ADMIN_KEY), bearer(ALICE_KEY), {"X-API-Key": BOB_KEY}


def keyed(settings: Settings, **overrides: object) -> Settings:
    """`settings` with the three keys configured (and any other field changed)."""
    fields = {"api_keys": SecretStr(API_KEYS), "diagnostics_timeout": 0.2, **overrides}
    return settings.model_copy(update=fields)
