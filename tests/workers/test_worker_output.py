"""`callx worker` is quiet by default (callx's JSON log lines only: no Celery banner, no warning
about running as root); `callx --verbose worker` shows them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.config import Settings
from support.env import process_env
from support.services import CallxProcess, wait_for

pytestmark = pytest.mark.services

BANNER = "[queues]"


@pytest.mark.parametrize("verbose", [False, True])
def test_the_worker_banner_only_with_verbose(
    settings: Settings,
    clean_db: None,
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
    verbose: bool,
) -> None:
    args = ["--verbose", "worker"] if verbose else ["worker"]
    worker = start_callx([*args, "--pool", "solo"], process_env(settings), "worker")
    wait_for(lambda: " ready." in worker.log(), 60, "the worker to be ready")
    worker.stop()
    log = worker.log()
    assert (BANNER in log) == verbose, log[-3000:]
    if not verbose:
        lines = [line for line in log.splitlines() if line.strip()]
        # callx's JSON log, and Celery's one-line goodbye.
        assert all(line.startswith("{") or "Warm shutdown" in line for line in lines), log
