"""Every query callx makes. Functions take the session; none of them commits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Select,
    Table,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    NO_REASON,
    ApiKey,
    Batch,
    Extraction,
    ProductDayCount,
    ProductReasonCount,
    ReasonDayCount,
    Transcript,
)


def cast_table(model: Any) -> Table:
    """A mapped class's table, for Core statements."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# ---- transcripts -----------------------------------------------------------------------


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
            for external_id, tid, digest in rows:
                found[(source, external_id)] = (tid, digest)
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


_COPY_COLUMNS = (
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
    "status",
    "runs",
    "created_at",
    "updated_at",
)
_COPY_TRANSCRIPTS = f"COPY transcripts ({', '.join(_COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Binary COPY needs each column's type; metadata goes as its JSON text (json's binary form).
_COPY_TYPES = (
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
            with driver_connection.cursor() as cursor, cursor.copy(_COPY_TRANSCRIPTS) as copy:
                copy.set_types(_COPY_TYPES)
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
                            r["status"],
                            r["runs"],
                            r["created_at"],
                            r["updated_at"],
                        )
                    )
    except psycopg.errors.UniqueViolation:
        return False
    return True


def add_batch(session: Session, batch: Batch) -> None:
    session.add(batch)
    session.flush()


def delete_batch(session: Session, batch: Batch) -> None:
    session.delete(batch)
    session.flush()


def get_batch(session: Session, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id)


def batch_status_counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(Transcript.status, func.count())
        .where(Transcript.batch_id == batch_id)
        .group_by(Transcript.status)
    )
    return {status: count for status, count in rows}


# ---- the worker's lease on a transcript ----------------------------------------------------


@dataclass(frozen=True)
class ClaimedTranscript:
    """What a worker needs of a transcript it has just claimed."""

    id: uuid.UUID
    text: str
    occurred_at: datetime


# The worker's writes run as Core statements on the session's connection: the ORM's
# bookkeeping would cost more CPU than the statements (they are group-committed, hundreds a
# second on an API backend's worker).
_TRANSCRIPTS = cast_table(Transcript)
_EXTRACTIONS = cast_table(Extraction)


def claim_transcripts(
    session: Session,
    transcript_ids: Sequence[uuid.UUID],
    token: uuid.UUID,
    now: datetime,
    lease_until: datetime,
) -> dict[uuid.UUID, ClaimedTranscript]:
    """Take the queued transcripts among `transcript_ids`, and those whose lease ran out, for
    `token` until `lease_until`. The others (finished, or held by someone) are left out."""
    t = _TRANSCRIPTS.c
    rows = session.connection().execute(
        update(_TRANSCRIPTS)
        .where(
            t.id.in_(transcript_ids),
            or_(t.status == "queued", and_(t.status == "running", t.lease_until < now)),
        )
        .values(
            status="running",
            claim_token=token,
            lease_until=lease_until,
            runs=t.runs + 1,
            updated_at=now,
        )
        .returning(t.id, t.text, t.occurred_at)
    )
    return {tid: ClaimedTranscript(tid, text, occurred_at) for tid, text, occurred_at in rows}


def finish_transcripts(
    session: Session,
    finished: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
) -> set[uuid.UUID]:
    """Close claims, given as (transcript id, claim token, final status). Returns the ids whose
    claim still held; the others' leases were lost to another worker meanwhile."""
    t = _TRANSCRIPTS.c
    closed: set[uuid.UUID] = set()
    for status in sorted({status for _, _, status in finished}):
        claims = [(tid, token) for tid, token, s in finished if s == status]
        rows = session.connection().execute(
            update(_TRANSCRIPTS)
            .where(tuple_(t.id, t.claim_token).in_(claims), t.status == "running")
            .values(status=status, lease_until=None, claim_token=None, updated_at=now)
            .returning(t.id)
        )
        closed.update(rows.scalars())
    return closed


