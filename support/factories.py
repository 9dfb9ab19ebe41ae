"""Rows and outcomes for tests that need stored calls without going through the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from app.config import Settings
from app.db.models import Transcript
from app.db.session import build_engine, build_sessionmaker
from app.evaluation.metrics import wilson_interval
from app.evaluation.runner import BackendResult, Prediction
from app.extraction.extractor import Extractor
from app.extraction.pipeline import ExtractionOutcome
from app.extraction.routing import ReviewPolicy
from app.extraction.service import run_extraction
from app.extraction.store import ExtractionStore
from app.llm.base import Backend
from app.llm.fake import FakeBackend
from app.registry.service import Comparison
from support.services import wait_for


def add_transcripts(
    engine: Engine, n: int, start: datetime = datetime(2026, 3, 1, 9, tzinfo=UTC), every_s: int = 0
) -> list[uuid.UUID]:
    """`n` queued transcripts, the first at `start`, one every `every_s` seconds."""
    sessions = build_sessionmaker(engine)
    ids = [uuid.uuid4() for _ in range(n)]
    with sessions.begin() as session:
        session.add_all(
            Transcript(
                id=transcript_id,
                source="test",
                external_id=str(transcript_id),
                text=f"Client: my router {i} is broken",
                text_sha256="0" * 64,
                occurred_at=start + timedelta(seconds=every_s * i),
                queue="batch",
            )
            for i, transcript_id in enumerate(ids)
        )
    return ids


def succeeded_outcome(product: str = "Router") -> ExtractionOutcome:
    """A succeeded extraction of `product` as a breakdown."""
    return ExtractionOutcome(
        status="succeeded",
        product=product,
        reason="breakdown",
        confidence=None,
        backend="test",
        model="test",
        prompt_version="p",
        taxonomy_version="t",
        latency_ms=1,
        prompt_tokens=None,
        completion_tokens=None,
        attempts=1,
        truncated=False,
    )


def stored_counts(database_url: str) -> dict[str, int]:
    """Transcripts per status, extraction rows, and transcripts with more than one current."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        by_status = dict(
            connection.execute(
                text("SELECT status, count(*) FROM transcripts GROUP BY status")
            ).all()
        )
        rows = connection.execute(text("SELECT count(*) FROM extractions")).scalar_one()
        current_dupes = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT transcript_id FROM extractions WHERE is_current "
                "GROUP BY transcript_id HAVING count(*) > 1) d"
            )
        ).scalar_one()
        per_transcript_dupes = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT transcript_id FROM extractions "
                "GROUP BY transcript_id HAVING count(*) > 1) d"
            )
        ).scalar_one()
    engine.dispose()
    return {
        **by_status,
        "extraction_rows": rows,
        "current_dupes": current_dupes,
        "multi_attempts": per_transcript_dupes,
    }


def extract_stored(
    settings: Settings,
    ids: list[str],
    backend: Backend | None = None,
    taxonomy_version: str | None = None,
) -> list[str]:
    """Run the worker's service code (run_extraction) on stored calls, in this process: with
    the FakeBackend unless another is given, and the configured taxonomy under another
    version if asked (for calls queued for it). Returns what happened to each."""
    extractor = Extractor.from_settings(settings, backend=backend or FakeBackend())
    if taxonomy_version is not None:
        extractor.taxonomy = extractor.taxonomy.model_copy(update={"version": taxonomy_version})
    store = ExtractionStore(
        build_sessionmaker(build_engine(settings)),
        review=ReviewPolicy.from_settings(settings.review, extractor.taxonomy),
    )
    try:
        return [
            run_extraction(
                store,
                uuid.UUID(i),
                extractor,
                lease_s=60,
                taxonomy_version=extractor.taxonomy.version,
            )
            for i in ids
        ]
    finally:
        store.close()


def wait_all_succeeded(database_url: str, n: int, timeout: float) -> dict[str, int]:
    """Wait until `n` transcripts have succeeded; the stored counts (stored_counts)."""
    state: dict[str, int] = {}

    def done() -> bool:
        state.clear()
        state.update(stored_counts(database_url))
        return state.get("succeeded", 0) == n

    try:
        wait_for(done, timeout, f"{n} succeeded", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {state}") from exc
    return state


def scored_result(label: str, answers: list[str | None], expected: list[str]) -> BackendResult:
    """An evaluation's result from its reason answers (None: a failed call), ids r0, r1..."""
    predictions = [
        Prediction(
            id=f"r{i}",
            reason=answer,
            product=None,
            expected_reason=gold,
            expected_product=None,
            status="succeeded" if answer else "failed",
            confidence=None,
            latency_ms=1,
            prompt_tokens=None,
            completion_tokens=None,
            error=None,
            error_kind=None,
        )
        for i, (answer, gold) in enumerate(zip(answers, expected, strict=True))
    ]
    right = sum(a == g for a, g in zip(answers, expected, strict=True))
    return BackendResult(
        label=label,
        backend="fake",
        model="m",
        n=len(answers),
        reason_accuracy=right / len(answers),
        reason_accuracy_ci95=wilson_interval(right, len(answers)),
        reason_macro_f1=0.0,
        product_match_rate=0.0,
        invalid_rate=0.0,
        failed=0,
        latency_p50_ms=1,
        latency_p95_ms=1,
        prompt_tokens=0,
        completion_tokens=0,
        cost=0.0,
        per_class={},
        confusion=[],
        predictions=predictions,
    )


def gate_comparison(ours: float, theirs: float, p: float = 0.5, **fields: Any) -> Comparison:
    """A gate's comparison on 100 labelled calls: the candidate's reason accuracy `ours`, the
    promoted adapter's `theirs` (other fields as given)."""
    values: dict[str, Any] = {
        "dataset": "labels/test.jsonl",
        "dataset_sha256": "0" * 64,
        "taxonomy_version": "default-2026-11-29",
        "calls": 100,
        "reason_accuracy": ours,
        "baseline_reason_accuracy": theirs,
        "product_rate": 0.8,
        "baseline_product_rate": 0.8,
        "only_candidate_right": 3,
        "only_baseline_right": 7,
        "p_value": p,
        "details": {},
    }
    return Comparison(**{**values, **fields})


def adapter_variant(folder: Path, name: str, extra: bytes) -> Path:
    """A copy of the shipped adapter with bytes appended: another sha256, still a GGUF that
    llama.cpp loads with the default's weights."""
    from app.llm.model_files import DEFAULT_ADAPTER

    path = folder / f"{name}.gguf"
    path.write_bytes(DEFAULT_ADAPTER.read_bytes() + extra)
    return path
