"""WorkerPlan: the processes and threads `callx worker` runs, from backend, cores and options."""

from __future__ import annotations

import pytest

from workers.plan import WorkerPlan, default_worker_processes, plan_worker


@pytest.mark.parametrize(
    ("cores", "concurrency", "threads_setting", "expected"),
    [
        (2, None, None, (1, 2)),  # one process, every core
        (8, None, None, (1, 8)),
        (8, 4, None, (4, 2)),  # 4 processes share the 8 cores
        (8, 3, None, (3, 2)),  # never more threads than cores: 3 x 2 <= 8
        (8, None, 2, (4, 2)),  # threads fixed: as many processes as fit
        (1, 4, None, (4, 1)),  # asked for more processes than cores: one thread each
    ],
)
def test_local_model_never_oversubscribes_the_cores(
    cores: int, concurrency: int | None, threads_setting: int | None, expected: tuple[int, int]
) -> None:
    plan = plan_worker("llamacpp", cores, concurrency=concurrency, llama_threads=threads_setting)
    assert (plan.concurrency, plan.llama_threads) == expected
    assert plan.pool == "prefork" and plan.processes == 1
    if concurrency is None:
        assert plan.concurrency * (plan.llama_threads or 0) <= cores


def test_api_backend_spreads_threads_over_processes() -> None:
    plan = plan_worker("openai", 2, openai_concurrency=200)
    assert (plan.pool, plan.concurrency, plan.processes) == ("threads", 200, 4)
    assert plan.shares() == [50, 50, 50, 50]
    assert plan.llama_threads is None


def test_api_backend_options_win_and_processes_never_exceed_threads() -> None:
    assert plan_worker("openai", 8, concurrency=3, processes=5).processes == 3
    assert plan_worker("openai", 8, concurrency=10, openai_processes=2).shares() == [5, 5]
    uneven = plan_worker("openai", 8, concurrency=11, processes=3)
    assert uneven.shares() == [4, 4, 3] and sum(uneven.shares()) == 11
    # A pool other than threads runs in one process, whatever processes would say.
    assert plan_worker("openai", 8, pool="prefork", processes=4).processes == 1


def test_database_pool_is_split_between_supervised_processes() -> None:
    plan = WorkerPlan("openai", "threads", 200, processes=4)
    assert plan.database_pool_size(10) == 3  # ceil(10 / 4): the host holds about one pool
    assert plan.database_pool_size(2) == 2  # never under 2 per process
    assert WorkerPlan("openai", "threads", 10, processes=1).database_pool_size(10) == 10


def test_other_backends_run_one_prefork_process_per_core() -> None:
    plan = plan_worker("fake", 6)
    assert (plan.pool, plan.concurrency, plan.processes, plan.llama_threads) == (
        "prefork",
        6,
        1,
        None,
    )
    assert plan_worker("fake", 6, pool="solo", concurrency=1).pool == "solo"


@pytest.mark.parametrize(
    ("concurrency", "cores", "processes"),
    [(1, 2, 1), (50, 2, 1), (51, 2, 2), (200, 2, 4), (1000, 2, 4), (1000, 16, 20)],
)
def test_default_processes_one_per_50_threads_at_most_two_per_core(
    concurrency: int, cores: int, processes: int
) -> None:
    assert default_worker_processes(concurrency, cores) == processes