def add_current_extractions(session: Session, extractions: Sequence[dict[str, Any]]) -> None:
    """Store new attempts (column values, one per transcript) as the current ones; earlier
    attempts are kept, no longer current.

    The analytics rollups follow in the same transaction: the replaced extractions' counts
    out, the new ones' in."""
    if not extractions:
        return
    e = _EXTRACTIONS.c
    connection = session.connection()
    replaced = connection.execute(
        update(_EXTRACTIONS)
        .where(e.transcript_id.in_([x["transcript_id"] for x in extractions]), e.is_current)
        .values(is_current=False)
        .returning(e.status, e.occurred_at, e.reason, e.product_key, e.product)
    ).all()
    connection.execute(insert(_EXTRACTIONS), [{**x, "is_current": True} for x in extractions])
    added = [
        (x["status"], x["occurred_at"], x["reason"], x["product_key"], x["product"])
        for x in extractions
    ]
    _update_rollups(session, removed=[tuple(r) for r in replaced], added=added)


def current_extraction(session: Session, transcript_id: uuid.UUID) -> Extraction | None:
    return session.scalars(
        select(Extraction).where(Extraction.transcript_id == transcript_id, Extraction.is_current)
    ).one_or_none()


def requeue_expired_leases(
    session: Session, now: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Running transcripts whose worker's lease ran out go back to queued (their worker, if
    still alive, can no longer store a result: its claim token is cleared)."""
    rows = session.execute(
        select(Transcript.id, Transcript.queue)
        .where(Transcript.status == "running", Transcript.lease_until < now)
        .limit(limit)
    ).all()
    if rows:
        session.execute(
            update(Transcript)
            .where(Transcript.id.in_([r[0] for r in rows]), Transcript.status == "running")
            .values(status="queued", claim_token=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return [(tid, queue) for tid, queue in rows]


def take_stale_queued(
    session: Session, queue: str, before: datetime, now: datetime, limit: int
) -> list[uuid.UUID]:
    """Queued transcripts of `queue` untouched since `before`, marked as touched now (so one
    re-send is not followed by another before the grace period passes again)."""
    ids = list(
        session.scalars(
            select(Transcript.id)
            .where(
                Transcript.status == "queued",
                Transcript.queue == queue,
                Transcript.updated_at < before,
            )
            .order_by(Transcript.updated_at)
            .limit(limit)
        )
    )
    if ids:
        session.execute(
            update(Transcript)
            .where(Transcript.id.in_(ids))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


# ---- results and analytics ---------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionFilter:
    reason: str | None = None
    product: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _current(filters: ExtractionFilter) -> list[Any]:
    conditions: list[Any] = [Extraction.is_current]
    if filters.reason is not None:
        conditions.append(Extraction.reason == filters.reason)
    if filters.product is not None:
        conditions.append(Extraction.product_key == filters.product)
    if filters.since is not None:
        conditions.append(Extraction.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(Extraction.occurred_at < filters.until)
    return conditions


def list_extractions(
    session: Session,
    filters: ExtractionFilter,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[tuple[Extraction, Transcript]]:
    """Current extractions, newest call first, keyset-paginated on (occurred_at, id)."""
    conditions = _current(filters)
    if after is not None:
        occurred_at, extraction_id = after
        conditions.append(
            or_(
                Extraction.occurred_at < occurred_at,
                and_(Extraction.occurred_at == occurred_at, Extraction.id < extraction_id),
            )
        )
        # Implied by the above, but usable as an index bound: the scan starts at the cursor
        # instead of reading (and filtering out) every newer row, page after page.
        conditions.append(Extraction.occurred_at <= occurred_at)
    statement: Select[tuple[Extraction, Transcript]] = (
        select(Extraction, Transcript)
        .join(Transcript, Transcript.id == Extraction.transcript_id)
        .where(*conditions)
        .order_by(Extraction.occurred_at.desc(), Extraction.id.desc())
        .limit(limit)
    )
    return [(e, t) for e, t in session.execute(statement)]


# ---- analytics rollups (see app/db/models.py) --------------------------------------------

# What an extraction contributes to the rollups.
_COUNTED = (
    Extraction.status,
    Extraction.occurred_at,
    Extraction.reason,
    Extraction.product_key,
    Extraction.product,
)


def _utc_date(value: datetime) -> date:
    """The UTC day of a time (naive: already UTC, as SQLite gives them back)."""
    return (value.astimezone(UTC) if value.tzinfo is not None else value).date()


def _update_rollups(
    session: Session, removed: Sequence[tuple[Any, ...]], added: Sequence[tuple[Any, ...]]
) -> None:
    """Add the `added` extractions' counts to the rollups and take the `removed` ones' out
    (tuples as _COUNTED). Only succeeded extractions count, as in the analytics."""
    days: dict[tuple[date, str], int] = {}
    products: dict[tuple[str, str, str], int] = {}
    product_days: dict[tuple[date, str, str, str], int] = {}
    for sign, extractions in ((-1, removed), (1, added)):
        for status, occurred_at, reason, key, product in extractions:
            if status != "succeeded":
                continue
            code = NO_REASON if reason is None else reason
            day = _utc_date(occurred_at)
            days[day, code] = days.get((day, code), 0) + sign
            if key is not None:
                spelling = "" if product is None else product
                products[key, spelling, code] = products.get((key, spelling, code), 0) + sign
                day_key = (day, key, spelling, code)
                product_days[day_key] = product_days.get(day_key, 0) + sign
    if session.get_bind().dialect.name == "postgresql":
        _add_calls_postgresql(session, days, products, product_days)
        return
    _add_calls_sqlite(session, ProductReasonCount, ("product_key", "product", "reason"), products)
    _add_calls_sqlite(
        session, ProductDayCount, ("day", "product_key", "product", "reason"), product_days
    )
    _add_calls_sqlite(session, ReasonDayCount, ("day", "reason"), days)


def _changed(deltas: dict[Any, int]) -> list[tuple[Any, int]]:
    """The non-zero (key, delta) pairs, in key order: concurrent writers lock the rows they
    share in the same order (no deadlock)."""
    return sorted((key, delta) for key, delta in deltas.items() if delta)


def _add_calls_sqlite(
    session: Session, model: Any, keys: tuple[str, ...], deltas: dict[Any, int]
) -> None:
    """Upsert calls = calls + delta into one rollup (SQLite has one writer at a time)."""
    items = _changed(deltas)
    if not items:
        return
    table = model.__table__
    statement = sqlite.insert(table).values(
        [{**dict(zip(keys, key, strict=True)), "calls": delta} for key, delta in items]
    )
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={"calls": table.c.calls + statement.excluded.calls}
    )
    session.connection().execute(statement)


# The three rollups in one statement on PostgreSQL. Their rows are hot (every call of the day
# counts in one of a few rows) and stay locked until the transaction commits: one statement,
# the last before COMMIT, holds them for one round trip instead of one per table. The rows go
# as arrays (unnest), so the statement's text never changes: SQLAlchemy compiles it once and
# psycopg prepares it once per connection.
_UPSERT_ROLLUPS = text(
    """
    WITH products AS (
        INSERT INTO product_reason_counts AS t (product_key, product, reason, calls)
        SELECT * FROM unnest(
            CAST(:p_key AS varchar[]), CAST(:p_product AS varchar[]),
            CAST(:p_reason AS varchar[]), CAST(:p_calls AS integer[]))
        ON CONFLICT (product_key, product, reason) DO UPDATE SET calls = t.calls + excluded.calls
    ), product_days AS (
        INSERT INTO product_day_counts AS t (day, product_key, product, reason, calls)
        SELECT * FROM unnest(
            CAST(:d_day AS date[]), CAST(:d_key AS varchar[]), CAST(:d_product AS varchar[]),
            CAST(:d_reason AS varchar[]), CAST(:d_calls AS integer[]))
        ON CONFLICT (day, product_key, product, reason)
        DO UPDATE SET calls = t.calls + excluded.calls
    )
    INSERT INTO reason_day_counts AS t (day, reason, calls)
    SELECT * FROM unnest(
        CAST(:r_day AS date[]), CAST(:r_reason AS varchar[]), CAST(:r_calls AS integer[]))
    ON CONFLICT (day, reason) DO UPDATE SET calls = t.calls + excluded.calls
    """
)


def _add_calls_postgresql(
    session: Session,
    days: dict[tuple[date, str], int],
    products: dict[tuple[str, str, str], int],
    product_days: dict[tuple[date, str, str, str], int],
) -> None:
    """Upsert calls = calls + delta into the three rollups at once (see _UPSERT_ROLLUPS)."""

    def columns(deltas: dict[Any, int], names: str) -> dict[str, list[Any]]:
        values = [[*key, delta] for key, delta in _changed(deltas)]
        return {name: [row[i] for row in values] for i, name in enumerate(names.split())}

    parameters = {
        **columns(products, "p_key p_product p_reason p_calls"),
        **columns(product_days, "d_day d_key d_product d_reason d_calls"),
        **columns(days, "r_day r_reason r_calls"),
    }
    if any(parameters.values()):
        session.connection().execute(_UPSERT_ROLLUPS, parameters)


def _utc_day_sql(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps UTC times, without their offset


def rebuild_rollups(session: Session) -> None:
    """The rollups computed again from the extractions (after loading them other than through
    add_current_extractions: bulk loads, benchmarks)."""
    dialect = session.get_bind().dialect.name
    session.execute(delete(ReasonDayCount))
    session.execute(delete(ProductReasonCount))
    session.execute(delete(ProductDayCount))
    day = _utc_day_sql(dialect, Extraction.occurred_at)
    reason = func.coalesce(Extraction.reason, NO_REASON)
    succeeded = (Extraction.is_current, Extraction.status == "succeeded")
    session.execute(
        insert(ReasonDayCount).from_select(
            ["day", "reason", "calls"],
            select(day, reason, func.count()).where(*succeeded).group_by(day, reason),
        )
    )
    product = func.coalesce(Extraction.product, "")
    session.execute(
        insert(ProductReasonCount).from_select(
            ["product_key", "product", "reason", "calls"],
            select(Extraction.product_key, product, reason, func.count())
            .where(*succeeded, Extraction.product_key.is_not(None))
            .group_by(Extraction.product_key, product, reason),
        )
    )
    named = (*succeeded, Extraction.product_key.is_not(None))
    session.execute(
        insert(ProductDayCount).from_select(
            ["day", "product_key", "product", "reason", "calls"],
            select(day, Extraction.product_key, product, reason, func.count())
            .where(*named)
            .group_by(day, Extraction.product_key, product, reason),
        )
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _split_days(
    since: datetime | None, until: datetime | None
) -> tuple[date | None, date | None, list[tuple[date, datetime, datetime]]]:
    """[since, until) as whole UTC days [first, end) (None: unbounded) for the rollup, and the
    parts of a day left at either end, (day, from, to), to count from the extractions."""
    edges: list[tuple[date, datetime, datetime]] = []
    first = end = None
    if since is not None:
        since = _as_utc(since)
        first = since.date()
        if since != _midnight(first):
            first += timedelta(days=1)
            stop = _midnight(first) if until is None else min(_midnight(first), _as_utc(until))
            edges.append((since.date(), since, stop))
    if until is not None:
        until = _as_utc(until)
        end = until.date()
        start = _midnight(end) if since is None else max(_midnight(end), since)
        if until != _midnight(end) and not (edges and edges[0][0] == end):
            edges.append((end, start, until))
    return first, end, edges


def _whole_days(rollup: Any, first: date | None, end: date | None) -> list[Any]:
    """Conditions on a day rollup's rows: counted, and in [first, end) (None: unbounded)."""
    conditions: list[Any] = [rollup.calls > 0]
    if first is not None:
        conditions.append(rollup.day >= first)
    if end is not None:
        conditions.append(rollup.day < end)
    return conditions


