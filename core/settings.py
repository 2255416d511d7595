"""The one settings class: every process reads its configuration here, from the environment and `.env`."""

from __future__ import annotations

import json
import socket
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _url_db(url: str) -> int:
    """Database number in the URL's path; redis-py uses 0 when the path names none."""
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def _same_redis_database(broker_url: str, redis_url: str) -> bool:
    """Whether a Redis broker URL names the very database (host, port, number) of REDIS_URL."""
    broker, ours = urlsplit(broker_url), urlsplit(redis_url)
    if broker.scheme not in ("redis", "rediss"):
        return False
    where = (broker.hostname, broker.port or 6379, _url_db(broker_url))
    return where == (ours.hostname, ours.port or 6379, _url_db(redis_url))


def _addresses(setting: str, raw: str) -> list[tuple[str, int]]:
    """A comma-separated host:port list as pairs (an IPv6 host may be in brackets)."""
    addresses = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{setting} entries are host:port, not {entry!r}")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


class KeyLimits(BaseModel):
    """One key's limits; None is no limit."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1, description="the most of its tasks ACTIVE at once, fleet-wide")
    daily_tokens: int | None = Field(None, ge=1, description="tokens its completed tasks may use per UTC day")


class Settings(BaseSettings):
    """All settings; each one is documented in `.env.example`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = ""
    celery_broker_db: int = Field(1, ge=0, le=15)
    # Any kombu URL (a Redis, a Sentinel set, RabbitMQ's amqp://); empty: database CELERY_BROKER_DB
    # of REDIS_URL's server (or of the Sentinel master).
    celery_broker_url: str = ""
    redis_socket_timeout: float = Field(5.0, gt=0)
    redis_outage_patience: float = Field(60.0, ge=0)
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_sentinel_password: SecretStr | None = None
    redis_cluster_nodes: str = ""
    redis_shards: int = Field(1, ge=1, le=64)
    redis_min_replicas_ack: int = Field(0, ge=0)
    redis_replica_ack_timeout_ms: int = Field(1000, gt=0)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    # The dashboard's port under `make run` (utils/frontend_server.py; compose publishes nginx's
    # port with FRONTEND_PUBLISH instead).
    frontend_port: int = Field(3000, ge=1, le=65535)
    max_content_chars: int = Field(100_000, gt=0)
    list_page_max: int = Field(500, gt=0)
    bulk_max_items: int = Field(100, gt=0)
    idempotency_ttl_seconds: int = Field(24 * 3600, gt=0)
    sse_keepalive_seconds: float = Field(15.0, gt=0)
    diagnostics_timeout: float = Field(1.0, gt=0)

    # API security
    api_keys: SecretStr = SecretStr("")
    auth_required: bool = False
    cors_origins: str = "http://localhost:3000,http://127.0.0.1:3000"
    max_body_bytes: int = Field(2 * 1024 * 1024, gt=0)
    submit_rate_per_second: float = Field(20.0, gt=0)
    submit_rate_burst: int = Field(200, gt=0)
    # Per-key limits, a JSON object by key id ("*": the default of each limit a key does not set),
    # enforced by the claim:
    # {"alice": {"concurrency": 4, "daily_tokens": 200000}, "*": {"concurrency": 20}}
    api_key_limits: Annotated[dict[str, KeyLimits], NoDecode] = Field(default_factory=dict)

    # LLM provider
    llm_provider: Literal["auto", "openrouter", "offline"] = "auto"
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_model: str = "meta-llama/llama-3.3-70b-instruct"
    openrouter_timeout: float = Field(60.0, gt=0)
    openrouter_max_tokens: int = Field(512, gt=0)
    openrouter_fallback_models: str = ""
    openrouter_http_referer: str = ""
    openrouter_x_title: str = "AsyncTaskFlow"
    openrouter_status_cache_seconds: float = Field(30.0, gt=0)
    offline_summary_sentences: int = Field(3, gt=0)
    chunk_chars: int = Field(24_000, ge=1000)
    llm_rate_limit_requests: int = Field(0, ge=0)
    llm_rate_limit_interval: float = Field(1.0, gt=0)
    provider_pause_seconds: float = Field(300.0, gt=0)
    input_rejected_guard: int = Field(5, ge=0)

    # Task types
    task_type_modules: str = ""
    chat_allowed_models: str = ""
    chat_max_tokens: int = Field(4096, gt=0)
    extract_schema_max_chars: int = Field(20_000, gt=0)
    extract_response_format: Literal["json_schema", "json_object", "prompt"] = "json_schema"
    extract_attempts: int = Field(3, ge=1, le=10)

    # Retries
    max_retries: int = Field(3, ge=0)
    retry_backoff_base: float = Field(2.0, gt=0)
    retry_backoff_max: float = Field(300.0, gt=0)
    retry_after_max: float = Field(600.0, gt=0)
    rate_limit_backoff_base: float = Field(30.0, gt=0)
    rate_limit_backoff_max: float = Field(900.0, gt=0)
    rate_limit_jitter: float = Field(0.25, ge=0, le=1)
    rate_limit_max_wait: float = Field(7200.0, gt=0)

    # Consumer
    # Written into events and history as it is (core/scripts/_lib.lua): no quote, backslash or control
    # character, which JSON would need escaped (a host name has none).
    worker_id: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=200, pattern=r'^[^"\\\x00-\x1f]+$'
    )
    retry_ratio: float = Field(0.3, ge=0, le=1)
    retry_ratio_floor: float = Field(0.1, ge=0, le=1)
    retry_pressure_threshold: int = Field(100, gt=0)
    consumer_block_seconds: float = Field(1.0, gt=0)
    consumer_shutdown_grace: float = Field(30.0, ge=0)
    heartbeat_interval: float = Field(5.0, gt=0)
    heartbeat_ttl: float = Field(15.0, gt=0)

    # Celery worker
    celery_worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    celery_worker_concurrency: int = Field(64, gt=0)
    worker_prefetch: int = Field(8, ge=0)
    celery_task_time_limit: float = Field(300.0, gt=0)
    celery_task_soft_time_limit: float = Field(270.0, gt=0)
    worker_max_tasks_per_child: int = Field(0, ge=0)
    worker_max_memory_per_child: int = Field(0, ge=0)
    task_lease_margin: float = Field(30.0, ge=0)
    celery_send_task_events: bool = False

    # Circuit breaker
    circuit_breaker_fail_max: int = Field(5, gt=0)
    circuit_breaker_reset_timeout: float = Field(60.0, gt=0)

    # Scheduler
    scheduler_interval: float = Field(1.0, gt=0)
    scheduler_batch_size: int = Field(500, gt=0)
    result_ttl_seconds: int = Field(7 * 24 * 3600, gt=0)
    dlq_max_size: int = Field(10_000, gt=0)

    log_level: str = "INFO"

    @field_validator("api_key_limits", mode="before")
    @classmethod
    def _limits_json(cls, raw: object) -> object:
        """API_KEY_LIMITS arrives as JSON text; empty means no limits (as `{}`)."""
        if not isinstance(raw, str):
            return raw
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise ValueError(f"API_KEY_LIMITS must be a JSON object by key id: {e}") from None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.celery_task_soft_time_limit >= self.celery_task_time_limit:
            raise ValueError("CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT")
        if self.retry_ratio_floor > self.retry_ratio:
            raise ValueError("RETRY_RATIO_FLOOR must not exceed RETRY_RATIO")
        if self.heartbeat_ttl <= self.heartbeat_interval:
            raise ValueError("HEARTBEAT_TTL must be longer than HEARTBEAT_INTERVAL")
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must name the master when REDIS_SENTINELS is set")
        self.sentinel_addresses  # noqa: B018 - raises on a malformed REDIS_SENTINELS
        if self.cluster_addresses:
            self._check_cluster()
        if not self.celery_broker_url and self.celery_broker_db == _url_db(self.redis_url):
            raise ValueError("CELERY_BROKER_DB must differ from the database in REDIS_URL")
        if _same_redis_database(self.celery_broker_url, self.redis_url):
            raise ValueError("CELERY_BROKER_URL must not name REDIS_URL's database: a reset of one would hit the other")
        if self.submit_rate_burst < self.bulk_max_items:
            raise ValueError("SUBMIT_RATE_BURST must be at least BULK_MAX_ITEMS, or a full bulk could never pass")
        return self

    @property
    def limit_fields(self) -> dict[str, int]:
        """API_KEY_LIMITS as the claim reads them: `<key id>:concurrency`, `<key id>:daily_tokens`."""
        fields: dict[str, int] = {}
        for owner, limits in self.api_key_limits.items():
            for name, value in limits.model_dump(exclude_none=True).items():
                fields[f"{owner}:{name}"] = value
        return fields

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS_ORIGINS as a list (comma-separated in the environment)."""
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def _check_cluster(self) -> None:
        """A Redis Cluster has one database and no Celery transport of its own (kombu has none)."""
        if self.redis_sentinels:
            raise ValueError("REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other: a cluster fails over alone")
        if _url_db(self.redis_url) != 0:
            raise ValueError("REDIS_URL must name database 0 with REDIS_CLUSTER_NODES: a cluster has no other")
        if not self.celery_broker_url:
            raise ValueError(
                "REDIS_CLUSTER_NODES needs CELERY_BROKER_URL: kombu has no Redis Cluster transport, so Celery's "
                "broker is a plain or Sentinel Redis, or RabbitMQ (docs/DEPLOYMENT.md)"
            )

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinel."""
        return _addresses("REDIS_SENTINELS", self.redis_sentinels)

    @property
    def cluster_addresses(self) -> list[tuple[str, int]]:
        """REDIS_CLUSTER_NODES as (host, port) pairs; empty without a Redis Cluster."""
        return _addresses("REDIS_CLUSTER_NODES", self.redis_cluster_nodes)

    @property
    def broker_url(self) -> str:
        """Celery's broker: CELERY_BROKER_URL when set, else its own database number of our Redis, so
        resets of our keys never touch it. Under Sentinel that is kombu's `sentinel://` URL, one per
        sentinel, with REDIS_URL's credentials and the broker's database (the master's name goes in
        the transport options)."""
        if self.celery_broker_url:
            return self.celery_broker_url
        parts = urlsplit(self.redis_url)
        if not self.sentinel_addresses:
            return urlunsplit(parts._replace(path=f"/{self.celery_broker_db}"))
        user_info = parts.netloc.rpartition("@")[0]
        auth = f"{user_info}@" if user_info else ""
        hosts = [(f"[{host}]" if ":" in host else host, port) for host, port in self.sentinel_addresses]
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.celery_broker_db}" for host, port in hosts)

    @property
    def task_lease_seconds(self) -> float:
        """How long a task may stay ACTIVE before the reaper takes it back. A prefetched task
        (WORKER_PREFETCH) may first wait for a thread: at most one time limit, since the tasks
        before it, no more than the threads, all end within one."""
        time_limits = 2 if self.worker_prefetch else 1
        return self.celery_task_time_limit * time_limits + self.task_lease_margin

    @property
    def consumer_capacity(self) -> int:
        """Tasks a consumer keeps dispatched to its worker: one per thread, and the prefetched (at
        most one more per thread, so that the lease allows for a single wait)."""
        return self.celery_worker_concurrency + min(self.worker_prefetch, self.celery_worker_concurrency)

    @property
    def fallback_models(self) -> list[str]:
        """OPENROUTER_FALLBACK_MODELS as a list, in order, without blanks or the main model."""
        names = [n.strip() for n in self.openrouter_fallback_models.split(",")]
        return [n for n in dict.fromkeys(names) if n and n != self.openrouter_model]

    @property
    def task_type_module_list(self) -> list[str]:
        """TASK_TYPE_MODULES as a list of dotted module names."""
        return [n.strip() for n in self.task_type_modules.split(",") if n.strip()]

    @property
    def chat_models(self) -> list[str]:
        """The models a `chat` task may name: CHAT_ALLOWED_MODELS, else the configured model and
        its fallbacks."""
        names = [n.strip() for n in self.chat_allowed_models.split(",") if n.strip()]
        return list(dict.fromkeys(names)) or [self.openrouter_model, *self.fallback_models]

    @property
    def llm_uses_offline(self) -> bool:
        """With no key configured the offline provider runs (summarize answers with its extractive
        summarizer), so a new user needs no account."""
        if self.llm_provider == "auto":
            return self.openrouter_api_key is None or not self.openrouter_api_key.get_secret_value()
        return self.llm_provider == "offline"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once at start-up."""
    return Settings()
