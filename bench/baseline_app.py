"""The baselines of the same run: the common tutorial design, a FastAPI endpoint that calls
Celery's `.delay()` (and bare `.delay()` from a script), with the product's own Celery settings.

The Celery app is built by the product's `create_celery` (threads pool, the same prefetch, acks early,
no result backend, task events per CELERY_SEND_TASK_EVENTS, the same transport) and reads the
same environment as the product, so the only difference is what happens around `.delay()`. Its
task does what a tutorial task does: one chat completion on the same stand-in with an httpx
client shared by the worker's threads (as tutorials write it), then the summary stored and a
counter bumped in one pipelined round trip. The counter is the completion signal.

    python -m celery -A bench.baseline_app worker -P threads -c 64 -Q baseline   # the worker
    python -m bench.baseline_app                                                  # the API (uvicorn)
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache

import httpx
import redis
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from core.settings import Settings, get_settings
from worker.celery_app import create_celery

QUEUE = "baseline"
DONE = "baseline-done"  # completion counter (database of REDIS_URL, private Redis of the run)
RESULT_TTL = 3600


def _settings() -> Settings:
    return get_settings()


celery_app = create_celery(_settings())
celery_app.conf.task_default_queue = QUEUE


@lru_cache(maxsize=1)
def _http() -> httpx.Client:
    return httpx.Client(timeout=30)  # httpx's default pool (100 connections, 20 kept alive), as a tutorial has it


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(_settings().redis_url, decode_responses=True)


@celery_app.task(name="baseline.summarize")
def summarize(task_id: str, content: str) -> None:
    """One LLM call, then store the answer and count the task done (one pipelined round trip)."""
    s = _settings()
    body = {"model": s.openrouter_model, "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {s.openrouter_api_key.get_secret_value() if s.openrouter_api_key else ''}"}
    answer = _http().post(s.openrouter_base_url.rstrip("/") + "/chat/completions", json=body, headers=headers)
    text = answer.json()["choices"][0]["message"]["content"]
    pipe = _redis().pipeline(transaction=False)
    pipe.set(f"baseline-result-{task_id}", text, ex=RESULT_TTL)
    pipe.incr(DONE)
    pipe.execute()


class TaskCreate(BaseModel):
    content: str


api = FastAPI()


@api.post("/api/v1/tasks/summarize/", status_code=202)
def submit(body: TaskCreate) -> dict[str, str]:
    """The tutorial endpoint: a sync route (FastAPI's thread pool) that calls `.delay()`."""
    task_id = str(uuid.uuid4())
    summarize.delay(task_id, body.content)
    return {"task_id": task_id, "state": "PENDING"}


@api.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    """Served like the product's API (`python -m api`): uvicorn, one process, the same log level."""
    s = _settings()
    uvicorn.run(api, host=s.api_host, port=int(os.environ.get("API_PORT", s.api_port)), log_level=s.log_level.lower())


if __name__ == "__main__":
    main()
