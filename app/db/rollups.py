"""Rollup upkeep: the analytics counts (see app/db/models.py) kept exact in the transaction
that stores an extraction, or rebuilt from the extractions after a bulk load."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    cast,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from app.db.models import (
    Extraction,
    ProductDayCount,
    ProductMonthCount,
    ProductReasonCount,
    ReasonDayCount,
)

# What an extraction contributes to the rollups, in this order: its answer (the human label's
# where there is one, else the model's). An extraction without one (failed, not labelled)
# counts nowhere.
COUNTED = (
    Extraction.occurred_at,
    Extraction.source,
    Extraction.taxonomy_version,
    Extraction.answer_reason,
    Extraction.answer_product_key,
    Extraction.answer_product,
)


def _utc_date(value: datetime) -> date:
    """The UTC day of a time (naive: already UTC, as SQLite gives them back)."""
    return (value.astimezone(UTC) if value.tzinfo is not None else value).date()


def update_rollups(
    session: Session, removed: Sequence[tuple[Any, ...]], added: Sequence[tuple[Any, ...]]
) -> None:
    """Add the `added` extractions' counts to the rollups and take the `removed` ones' out
    (tuples as COUNTED). Only extractions with an answer count, as in the analytics."""
    days: dict[tuple[date, str, str, str], int] = {}
    products: dict[tuple[str, str, str, str, str], int] = {}
    product_days: dict[tuple[date, str, str, str, str, str], int] = {}
    product_months: dict[tuple[date, str, str, str, str, str], int] = {}
    for sign, extractions in ((-1, removed), (1, added)):
        for occurred_at, source, taxonomy, reason, key, product in extractions:
            if reason is None:
                continue
            code = reason
            day = _utc_date(occurred_at)
            day_reason = (day, source, taxonomy, code)
            days[day_reason] = days.get(day_reason, 0) + sign
            if key is not None:
                spelling = "" if product is None else product
                product_reason = (key, spelling, source, taxonomy, code)
                products[product_reason] = products.get(product_reason, 0) + sign
                day_key = (day, *product_reason)
                product_days[day_key] = product_days.get(day_key, 0) + sign
                month_key = (day.replace(day=1), *product_reason)
                product_months[month_key] = product_months.get(month_key, 0) + sign
    if session.get_bind().dialect.name == "postgresql":
        _add_calls_postgresql(session, days, products, product_days, product_months)
        return
    dimensions = ("source", "taxonomy_version", "reason")
    _add_calls_sqlite(
        session, ProductReasonCount, ("product_key", "product", *dimensions), products
    )
    _add_calls_sqlite(
        session, ProductDayCount, ("day", "product_key", "product", *dimensions), product_days
    )
    _add_calls_sqlite(
        session,
        ProductMonthCount,
        ("month", "product_key", "product", *dimensions),
        product_months,
    )
    _add_calls_sqlite(session, ReasonDayCount, ("day", *dimensions), days)


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


# The four rollups in one statement on PostgreSQL. Their rows are hot (every call of the day
# counts in one of a few rows) and stay locked until the transaction commits: one statement,
# the last before COMMIT, holds them for one round trip instead of one per table. The rows go
# as arrays (unnest), so the statement's text never changes: SQLAlchemy compiles it once and
# psycopg prepares it once per connection.
_UPSERT_ROLLUPS = text(
    """
    WITH products AS (
        INSERT INTO product_reason_counts AS t
            (product_key, product, source, taxonomy_version, reason, calls)
        SELECT * FROM unnest(
            CAST(:p_key AS varchar[]), CAST(:p_product AS varchar[]),
            CAST(:p_source AS varchar[]), CAST(:p_taxonomy AS varchar[]),
            CAST(:p_reason AS varchar[]), CAST(:p_calls AS integer[]))
        ON CONFLICT (product_key, product, source, taxonomy_version, reason)
        DO UPDATE SET calls = t.calls + excluded.calls
    ), product_days AS (
        INSERT INTO product_day_counts AS t
            (day, product_key, product, source, taxonomy_version, reason, calls)
        SELECT * FROM unnest(
            CAST(:d_day AS date[]), CAST(:d_key AS varchar[]), CAST(:d_product AS varchar[]),
            CAST(:d_source AS varchar[]), CAST(:d_taxonomy AS varchar[]),
            CAST(:d_reason AS varchar[]), CAST(:d_calls AS integer[]))
        ON CONFLICT (day, product_key, product, source, taxonomy_version, reason)
        DO UPDATE SET calls = t.calls + excluded.calls
    ), product_months AS (
        INSERT INTO product_month_counts AS t
            (month, product_key, product, source, taxonomy_version, reason, calls)
        SELECT * FROM unnest(
            CAST(:m_month AS date[]), CAST(:m_key AS varchar[]), CAST(:m_product AS varchar[]),
            CAST(:m_source AS varchar[]), CAST(:m_taxonomy AS varchar[]),
            CAST(:m_reason AS varchar[]), CAST(:m_calls AS integer[]))
        ON CONFLICT (month, product_key, product, source, taxonomy_version, reason)
        DO UPDATE SET calls = t.calls + excluded.calls
    )
    INSERT INTO reason_day_counts AS t (day, source, taxonomy_version, reason, calls)
    SELECT * FROM unnest(
        CAST(:r_day AS date[]), CAST(:r_source AS varchar[]), CAST(:r_taxonomy AS varchar[]),
        CAST(:r_reason AS varchar[]), CAST(:r_calls AS integer[]))
    ON CONFLICT (day, source, taxonomy_version, reason)
    DO UPDATE SET calls = t.calls + excluded.calls
    """
)


def _add_calls_postgresql(
    session: Session,
    days: dict[tuple[date, str, str, str], int],
    products: dict[tuple[str, str, str, str, str], int],
    product_days: dict[tuple[date, str, str, str, str, str], int],
    product_months: dict[tuple[date, str, str, str, str, str], int],
) -> None:
    """Upsert calls = calls + delta into the four rollups at once (see _UPSERT_ROLLUPS)."""

    def columns(deltas: dict[Any, int], names: str) -> dict[str, list[Any]]:
        values = [[*key, delta] for key, delta in _changed(deltas)]
        return {name: [row[i] for row in values] for i, name in enumerate(names.split())}

    parameters = {
        **columns(products, "p_key p_product p_source p_taxonomy p_reason p_calls"),
        **columns(product_days, "d_day d_key d_product d_source d_taxonomy d_reason d_calls"),
        **columns(product_months, "m_month m_key m_product m_source m_taxonomy m_reason m_calls"),
        **columns(days, "r_day r_source r_taxonomy r_reason r_calls"),
    }
    if any(parameters.values()):
        session.connection().execute(_UPSERT_ROLLUPS, parameters)


def _utc_day_sql(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps UTC times, without their offset


def _utc_month_sql(dialect: str, column: Any) -> Any:
    """The first day of the UTC month of a time."""
    if dialect == "postgresql":
        return cast(func.date_trunc("month", func.timezone("UTC", column)), Date)
    return func.date(column, "start of month")


def rebuild_rollups(session: Session) -> None:
    """The rollups computed again from the extractions (after loading them other than through
    add_current_extractions: bulk loads, benchmarks)."""
    dialect = session.get_bind().dialect.name
    session.execute(delete(ReasonDayCount))
    session.execute(delete(ProductReasonCount))
    session.execute(delete(ProductDayCount))
    session.execute(delete(ProductMonthCount))
    day = _utc_day_sql(dialect, Extraction.occurred_at)
    month = _utc_month_sql(dialect, Extraction.occurred_at)
    keys = (Extraction.source, Extraction.taxonomy_version, Extraction.answer_reason)
    names = ["source", "taxonomy_version", "reason", "calls"]
    succeeded = (Extraction.is_current, Extraction.answer_reason.is_not(None))
    session.execute(
        insert(ReasonDayCount).from_select(
            ["day", *names],
            select(day, *keys, func.count()).where(*succeeded).group_by(day, *keys),
        )
    )
    product = func.coalesce(Extraction.answer_product, "")
    key = Extraction.answer_product_key
    named = (*succeeded, key.is_not(None))
    session.execute(
        insert(ProductReasonCount).from_select(
            ["product_key", "product", *names],
            select(key, product, *keys, func.count()).where(*named).group_by(key, product, *keys),
        )
    )
    session.execute(
        insert(ProductDayCount).from_select(
            ["day", "product_key", "product", *names],
            select(day, key, product, *keys, func.count())
            .where(*named)
            .group_by(day, key, product, *keys),
        )
    )
    session.execute(
        insert(ProductMonthCount).from_select(
            ["month", "product_key", "product", *names],
            select(month, key, product, *keys, func.count())
            .where(*named)
            .group_by(month, key, product, *keys),
        )
    )
