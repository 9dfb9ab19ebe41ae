"""The tables: transcripts, their extractions (every attempt kept), human labels, batches, API
keys."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

TRANSCRIPT_STATUSES = ("queued", "running", "succeeded", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)


class Transcript(Base):
    __tablename__ = "transcripts"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_transcripts_batch_id_status", "batch_id", "status"),
        Index("ix_transcripts_status_lease_until", "status", "lease_until"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    queue: Mapped[str] = mapped_column(String(32))
    # The taxonomy the call was queued for (the API's): only a worker with this taxonomy
    # extracts it. NULL (calls queued before callx recorded it): any worker.
    taxonomy_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # A worker owns a running transcript until lease_until; claim_token says which worker.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim_token: Mapped[uuid.UUID | None] = mapped_column()
    runs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


# The review cause of a call the model was sure of, drawn at random for people to label
# (app/extraction/routing.py): accepted on its confidence, yet waiting for a person.
EXPLORE_CAUSE = "explore"


class Extraction(Base):
    """One attempt at extracting a transcript; `is_current` marks the one that counts."""

    __tablename__ = "extractions"
    __table_args__ = (
        # At most one current extraction per transcript.
        Index(
            "uq_extractions_current_transcript",
            "transcript_id",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        Index(
            "ix_extractions_current_occurred_at",
            "occurred_at",
            "id",
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        # Filters and analytics read the answer (the human label where there is one).
        Index(
            "ix_extractions_current_answer_reason_occurred_at",
            "answer_reason",
            "occurred_at",
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        Index(
            "ix_extractions_current_answer_product_key",
            "answer_product_key",
            "answer_reason",
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        # Analytics over a time range the rollups below do not cover (part of a day; products
        # between two dates): an index-only scan of just the rows counted.
        Index(
            "ix_extractions_answered_occurred_at",
            "occurred_at",
            postgresql_include=["answer_reason", "answer_product_key", "answer_product"],
            postgresql_where=text("is_current AND answer_reason IS NOT NULL"),
            sqlite_where=text("is_current AND answer_reason IS NOT NULL"),
        ),
        # The overview's failures in a date range (migration 0009): a few rows, not all.
        Index(
            "ix_extractions_current_failed",
            "occurred_at",
            postgresql_where=text("is_current AND status = 'failed'"),
            sqlite_where=text("is_current AND status = 'failed'"),
        ),
        # The audit sample by the time of the call (migration 0009): the overview's accuracy
        # reads its labelled calls in a range without reading every extraction of the range.
        Index(
            "ix_extractions_audit_occurred_at",
            "occurred_at",
            postgresql_include=["id", "status", "reason", "taxonomy_version"],
            postgresql_where=text("in_audit AND review_threshold IS NOT NULL"),
            sqlite_where=text("in_audit AND review_threshold IS NOT NULL"),
        ),
        # The review queue: the calls waiting for a person, lowest confidence first.
        Index(
            "ix_extractions_review_queue",
            "review_priority",
            "id",
            postgresql_where=text("is_current AND review_priority IS NOT NULL"),
            sqlite_where=text("is_current AND review_priority IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    transcript_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transcripts.id"), index=True)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16))
    # Copied from the transcript (immutable there) so analytics need no join.
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(100))
    product: Mapped[str | None] = mapped_column(String(200))
    product_key: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(40))
    confidence: Mapped[float | None] = mapped_column(Float)
    # True where the confidence is calibrated (migration 0007): see app/llm/calibration.py.
    confidence_calibrated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The model's own probability of its product answer (migration 0008): not calibrated.
    product_confidence: Mapped[float | None] = mapped_column(Float)
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    # The LoRA adapter's file, by its sha256 (migration 0010): which registered adapter
    # answered (the model's name holds its file name). NULL without an adapter.
    adapter_sha256: Mapped[str | None] = mapped_column(String(64))
    # The reader's file, by its sha256 (migration 0012): the second adapter the list's
    # definitions are read with for this call (READ_DEFINITIONS: by default, lists the adapter
    # was not trained on); NULL where none reads them (not read, the base model reads them,
    # another backend).
    reader_sha256: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(32))
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_answer: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The answer that counts (migration 0008): the current human label's where the call has
    # one, else the model's (product, reason above); NULL for a failed call nobody labelled.
    # Analytics, filters and the rollups read these. answer_by: "model" or "label".
    answer_reason: Mapped[str | None] = mapped_column(String(40))
    answer_product: Mapped[str | None] = mapped_column(String(200))
    answer_product_key: Mapped[str | None] = mapped_column(String(200))
    answer_by: Mapped[str | None] = mapped_column(String(8))
    # The review decision, made when the extraction was stored (app/extraction/routing.py):
    # why it needs a person (failed, low_confidence, uncalibrated; explore: a sure call drawn
    # for people anyway, EXPLORE_CAUSE; NULL: auto-accepted),
    # whether it is in the audit sample, and the threshold and rate it was decided with. NULL
    # threshold: stored before callx decided (no decision). review_priority: its place in the
    # review queue (lowest first), NULL once labelled or when it needs no review.
    review_cause: Mapped[str | None] = mapped_column(String(16))
    in_audit: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    review_threshold: Mapped[float | None] = mapped_column(Float)
    audit_rate: Mapped[float | None] = mapped_column(Float)
    review_priority: Mapped[float | None] = mapped_column(Float)


class Label(Base):
    """A person's answer for a call, kept apart from the model's extractions, with its history:
    each correction is a new version; `is_current` marks the latest."""

    __tablename__ = "labels"
    __table_args__ = (
        # Two reviewers writing version n+1 at once: one insert wins, the other is a 409.
        UniqueConstraint("transcript_id", "version"),
        Index(
            "uq_labels_current_transcript",
            "transcript_id",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        Index("ix_labels_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    transcript_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transcripts.id"))
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str] = mapped_column(String(40))
    product: Mapped[str | None] = mapped_column(String(200))
    product_key: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    labelled_by: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The model's answer this label replaces: the call's current extraction when it was written.
    extraction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("extractions.id"))
    machine_status: Mapped[str | None] = mapped_column(String(16))
    machine_reason: Mapped[str | None] = mapped_column(String(40))
    machine_product: Mapped[str | None] = mapped_column(String(200))
    machine_confidence: Mapped[float | None] = mapped_column(Float)


# ---- analytics rollups -------------------------------------------------------------------
# Counts of the current, succeeded extractions, per source and taxonomy version (results of
# two taxonomies never mix in one count; a filter by source stays cheap), kept in step with
# them in the transaction that stores an extraction (db/results.add_current_extractions), so
# that the analytics endpoints read a few thousand rows instead of aggregating every call.
# `reason` is '' where the extraction has none (NULL cannot be part of a primary key). Built
# from the extractions by the migration that creates them (and rollups.rebuild_rollups); on
# PostgreSQL, TRUNCATE extractions empties them too (a trigger).
NO_REASON = ""


class ReasonDayCount(Base):
    """Calls per UTC day (of the call, occurred_at) and reason: GET /v1/analytics/reasons."""

    __tablename__ = "reason_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    taxonomy_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class ProductReasonCount(Base):
    """Calls per product (product_key, and each spelling of it) and reason, all time:
    GET /v1/analytics/products without since/until. Only calls with a product."""

    __tablename__ = "product_reason_counts"

    product_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    product: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    taxonomy_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class ProductDayCount(Base):
    """Calls per UTC day, product (product_key, and each spelling of it) and reason:
    GET /v1/analytics/products between dates. Only calls with a product."""

    __tablename__ = "product_day_counts"
    __table_args__ = (
        # Top products between dates, in two passes (repositories._product_counts_between):
        # totals per product over the days, then the top products' rows.
        Index(
            "ix_product_day_counts_day_product_key",
            "day",
            "product_key",
            postgresql_include=["source", "taxonomy_version", "reason", "calls"],
        ),
        Index(
            "ix_product_day_counts_product_key_day",
            "product_key",
            "day",
            postgresql_include=["product", "source", "taxonomy_version", "reason", "calls"],
        ),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    product: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    taxonomy_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class ProductMonthCount(Base):
    """Calls per UTC month (its first day), product (product_key, and each spelling of it) and
    reason (migration 0009): GET /v1/analytics/products and the console's overview over
    months read a month's row instead of its days' (a year: 30 times fewer rows)."""

    __tablename__ = "product_month_counts"
    __table_args__ = (
        Index(
            "ix_product_month_counts_month_product_key",
            "month",
            "product_key",
            postgresql_include=["source", "taxonomy_version", "reason", "calls"],
        ),
        Index(
            "ix_product_month_counts_product_key_month",
            "product_key",
            "month",
            postgresql_include=["product", "source", "taxonomy_version", "reason", "calls"],
        ),
    )

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    product_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    product: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    taxonomy_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class ApiKey(Base):
    """A key for the REST API. Only a hash of its secret is kept: the key is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('ingest', 'read', 'review', 'admin')", name="scope"),
    )

    # The public part of the key (cx_<id>_<secret>): names it in lists, logs and revocations.
    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkerHeartbeat(Base):
    """A running worker, as it last said it was alive: /readyz tells per queue whether any
    worker serves it (and with which backend, model and taxonomy)."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(400))  # comma-separated
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser signed in to the console with an API key (migration 0009). The cookie holds
    the token; only its hash is kept. The key is checked on every request: revoking it ends
    its sessions."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(8), ForeignKey("api_keys.id"))
    # Every form and POST of the session carries it (app/web/security.py).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---- the model registry (migration 0010) ---------------------------------------------------


class Adapter(Base):
    """A LoRA adapter callx knows: its file (copied into the models directory, named by its
    sha256), the base model it was trained for, its card, and who registered it when."""

    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(200))  # in the models directory
    size_bytes: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str | None] = mapped_column(String(200))
    base_model_sha256: Mapped[str | None] = mapped_column(String(64))
    card: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    registered_by: Mapped[str] = mapped_column(String(100))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdapterEvaluation(Base):
    """A candidate adapter measured against the promoted one on the same labelled calls: the
    gate `callx models promote` reads."""

    __tablename__ = "adapter_evaluations"
    __table_args__ = (Index("ix_adapter_evaluations_adapter_id", "adapter_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"))
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    dataset: Mapped[str] = mapped_column(String(500))
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    calls: Mapped[int] = mapped_column(Integer)
    reason_accuracy: Mapped[float] = mapped_column(Float)
    baseline_reason_accuracy: Mapped[float | None] = mapped_column(Float)
    product_rate: Mapped[float | None] = mapped_column(Float)
    baseline_product_rate: Mapped[float | None] = mapped_column(Float)
    only_candidate_right: Mapped[int | None] = mapped_column(Integer)
    only_baseline_right: Mapped[int | None] = mapped_column(Integer)
    p_value: Mapped[float | None] = mapped_column(Float)  # exact McNemar, paired by call
    verdict: Mapped[str] = mapped_column(String(16))  # passes / worse / forgets
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evaluated_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def guards(self) -> list[dict[str, Any]]:
        """Both adapters' figures on each guard (app.registry.gate), kept in `details`."""
        return list((self.details or {}).get("guards", []))


class Promotion(Base):
    """Each change of the promoted adapter, the latest first: the one workers load. A rollback
    is a promotion of the one before. `taxonomy_version` None is the registry's promotion, for
    every list; a version is a promotion for that list only (migration 0011): its workers run
    it, the others keep theirs. `release` hands a list back to the registry's promotion."""

    __tablename__ = "promotions"
    __table_args__ = (
        Index("ix_promotions_created_at", "created_at", "id"),
        Index("ix_promotions_taxonomy_version", "taxonomy_version", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"))
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    action: Mapped[str] = mapped_column(String(16))  # initial / promote / rollback / release
    taxonomy_version: Mapped[str | None] = mapped_column(String(64))
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("adapter_evaluations.id"))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    promoted_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Reextraction(Base):
    """A job that extracts stored calls again (migration 0010): its filter, the taxonomy and
    model it extracts with, and its calls (reextraction_items). `key` makes the same job
    submitted twice the same row."""

    __tablename__ = "reextractions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)
    taxonomy_version: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    calls: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReextractionItem(Base):
    __tablename__ = "reextraction_items"

    reextraction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reextractions.id"), primary_key=True
    )
    transcript_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transcripts.id"), primary_key=True)
