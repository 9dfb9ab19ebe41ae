"""Transcripts: looked up, inserted (duplicates skipped) and copied in bulk. Functions take the
session; none of them commits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import (
    Transcript,
)


def get_transcript(session: Session, transcript_id: uuid.UUID) -> Transcript | None:
    return session.get(Transcript, transcript_id)


def find_transcript(session: Session, source: str, external_id: str) -> Transcript | None:
    return session.scalars(
        select(Transcript).where(Transcript.source == source, Transcript.external_id == external_id)
    ).one_or_none()


def find_transcript_hashes(
    session: Session, keys: Iterable[tuple[str, str]], chunk: int = 500
) -> dict[tuple[str, str], tuple[uuid.UUID, str]]:
    """(source, external_id) -> (id, text_sha256) for the keys that already exist."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    found: dict[tuple[str, str], tuple[uuid.UUID, str]] = {}
    for source, ids in by_source.items():
        for start in range(0, len(ids), chunk):
            rows = session.execute(
                select(Transcript.external_id, Transcript.id, Transcript.text_sha256).where(
                    Transcript.source == source,
                    Transcript.external_id.in_(ids[start : start + chunk]),
                )
            )
            for stored_id, tid, digest in rows:
                assert stored_id is not None  # matched by external_id IN (...)
                found[(source, stored_id)] = (tid, digest)
    return found


def insert_transcripts_skipping_duplicates(
    session: Session, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Insert rows; a (source, external_id) that already exists is skipped. Returns inserted ids."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Transcript)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(Transcript.id)
    )
    inserted = session.scalars(statement, list(rows))
    return set(inserted)


COPY_COLUMNS = (
    "id",
    "source",
    "external_id",
    "text",
    "text_sha256",
    "language",
    "occurred_at",
    "metadata",
    "batch_id",
    "queue",
    "taxonomy_version",
    "status",
    "runs",
    "created_at",
    "updated_at",
)
COPY_TRANSCRIPTS = f"COPY transcripts ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Binary COPY needs each column's type; metadata goes as its JSON text (json's binary form).
COPY_TYPES = (
    "uuid",
    "varchar",
    "varchar",
    "text",
    "varchar",
    "varchar",
    "timestamptz",
    "text",
    "uuid",
    "varchar",
    "varchar",
    "varchar",
    "int4",
    "timestamptz",
    "timestamptz",
)


def copy_new_transcripts(session: Session, rows: Iterable[dict[str, Any]]) -> bool:
    """COPY rows into transcripts if none of their keys exists (True); else store nothing
    (False), as on databases other than PostgreSQL with psycopg (rows then left unread).

    Binary COPY is several times faster than a multi-row INSERT for thousands of rows (no SQL
    text to build or parse, no escaping), and takes the rows as they come: PostgreSQL stores
    the first ones while the caller prepares the next. A key already stored (or repeated among
    the rows) makes the COPY fail with a unique violation, which a savepoint undoes."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    import psycopg

    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    dumps = json.dumps  # what the JSON column type uses (no json_serializer is configured)
    try:
        with session.begin_nested():
            session.connection()  # emits the SAVEPOINT now (lazy otherwise: nothing to roll back)
            with driver_connection.cursor() as cursor, cursor.copy(COPY_TRANSCRIPTS) as copy:
                copy.set_types(COPY_TYPES)
                write = copy.write_row
                for r in rows:
                    write(
                        (
                            r["id"],
                            r["source"],
                            r["external_id"],
                            r["text"],
                            r["text_sha256"],
                            r["language"],
                            r["occurred_at"],
                            dumps(r["metadata_"]),
                            r["batch_id"],
                            r["queue"],
                            r["taxonomy_version"],
                            r["status"],
                            r["runs"],
                            r["created_at"],
                            r["updated_at"],
                        )
                    )
    except psycopg.errors.UniqueViolation:
        return False
    return True


def count_by_status(session: Session) -> dict[str, int]:
    """Transcripts per status, over the whole table (the /metrics gauge)."""
    rows = session.execute(select(Transcript.status, func.count()).group_by(Transcript.status))
    return {status: count for status, count in rows}


def count_waiting(session: Session, cap: int) -> int:
    """Transcripts queued or running now, counted up to `cap` + 1 (the status index)."""
    waiting = (
        select(Transcript.id)
        .where(Transcript.status.in_(("queued", "running")))
        .limit(cap + 1)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(waiting)) or 0)
