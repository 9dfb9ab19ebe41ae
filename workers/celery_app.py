"""The worker's Celery app. The backend (and the model) is built in each worker process after
the fork, never at import and never in the parent: llama.cpp state does not survive a fork."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import Settings, get_settings
from app.db.session import build_engine, build_sessionmaker
from app.extraction.extractor import Extractor, check_extraction_settings
from app.extraction.routing import ReviewPolicy
from app.extraction.store import ExtractionStore
from app.jobs.queue import TaskQueue, build_celery
from app.jobs.reconcile import Reconciler, run_forever
from app.jobs.stopping import hand_back_calls
from app.jobs.workers import Heartbeat, WorkerIdentity
from app.registry.follow import (
    AdapterFollower,
    followed_model,
    follows_registry,
    promoted_file,
    with_adapter,
)
from app.registry.service import check_gguf
from workers.plan import WorkerPlan

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    """What one worker process builds once and reuses for every task."""

    pid: int
    settings: Settings
    store: ExtractionStore
    extractor: Extractor
    # The calls of a many-id message run here at once (a backend that allows it); shared by
    # all tasks of the process, as many threads as the pool's: calls in flight stay capped.
    calls: ThreadPoolExecutor | None
    # The registry's promoted adapter, followed between calls (None: not following).
    follower: AdapterFollower | None = None

    def current_extractor(self) -> Extractor:
        """The extractor for the next task: a newly promoted adapter from now on; a task in
        progress keeps the one it started with."""
        if self.follower is not None:
            self.extractor = self.follower.next_extractor(self.extractor)
        return self.extractor


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()
_pool_concurrency = 1  # this process's share of --concurrency (worker_init)
# Set by run_worker() (`callx worker`) before Celery starts, inherited by prefork children:
# the settings with the plan applied, and the port of the metrics endpoint. A worker started
# otherwise (`celery -A workers.celery_app worker`) reads the settings from the environment.
_settings: Settings | None = None
_metrics_port: int | None = None
_queues: list[str] | None = None

# A stop (SIGTERM, Ctrl-C), in every process of the worker: no call starts once it is set, and
# the calls in hand get ExtractionSettings.stop_grace_s to end before they are given back. The
# main process learns it from Celery, in a signal handler (a threading.Event: is_set() takes
# no lock the handler could wait for); it passes it on to its prefork children, which ignore
# SIGTERM (a signal to the process group would kill their calls), through _stop_broadcast,
# made before they fork.
_stopping = threading.Event()
_stop_broadcast = multiprocessing.Event()
_in_pool_child = False


def stopping_now() -> bool:
    """Has this worker been asked to stop?"""
    return _stopping.is_set()


def worker_settings() -> Settings:
    return _settings or get_settings()


def run_worker(
    settings: Settings,
    plan: WorkerPlan,
    *,
    queues: str | None,
    name: str,
    metrics_port: int | None,
) -> None:
    """Run one Celery worker in this process as `plan` says (plan.processes == 1)."""
    global _settings, _metrics_port, _queues
    _settings, _metrics_port = settings, metrics_port
    if plan.pool != "prefork":
        # Nothing forks: build the backend now, not under a lock on the first task while
        # every thread waits (and a configuration error stops the worker at once).
        set_pool_concurrency(plan.concurrency)
        worker_runtime()
    queue_list = queues or f"{settings.broker.interactive_queue},{settings.broker.batch_queue}"
    _queues = [q.strip() for q in queue_list.split(",") if q.strip()]
    if not settings.verbose:
        # Its banner, and the warning about running as root: `callx --verbose worker` shows them.
        warnings.filterwarnings("ignore", category=SecurityWarning)
    celery_app.worker_main(
        [
            *([] if settings.verbose else ["--quiet"]),
            "worker",
            f"--queues={queue_list}",
            f"--concurrency={plan.concurrency}",
            f"--pool={plan.pool}",
            f"--hostname={name}",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def set_pool_concurrency(concurrency: int) -> None:
    """How many tasks this process runs at once: before the runtime is built."""
    global _pool_concurrency
    _pool_concurrency = max(1, concurrency)


@worker_init.connect
def _remember_concurrency(sender: object = None, **_: object) -> None:
    if _runtime is None:  # `callx worker` has said it already, and built the runtime
        set_pool_concurrency(int(getattr(sender, "concurrency", None) or 1))


def worker_runtime() -> WorkerRuntime:
    """This process's runtime: built at worker_process_init (prefork), or on first use by the
    threads and solo pools (which do not fork), and rebuilt in a fork of its owner."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            settings = worker_settings()
            sessions = build_sessionmaker(build_engine(settings, pool_size=2))
            extractor, follower = _extractor_and_follower(settings, sessions)
            threads = _pool_concurrency if extractor.backend.concurrent else 1
            _runtime = WorkerRuntime(
                pid=os.getpid(),
                settings=settings,
                # Group-committed writes: one connection, however many threads.
                store=ExtractionStore(
                    sessions,
                    review=ReviewPolicy.from_settings(settings.review, extractor.taxonomy),
                ),
                extractor=extractor,
                calls=ThreadPoolExecutor(threads, "callx-call") if threads > 1 else None,
                follower=follower,
            )
            log.info(
                "worker runtime ready",
                extra={
                    "backend": extractor.backend.name,
                    "model": extractor.backend.model,
                    "calls_at_once": threads,
                },
            )
            threading.Thread(
                target=_hand_back_on_stop,
                args=(_runtime,),
                name="callx-stop-watch",
                daemon=True,
            ).start()
        return _runtime


