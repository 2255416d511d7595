"""The one settings class: defaults, cross-field validation, derived values."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import Settings


def test_defaults_are_valid() -> None:
    s = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert (s.celery_broker_db, s.retry_ratio, s.max_retries) == (1, 0.3, 3)
    assert s.celery_task_soft_time_limit < s.celery_task_time_limit
    assert s.task_lease_seconds == 2 * s.celery_task_time_limit + s.task_lease_margin, "a prefetched task may wait"
    assert s.broker_url == "redis://127.0.0.1:6379/1"
    assert s.llm_uses_offline


def test_defaults_from_the_environment_alone_are_valid() -> None:
    s = Settings()  # REDIS_URL comes from the test environment, everything else is a default
    assert s.redis_url == "redis://127.0.0.1:1/0"
    assert s.broker_url == "redis://127.0.0.1:1/1"


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://h:6379/1", 1),
        ("redis://h:6379/0", 0),
        ("redis://h:6379", 0),
        ("redis://h:6379/", 0),
        ("redis://:pw@h:6379/5", 5),
    ],
)
def test_broker_in_our_own_database_is_rejected(url: str, db: int) -> None:
    with pytest.raises(ValidationError, match="CELERY_BROKER_DB"):
        Settings(redis_url=url, celery_broker_db=db)


def test_broker_db_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/3")
    monkeypatch.setenv("CELERY_BROKER_DB", "3")
    with pytest.raises(ValidationError, match="CELERY_BROKER_DB"):
        Settings()
    monkeypatch.setenv("CELERY_BROKER_DB", "4")
    assert Settings().broker_url == "redis://h:6379/4"


@pytest.mark.parametrize(("hard", "soft"), [(100.0, 100.0), (100.0, 150.0)])
def test_soft_time_limit_must_be_below_the_hard_one(hard: float, soft: float) -> None:
    with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT"):
        Settings(celery_task_time_limit=hard, celery_task_soft_time_limit=soft)
    assert Settings(celery_task_time_limit=hard, celery_task_soft_time_limit=hard - 1).task_lease_seconds > hard


def test_other_cross_checks() -> None:
    with pytest.raises(ValidationError, match="RETRY_RATIO_FLOOR"):
        Settings(retry_ratio=0.2, retry_ratio_floor=0.3)
    with pytest.raises(ValidationError, match="HEARTBEAT_TTL"):
        Settings(heartbeat_interval=5, heartbeat_ttl=5)
    with pytest.raises(ValidationError):
        Settings(celery_broker_db=16)


@pytest.mark.parametrize(
    ("url", "db", "broker"),
    [
        ("redis://127.0.0.1:6379/0", 1, "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379", 1, "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379", 2, "redis://127.0.0.1:6379/2"),
        ("redis://:s3cret@redis:6380/2", 5, "redis://:s3cret@redis:6380/5"),
        ("redis://user:s3cret@redis/7", 0, "redis://user:s3cret@redis/0"),
        ("rediss://user:pw@cache.example.com:6380/0", 3, "rediss://user:pw@cache.example.com:6380/3"),
    ],
)
def test_celery_broker_url_is_our_url_in_another_database(url: str, db: int, broker: str) -> None:
    assert Settings(redis_url=url, celery_broker_db=db).broker_url == broker


def test_celery_broker_url_names_any_kombu_broker_but_never_our_database() -> None:
    rabbit = Settings(_env_file=None, celery_broker_url="amqp://guest:guest@127.0.0.1:5672//", celery_broker_db=0)
    assert rabbit.broker_url == "amqp://guest:guest@127.0.0.1:5672//", "CELERY_BROKER_DB no longer matters"
    other_db = Settings(_env_file=None, redis_url="redis://h:6379/2", celery_broker_url="redis://h:6379/3")
    assert other_db.broker_url == "redis://h:6379/3"
    with pytest.raises(ValidationError, match="CELERY_BROKER_URL"):
        Settings(_env_file=None, redis_url="redis://h:6379/2", celery_broker_url="redis://:pw@h/2")


def test_api_key_limits_are_json_by_key_and_empty_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_LIMITS", "")
    assert Settings(_env_file=None).limit_fields == {}
    monkeypatch.setenv("API_KEY_LIMITS", '{"alice": {"concurrency": 2}, "*": {"daily_tokens": 9}}')
    assert Settings(_env_file=None).limit_fields == {"alice:concurrency": 2, "*:daily_tokens": 9}
    for bad, why in (("{alice: 2}", "JSON object"), ('{"alice": {"concurency": 2}}', "concurency"),
                     ('{"alice": {"concurrency": 0}}', "greater than or equal to 1")):  # fmt: skip
        monkeypatch.setenv("API_KEY_LIMITS", bad)
        with pytest.raises(ValidationError, match=why):
            Settings(_env_file=None)


def test_llm_is_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().llm_uses_offline
    assert Settings(openrouter_api_key=SecretStr("")).llm_uses_offline
    assert not Settings(openrouter_api_key=SecretStr("sk-or-123")).llm_uses_offline
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-456")
    assert not Settings().llm_uses_offline
    key = Settings().openrouter_api_key
    assert key is not None and key.get_secret_value() == "sk-or-456"


def test_explicit_provider_wins_over_the_key() -> None:
    assert Settings(llm_provider="offline", openrouter_api_key=SecretStr("sk-or-123")).llm_uses_offline
    assert not Settings(llm_provider="openrouter").llm_uses_offline


def test_prefetch_sets_the_consumers_capacity_celerys_reservation_and_the_lease() -> None:
    from worker.celery_app import create_celery

    none = Settings(celery_worker_concurrency=64, worker_prefetch=0)
    assert none.consumer_capacity == 64
    assert none.task_lease_seconds == none.celery_task_time_limit + none.task_lease_margin
    some = Settings(celery_worker_concurrency=64, worker_prefetch=8)
    assert some.consumer_capacity == 72
    assert create_celery(some).conf.worker_prefetch_multiplier * 64 >= 72, "Celery lets every dispatched task in"
    assert create_celery(none).conf.worker_prefetch_multiplier == 1
    assert Settings(celery_worker_concurrency=4, worker_prefetch=8).consumer_capacity == 8, "one wait per thread"


def test_sentinel_settings_give_the_sentinels_and_kombus_broker_url() -> None:
    s = Settings(
        redis_url="redis://:pw@ignored:6379/2",
        redis_sentinels=" s1:26379, [::1]:26380 ,",
        redis_sentinel_master="atf",
        celery_broker_db=3,
    )
    assert s.sentinel_addresses == [("s1", 26379), ("::1", 26380)]
    # One sentinel:// URL per sentinel, REDIS_URL's password, the broker's database.
    assert s.broker_url == "sentinel://:pw@s1:26379/3;sentinel://:pw@[::1]:26380/3"


@pytest.mark.parametrize(
    ("sentinels", "master", "message"),
    [
        ("s1:26379", "", "REDIS_SENTINEL_MASTER"),
        ("s1", "atf", "host:port"),
        ("s1:port", "atf", "host:port"),
    ],
)
def test_bad_sentinel_settings_are_refused_at_start(sentinels: str, master: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(redis_sentinels=sentinels, redis_sentinel_master=master)


def test_cluster_nodes_are_seed_addresses_and_need_a_broker_of_their_own() -> None:
    s = Settings(redis_cluster_nodes="n1:7000, n2:7001", celery_broker_url="amqp://guest@mq//")
    assert s.cluster_addresses == [("n1", 7000), ("n2", 7001)]
    assert s.broker_url == "amqp://guest@mq//"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "needs CELERY_BROKER_URL"),
        ({"redis_sentinels": "s1:26379", "redis_sentinel_master": "atf"}, "exclude each other"),
        ({"redis_url": "redis://127.0.0.1:6379/2"}, "database 0"),
        ({"redis_cluster_nodes": "n1"}, "host:port"),
    ],
)
def test_bad_cluster_settings_are_refused_at_start(extra: dict[str, str], message: str) -> None:
    values = {"redis_cluster_nodes": "n1:7000", "celery_broker_url": "redis://mq:6379/0"}
    if not extra:
        del values["celery_broker_url"]
    with pytest.raises(ValidationError, match=message):
        Settings(**{**values, **extra})


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a\nb", "a\tb", ""])
def test_a_worker_id_holds_nothing_json_would_escape(bad: str) -> None:
    """The scripts write worker names into events and history as they are (core/scripts/_lib.lua)."""
    with pytest.raises(ValidationError, match="worker_id"):
        Settings(worker_id=bad)
    assert Settings(worker_id="host-1.example_b:c").worker_id == "host-1.example_b:c"
