"""The gate measured with the real model, and a real worker following the registry: the
promoted adapter at start, a newly promoted one between calls with calls in flight (none lost,
each result naming its adapter), and a broken adapter refused while the worker goes on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db.session import build_engine, build_sessionmaker, session_scope
from app.llm.model_files import DEFAULT_ADAPTER, file_sha256
from app.registry import service
from support.calls import CALLS
from support.env import process_env
from support.factories import adapter_variant
from support.services import CallxProcess, free_port, wait_for

pytestmark = [pytest.mark.model, pytest.mark.services]
CALLX = str(Path(".venv/bin/callx").resolve())


def test_evaluate_measures_both_adapters_and_the_gate_reads_it(
    settings: Settings, clean_db: None, tmp_path: Path
) -> None:
    env = {**process_env(settings), "CALLX_MODELS_DIR": str(tmp_path / "models")}
    dataset = tmp_path / "test.jsonl"
    dataset.write_text(
        "".join(Path("data/calls/test.jsonl").read_text("utf-8").splitlines(True)[:6]), "utf-8"
    )
    variant = adapter_variant(tmp_path, "same-weights", b"\\0")
    done = subprocess.run(
        [CALLX, "models", "register", str(variant)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    new_id = done.stderr.split(" as id ")[1].split()[0]
    guard = tmp_path / "intents.jsonl"  # another list's calls: a guard in its own taxonomy
    guard.write_text(
        "".join(Path("data/intents8/dev.jsonl").read_text("utf-8").splitlines(True)[:4]), "utf-8"
    )
    measured = subprocess.run(
        [
            *(CALLX, "models", "evaluate", new_id, "--dataset", str(dataset)),
            *("--guard", f"{guard}@intents8", "--guard-max-loss", "0"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert measured.returncode == 0, measured.stderr
    # The same weights: the same answers on every call, so no difference and no refusal.
    first, guarded = measured.stdout.splitlines()
    assert first.endswith("only candidate right 0, only promoted right 0, McNemar p=1.0): passes")
    assert guarded.startswith(f"guard {guard} (4 calls, intents8-")
    assert guarded.endswith(
        "0.00 points lost (at most 0; only candidate right 0, only promoted right 0, "
        "McNemar p=1.0): held"
    )
    engine = build_engine(settings)
    registry = settings.model_copy(update={"models_dir": tmp_path / "models"})
    with session_scope(build_sessionmaker(engine)) as session:
        stored = service.list_adapters(session, registry)[-1].evaluation
        assert stored is not None and stored.verdict == "passes"
        # The default list, which both were trained on (or whose card says nothing): each as
        # it is served, without the prior taken out.
        assert stored.details["candidate_prior_corrected"] is False
        assert stored.details["baseline_prior_corrected"] is False
        assert [(g["calls"], g["points_lost"], g["held"]) for g in stored.guards] == [(4, 0, True)]
    engine.dispose()
    listed = subprocess.run([CALLX, "models", "list"], env=env, capture_output=True, text=True)
    assert "on 6 (passes)" in listed.stdout
    promoted = subprocess.run(
        [CALLX, "models", "promote", new_id], env=env, capture_output=True, text=True
    )
    assert promoted.returncode == 0 and "forced" not in promoted.stderr, promoted.stderr


def _extractions(database_url: str) -> list[tuple[str, str, str | None]]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.external_id, e.status, e.adapter_sha256 FROM extractions e "
                "JOIN transcripts t ON t.id = e.transcript_id WHERE e.is_current "
                "ORDER BY e.created_at"
            )
        ).all()
    engine.dispose()
    return [(r[0], r[1], r[2]) for r in rows]


def _heartbeat_models(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        models = connection.execute(text("SELECT model FROM worker_heartbeats")).scalars().all()
    engine.dispose()
    assert models, "no worker heartbeat"
    return list(models)


def test_a_worker_follows_promotions_between_calls_and_refuses_a_broken_adapter(
    api_url: str,
    settings: Settings,
    database_url: str,
    start_callx: Callable[..., CallxProcess],
    tmp_path: Path,
) -> None:
    models_settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    env = process_env(
        settings,
        CALLX_EXTRACTION__BACKEND="llamacpp",
        CALLX_MODELS_DIR=str(tmp_path / "models"),
        CALLX_MODELS__CHECK_INTERVAL_S="0.5",
        CALLX_BROKER__HEARTBEAT_INTERVAL_S="1",
    )
    worker = start_callx(["worker", "--concurrency", "1"], env, "worker")
    client = httpx.Client(base_url=api_url, timeout=30)
    default_sha = file_sha256(DEFAULT_ADAPTER)

    def submit(prefix: str, n: int) -> None:
        records = [{**c, "external_id": f"{prefix}-{i}"} for i, c in enumerate((CALLS * 3)[:n])]
        assert client.post("/v1/batches", json=records).status_code == 202

    def done(n: int) -> Callable[[], bool]:
        return lambda: len([r for r in _extractions(database_url) if r[1] == "succeeded"]) >= n

    # At start: the promoted adapter (the shipped default, registered by the worker itself).
    submit("a", 2)
    wait_for(done(2), 180, "the first calls")
    assert {r[2] for r in _extractions(database_url)} == {default_sha}
    assert all(m.endswith("+callx-default.gguf") for m in _heartbeat_models(database_url))

    # A new adapter promoted while calls are in flight: none lost, each names its adapter,
    # and the calls after the switch run on the new one.
    variant = adapter_variant(tmp_path, "v2", b"v2")
    engine = build_engine(models_settings)
    sessions = build_sessionmaker(engine)
    submit("b", 8)
    wait_for(done(3), 120, "a call of the batch")
    with session_scope(sessions) as session:
        new = service.register(session, models_settings, variant, "v2", "test")
        service.promote(session, models_settings, new.id, "test", force=True)
        new_sha = new.sha256
    wait_for(done(10), 300, "every call of the batch")
    rows = _extractions(database_url)
    assert len(rows) == 10 and all(status == "succeeded" for _, status, _ in rows)
    shas = [sha for _, _, sha in rows]
    assert set(shas) == {default_sha, new_sha}
    assert shas[-1] == new_sha and shas.index(new_sha) > 2  # the switch came between calls
    assert shas[shas.index(new_sha) :] == [new_sha] * (len(shas) - shas.index(new_sha))
    assert "switched to the promoted adapter" in worker.log()
    # Its heartbeat (the console's Models page, /readyz) names the adapter it runs now.
    wait_for(
        lambda: all(m.endswith("+v2.gguf") for m in _heartbeat_models(database_url)),
        30,
        "the heartbeat naming the promoted adapter",
    )

    # A broken file promoted: refused, the worker keeps v2 and says so; no call is lost.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(DEFAULT_ADAPTER.read_bytes()[:4096])  # a GGUF header, then nothing
    with session_scope(sessions) as session:
        bad = service.register(session, models_settings, broken, "broken", "test")
        service.promote(session, models_settings, bad.id, "test", force=True)
    engine.dispose()
    submit("c", 2)
    wait_for(done(12), 180, "the calls after the broken promotion")
    assert [sha for _, _, sha in _extractions(database_url)[-2:]] == [new_sha, new_sha]
    wait_for(
        lambda: "cannot load the promoted adapter" in worker.log(), 30, "the refusal in the log"
    )


def test_an_adapter_llama_cpp_cannot_read_is_an_error_not_a_silent_base_model(
    model_path: Path, tmp_path: Path
) -> None:
    """llama-cpp-python logs a failed adapter load and goes on without it; callx refuses."""
    from app.llm.llamacpp import LlamaCppBackend

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(DEFAULT_ADAPTER.read_bytes()[:4096])
    with pytest.raises(ValueError, match="could not load the LoRA adapter"):
        LlamaCppBackend(model_path, lora_path=broken)


def test_a_worker_of_a_list_runs_the_adapter_promoted_for_that_list(
    settings: Settings,
    database_url: str,
    start_callx: Callable[..., CallxProcess],
    tmp_path: Path,
    clean_db: None,
    clean_broker: None,
) -> None:
    """An API and a worker of a customer's own list (the flywheel's moving company): the
    adapter promoted for that list alone, not the registry's; the registry's again once the
    list is rolled back past its first promotion."""
    from support.factories import adapter_variant, gate_comparison

    moving = "moving-2026-12"
    models_settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    env = process_env(
        settings,
        CALLX_EXTRACTION__BACKEND="llamacpp",
        CALLX_EXTRACTION__TAXONOMY_PATH=str(Path("data/flywheel/moving.yaml").resolve()),
        CALLX_MODELS_DIR=str(tmp_path / "models"),
        CALLX_MODELS__CHECK_INTERVAL_S="0.5",
    )
    engine = build_engine(models_settings)
    sessions = build_sessionmaker(engine)
    with session_scope(sessions) as session:
        own = service.register(
            session, models_settings, adapter_variant(tmp_path, "m", b"m"), "own", "t"
        )
        general = service.register(
            session, models_settings, adapter_variant(tmp_path, "g", b"g"), "general", "t"
        )
        service.record_evaluation(
            session,
            own,
            service.promoted(session, models_settings, moving),
            gate_comparison(0.6, 0.4, taxonomy_version=moving),
            "t",
        )
        service.promote(session, models_settings, own.id, "t", for_taxonomy=moving)
        own_sha, general_sha, general_id = own.sha256, general.sha256, general.id
    port = free_port()
    api = start_callx(["serve", "--port", str(port), "--no-worker", "--no-migrate"], env, "api")
    api.wait_http(f"http://127.0.0.1:{port}/healthz")
    worker = start_callx(["worker", "--concurrency", "1"], env, "worker")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def submit(prefix: str, n: int) -> None:
        records = [{**c, "external_id": f"{prefix}-{i}"} for i, c in enumerate(CALLS[:n])]
        assert client.post("/v1/batches", json=records).status_code == 202

    def done(n: int) -> Callable[[], bool]:
        return lambda: len([r for r in _extractions(database_url) if r[1] == "succeeded"]) >= n

    submit("a", 2)
    wait_for(done(2), 180, "the list's first calls")
    assert [sha for _, _, sha in _extractions(database_url)] == [own_sha, own_sha]
    assert all(m.endswith("+own.gguf") for m in _heartbeat_models(database_url))

    # The registry's adapter promoted while the list's worker runs: it keeps the list's.
    with session_scope(sessions) as session:
        service.promote(session, models_settings, general_id, "t", force=True)
    time.sleep(1)  # past the worker's check interval
    submit("b", 2)
    wait_for(done(4), 180, "the calls after the registry's promotion")
    assert [sha for _, _, sha in _extractions(database_url)[-2:]] == [own_sha, own_sha]

    with session_scope(sessions) as session:
        assert service.rollback(session, models_settings, "t", moving).action == "release"
    engine.dispose()
    time.sleep(1)  # past the worker's check interval: its next call looks again
    submit("c", 2)
    wait_for(done(6), 180, "the calls after the release")
    assert [sha for _, _, sha in _extractions(database_url)[-2:]] == [general_sha, general_sha]
    assert "switched to the promoted adapter general.gguf" in worker.log()