def _day_bucket(dialect: str, bucket: str, day: Any) -> Any:
    """The day, week (from Monday) or month a date falls in."""
    if dialect == "postgresql":
        return func.date_trunc(bucket, cast(day, DateTime()))
    formats = {
        "day": func.strftime("%Y-%m-%d", day),
        # SQLite: on to the next Sunday (or stay), back 6 days: the Monday of the week.
        "week": func.date(day, "weekday 0", "-6 days"),
        "month": func.strftime("%Y-%m-01", day),
    }
    return formats[bucket]


def reason_counts(
    session: Session, bucket: str, since: datetime | None, until: datetime | None
) -> list[tuple[Any, str, int]]:
    """Succeeded calls per bucket (UTC) and reason, in [since, until).

    Whole days come from the reason_day_counts rollup (a few thousand rows for years of
    calls); only the parts of a day at either end of the range are counted in extractions.
    """
    dialect = session.get_bind().dialect.name
    first, end, edges = _split_days(since, until)
    rollup = ReasonDayCount
    whole_days = _whole_days(rollup, first, end)
    parts: list[Any] = [
        select(
            rollup.day.label("day"), rollup.reason.label("reason"), rollup.calls.label("calls")
        ).where(*whole_days)
    ]
    for day, start, stop in edges:
        code = func.coalesce(Extraction.reason, NO_REASON)
        parts.append(
            select(literal(day, Date).label("day"), code.label("reason"), func.count())
            .where(
                Extraction.is_current,
                Extraction.status == "succeeded",
                Extraction.occurred_at >= start,
                Extraction.occurred_at < stop,
            )
            .group_by(code)
        )
    counted = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("counted")
    bucket_expr = _day_bucket(dialect, bucket, counted.c.day).label("bucket")
    reason = func.nullif(counted.c.reason, NO_REASON).label("reason")
    # Core rows (session.connection()): no ORM result processing for thousands of tuples.
    rows = session.connection().execute(
        select(bucket_expr, reason, func.sum(counted.c.calls))
        .group_by(bucket_expr, reason)
        .order_by(bucket_expr, reason)
    )
    return [(b, r, int(c)) for b, r, c in rows]


