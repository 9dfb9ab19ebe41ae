"""Several threads-pool worker processes on one host, started and watched by one parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from workers.plan import WorkerPlan


def run_worker_processes(
    plan: WorkerPlan,
    *,
    queues: str | None,
    name: str,
    database_pool_size: int,
    metrics_port: int | None,
    say: Callable[[str], None],
) -> int:
    """Run `plan.processes` threads-pool workers (`plan.shares()` threads each) and watch them:
    signals are passed on; one that dies is restarted, unless it dies within 30 s of its
    start (then all are stopped: a configuration error does not loop).

    The database pool is split between them too (WorkerPlan.database_pool_size). Only the
    first serves the metrics, over every process's samples (PROMETHEUS_MULTIPROC_DIR, set by
    the caller, is inherited by all)."""
    base, at, host = name.partition("@")
    commands = []
    for index, share in enumerate(plan.shares()):
        command = [sys.executable, "-m", "app.cli", "worker", "--pool=threads"]
        command += [f"--concurrency={share}", "--processes=1"]
        command += [f"--name={base}-{index + 1}{at}{host}"]
        command += [f"--queues={queues}"] if queues else []
        command += [f"--metrics-port={metrics_port}"] if metrics_port and index == 0 else []
        commands.append(command)
    env = {**os.environ, "CALLX_DATABASE__POOL_SIZE": str(database_pool_size)}

    def spawn(index: int) -> tuple[subprocess.Popen[bytes], float]:
        # A process group of its own: a signal to ours (Ctrl-C, kill -TERM -PGID) reaches it
        # once, passed on by us, and Celery never sees a second SIGTERM mid-shutdown.
        child = subprocess.Popen(
            commands[index], env=env, process_group=0, preexec_fn=_die_with_parent
        )
        return child, time.monotonic()

    children = [spawn(i) for i in range(plan.processes)]
    say(f"{plan.processes} worker processes, {plan.concurrency} threads in all")
    stopping: list[int] = []

    def forward(signum: int, _: object) -> None:
        stopping.append(signum)
        for child, _started in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        for index, (child, started) in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            if time.monotonic() - started < 30:
                say(f"worker process {index + 1} exited ({code}) at start: stopping all")
                forward(signal.SIGTERM, None)
                break
            say(f"worker process {index + 1} exited ({code}): restarting it")
            children[index] = spawn(index)
        if stopping and all(child.poll() is not None for child, _ in children):
            return max([0, *(child.returncode or 0 for child, _ in children)])
        time.sleep(0.5)


def _die_with_parent() -> None:
    """In a child, before exec: killed when the parent dies (Linux), as one process would be:
    a SIGKILLed worker loses its children too, never leaves them orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