def _extractor_and_follower(
    settings: Settings, sessions: sessionmaker[Session]
) -> tuple[Extractor, AdapterFollower | None]:
    """The extractor this process starts with: the registry's promoted adapter where this
    worker follows the registry (CALLX_MODELS__FOLLOW), else the configured files."""
    if not follows_registry(settings):
        return Extractor.from_settings(settings), None
    found = promoted_file(sessions, settings)
    if found is None:  # nothing registered and no default adapter shipped
        return Extractor.from_settings(settings), None
    sha256, path = found
    try:
        check_gguf(path)
        extractor = Extractor.from_settings(with_adapter(settings, path))
        follower = AdapterFollower(sessions, settings, sha256)
    except Exception as exc:
        log.error(
            "cannot load the promoted adapter %s: starting with the configured one",
            path.name,
            extra={"error": str(exc)},
        )
        metrics.ADAPTER_LOAD_FAILURES.inc()
        extractor = Extractor.from_settings(settings)
        follower = AdapterFollower(
            sessions, settings, getattr(extractor.backend, "adapter_sha256", None)
        )
        follower.refused = sha256
    return extractor, follower


def _hand_back_on_stop(runtime: WorkerRuntime) -> None:
    """Once the worker stops: the calls in hand finish within the grace, or go back."""
    (_stop_broadcast if _in_pool_child else _stopping).wait()
    _stopping.set()
    try:
        hand_back_calls(
            runtime.store,
            TaskQueue(celery_app, runtime.settings),
            runtime.settings.extraction.stop_grace_s,
        )
    except Exception:  # database or broker down: the leases run out instead
        log.exception("could not give back the calls in hand")


@worker_init.connect
def _pass_stop_on(**_: object) -> None:
    """In the main process, before the pool forks: a stop reaches the children too."""

    def relay() -> None:
        _stopping.wait()
        _stop_broadcast.set()

    threading.Thread(target=relay, name="callx-stop-relay", daemon=True).start()


@worker_shutting_down.connect
def _begin_stopping(**_: object) -> None:
    _stopping.set()


@worker_process_init.connect
def _build_runtime_after_fork(**_: object) -> None:
    global _stopping, _in_pool_child
    # The parent stops its children (_stop_broadcast); billiard keeps an ignored SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stopping, _in_pool_child = threading.Event(), True  # none of the parent's waiters
    set_pool_concurrency(1)  # a prefork child runs one task at a time
    try:
        worker_runtime()
    except Exception:
        # The pool would start another child, which would fail the same way, forever, while
        # the worker looks alive: stop the whole worker instead, saying why.
        log.exception("this worker cannot build its backend: stopping")
        os.kill(os.getppid(), signal.SIGTERM)
        raise


_stop_reconciler = threading.Event()
_heartbeat: Heartbeat | None = None


@worker_ready.connect
def _start_reconciler(sender: object = None, **_: object) -> None:
    """The reconciler and the heartbeat run in the worker's main process, which never loads
    a model."""
    global _heartbeat
    settings = worker_settings()
    sessions = build_sessionmaker(build_engine(settings, pool_size=2))
    backend, taxonomy = check_extraction_settings(settings)
    queues = _queues or [settings.broker.interactive_queue, settings.broker.batch_queue]
    node = str(getattr(sender, "hostname", None) or "celery")
    identity = WorkerIdentity.here(node, queues, backend.name, backend.model, taxonomy.version)
    _heartbeat = Heartbeat(
        sessions,
        identity,
        settings.broker.heartbeat_interval_s,
        model_now=partial(followed_model, settings=settings, taxonomy_version=taxonomy.version)
        if follows_registry(settings)
        else None,
    )
    _heartbeat.start()
    reconciler = Reconciler(
        sessions,
        TaskQueue(celery_app, settings),
        grace_s=settings.broker.requeue_grace_s,
    )
    thread = threading.Thread(
        target=run_forever,
        args=(reconciler, settings.broker.reconcile_interval_s, _stop_reconciler),
        name="callx-reconciler",
        daemon=True,
    )
    thread.start()
    if _metrics_port:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(_metrics_port, registry=registry)


@worker_shutdown.connect
def _stop_reconciler_thread(**_: object) -> None:
    _stop_reconciler.set()
    if _heartbeat is not None:
        _heartbeat.stop()  # no longer live at once, rather than three intervals later


def create_worker_app() -> Celery:
    app = build_celery(get_settings(), "callx-worker")
    app.conf.include = ["workers.tasks"]
    return app


celery_app = create_worker_app()