def product_counts(
    session: Session,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[tuple[str, int, dict[str, int]]]:
    """Top products by number of calls, each with its calls per reason.

    All time: from the product_reason_counts rollup. Between dates: whole days from the
    product_day_counts rollup, the parts of a day at either end from the extractions."""
    if reason == NO_REASON:  # calls without a reason: not in the rollups' terms
        return _top_products(session, _per_reason_from_extractions(reason, since, until), limit)
    if since is None and until is None:
        return _product_counts_all_time(session, reason, limit)
    return _product_counts_between(session, reason, since, until, limit)


def _per_reason_from_extractions(
    reason: str | None, since: datetime | None, until: datetime | None
) -> Any:
    """Calls per product and reason (with the first spelling) in [since, until), counted in
    the extractions."""
    conditions = _current(ExtractionFilter(reason=reason, since=since, until=until))
    conditions += [Extraction.status == "succeeded", Extraction.product_key.is_not(None)]
    return (
        select(
            Extraction.product_key.label("product_key"),
            Extraction.reason.label("reason"),
            func.min(Extraction.product).label("product"),
            func.count().label("calls"),
        )
        .where(*conditions)
        .group_by(Extraction.product_key, Extraction.reason)
        .cte("per_reason")
    )


def _product_counts_between(
    session: Session, reason: str | None, since: datetime | None, until: datetime | None, limit: int
) -> list[tuple[str, int, dict[str, int]]]:
    """Top products in [since, until), in two passes over the same counts: whole days from the
    product_day_counts rollup, the parts of a day at either end from the extractions.

    1. `top`: each product's total, grouped by product_key alone (a month is some 40,000
       rollup rows, read from an index that holds day, product_key, reason and calls: no
       table visits, no text keys but one to group by).
    2. `rows`: for those products only (by product_key: an index probe each), their calls per
       reason and spelling; the first spelling names the product."""
    first, end, edges = _split_days(since, until)
    rollup = ProductDayCount
    whole_days = _whole_days(rollup, first, end)
    if reason is not None:
        whole_days.append(rollup.reason == reason)

    def in_edge(start: datetime, stop: datetime) -> list[Any]:
        conditions = _current(ExtractionFilter(reason=reason, since=start, until=stop))
        return [*conditions, Extraction.status == "succeeded", Extraction.product_key.is_not(None)]

    totals: list[Any] = [
        select(rollup.product_key.label("product_key"), rollup.calls.label("calls")).where(
            *whole_days
        )
    ]
    for _, start, stop in edges:
        totals.append(
            select(Extraction.product_key, func.count())
            .where(*in_edge(start, stop))
            .group_by(Extraction.product_key)
        )
    counted = (totals[0] if len(totals) == 1 else union_all(*totals)).subquery("counted")
    total = func.sum(counted.c.calls)
    top = (
        select(counted.c.product_key, total.label("total"))
        .group_by(counted.c.product_key)
        .order_by(total.desc(), counted.c.product_key)
        .limit(limit)
        .cte("top")
    )
    top_keys = select(top.c.product_key)
    parts: list[Any] = [
        select(
            rollup.product_key.label("product_key"),
            rollup.product.label("product"),
            rollup.reason.label("reason"),
            rollup.calls.label("calls"),
        ).where(*whole_days, rollup.product_key.in_(top_keys))
    ]
    for _, start, stop in edges:
        product = func.coalesce(Extraction.product, "")
        code = func.coalesce(Extraction.reason, NO_REASON)
        parts.append(
            select(Extraction.product_key, product, code, func.count())
            .where(*in_edge(start, stop), Extraction.product_key.in_(top_keys))
            .group_by(Extraction.product_key, product, code)
        )
    rows = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("rows")
    # The first spelling over all the product's rows: per group, then across its groups.
    spelling = func.min(func.min(func.nullif(rows.c.product, ""))).over(
        partition_by=top.c.product_key
    )
    result = session.connection().execute(
        select(
            top.c.product_key,
            spelling,
            top.c.total,
            func.nullif(rows.c.reason, NO_REASON),
            func.sum(rows.c.calls),
        )
        .join_from(top, rows, rows.c.product_key == top.c.product_key)
        .group_by(top.c.product_key, top.c.total, rows.c.reason)
        .order_by(top.c.total.desc(), top.c.product_key)
    )
    return _by_product(result)


def _top_products(
    session: Session, per_reason: Any, limit: int
) -> list[tuple[str, int, dict[str, int]]]:
    """The top `limit` products of `per_reason` (calls per product and reason) by their
    total, each with its calls per reason."""
    total = func.sum(per_reason.c.calls)
    top = (
        select(
            per_reason.c.product_key,
            func.min(per_reason.c.product).label("product"),
            total.label("total"),
        )
        .group_by(per_reason.c.product_key)
        .order_by(total.desc(), per_reason.c.product_key)
        .limit(limit)
        .subquery("top")
    )
    rows = session.connection().execute(
        select(
            top.c.product_key, top.c.product, top.c.total, per_reason.c.reason, per_reason.c.calls
        )
        .join(per_reason, per_reason.c.product_key == top.c.product_key)
        .order_by(top.c.total.desc(), top.c.product_key)
    )
    return _by_product(rows)


def _product_counts_all_time(
    session: Session, reason: str | None, limit: int
) -> list[tuple[str, int, dict[str, int]]]:
    """From the rollup: the top products by their total (a sum over some 10,000 rows: no
    string comparisons), then, for those only, their calls per reason and their first
    spelling (the primary key's order: one index probe each)."""
    rollup = ProductReasonCount
    conditions: list[Any] = [rollup.calls > 0]
    if reason is not None:
        conditions.append(rollup.reason == reason)
    total = func.sum(rollup.calls)
    top = (
        select(rollup.product_key, total.label("total"))
        .where(*conditions)
        .group_by(rollup.product_key)
        .order_by(total.desc(), rollup.product_key)
        .limit(limit)
        .subquery("top")
    )
    spelling = aliased(ProductReasonCount)
    first_spelling = (
        select(func.min(spelling.product))
        .where(
            spelling.product_key == top.c.product_key,
            spelling.calls > 0,
            *([spelling.reason == reason] if reason is not None else []),
        )
        .scalar_subquery()
    )
    rows = session.connection().execute(
        select(
            top.c.product_key,
            first_spelling,
            top.c.total,
            func.nullif(rollup.reason, NO_REASON),
            func.sum(rollup.calls),
        )
        .join(rollup, rollup.product_key == top.c.product_key)
        .where(*conditions)
        .group_by(top.c.product_key, top.c.total, rollup.reason)
        .order_by(top.c.total.desc(), top.c.product_key)
    )
    return _by_product(rows)


def _by_product(rows: Iterable[Any]) -> list[tuple[str, int, dict[str, int]]]:
    result: dict[str, tuple[str, int, dict[str, int]]] = {}
    for key, product, total, reason_code, count in rows:
        entry = result.setdefault(key, (product, int(total), {}))
        entry[2][reason_code] = int(count)
    return list(result.values())


# ---- API keys ------------------------------------------------------------------------------


def get_api_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_api_key(session: Session, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))
