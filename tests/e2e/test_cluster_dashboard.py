"""The dashboard in Chromium against the stack on a 3-master Redis Cluster holding 3 shards: the
same browser tests as on one Redis (imported, so they are the very same code), on another stack.
Submits spread over the shards, the live figures hear every shard, listings page through merged
cursors, a dead task's re-drive goes to its own shard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_dashboard import (  # noqa: F401 - collected here, run on this module's stack
    test_a_dead_task_offers_retry_and_the_retry_completes_it,
    test_a_dlq_task_requeued_from_the_ui_completes,
    test_each_edge_counts_its_own_transition_and_the_workers_table_agrees,
    test_submit_through_the_ui_completes_with_the_summary,
    test_task_detail_shows_the_task_and_offers_only_what_its_state_allows,
    test_tasks_page_filters_and_paginates,
    test_the_flow_diagram_counts_live_and_its_nodes_open_the_task_list,
)
from tests.integration.stack import Stack
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    redis_url: str, redis_cluster: list[int], llm: StubLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """This module's stack: on the session's cluster, 3 shards, Celery's broker in the private Redis."""
    seeds = ",".join(f"127.0.0.1:{port}" for port in redis_cluster)
    cluster = {"REDIS_CLUSTER_NODES": seeds, "REDIS_URL": f"redis://127.0.0.1:{redis_cluster[0]}/0"}
    cluster |= {"CELERY_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/5", "REDIS_SHARDS": "3"}
    running = Stack(redis_url, llm.url, tmp_path_factory.mktemp("e2e-cluster"), CIRCUIT_BREAKER_RESET_TIMEOUT="600",
                    **cluster).start_all()  # fmt: skip
    yield running
    running.stop()
