"""Fixtures for the high-availability tests: a real Sentinel deployment per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from tests.ha.topology import MASTER_NAME, SentinelDeployment


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    ha = SentinelDeployment(tmp_path / "redis").start()
    yield ha
    ha.stop()


@pytest.fixture
def sentinel_settings(deployment: SentinelDeployment) -> Settings:
    """Settings that reach the deployment through its sentinels (database 2; the broker 3)."""
    return Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{deployment.master_port()}/2",
        redis_sentinels=deployment.sentinel_addresses,
        redis_sentinel_master=MASTER_NAME,
        celery_broker_db=3,
    )
