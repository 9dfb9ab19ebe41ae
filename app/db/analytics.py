"""Analytics reads: calls per reason over time and top products, from the rollups for whole
days and from the extractions for the parts of a day at either end of a range. They count each
call's answer: the human label's where there is one, else the model's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    NO_REASON,
    Extraction,
    ProductDayCount,
    ProductMonthCount,
    ProductReasonCount,
    ReasonDayCount,
)
from app.db.results import ExtractionFilter, current_conditions


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


def _union(parts: list[Any]) -> Any:
    """One select, or the UNION ALL of several. (Typed Any: mypy 2.4 crashes inferring the
    generic row type of union_all over SQLAlchemy 2.1's variadic Select.)"""
    return parts[0] if len(parts) == 1 else union_all(*parts)


@dataclass(frozen=True)
class Slice:
    """The calls an analytics answer counts: of one source and taxonomy version (None: all)."""

    source: str | None = None
    taxonomy_version: str | None = None

    def on_rollup(self, rollup: Any) -> list[Any]:
        conditions: list[Any] = []
        if self.source is not None:
            conditions.append(rollup.source == self.source)
        if self.taxonomy_version is not None:
            conditions.append(rollup.taxonomy_version == self.taxonomy_version)
        return conditions

    def extraction_filter(
        self, reason: str | None, since: datetime | None, until: datetime | None
    ) -> ExtractionFilter:
        return ExtractionFilter(
            reason=reason,
            since=since,
            until=until,
            source=self.source,
            taxonomy_version=self.taxonomy_version,
        )


ALL = Slice()
# A call counts in the analytics when it has an answer: the model's (succeeded) or a label's.
ANSWERED = Extraction.answer_reason.is_not(None)


def _whole_days(rollup: Any, first: date | None, end: date | None, where: Slice = ALL) -> list[Any]:
    """Conditions on a day rollup's rows: counted, in [first, end) (None: unbounded) and in
    the slice."""
    conditions: list[Any] = [rollup.calls > 0, *where.on_rollup(rollup)]
    if first is not None:
        conditions.append(rollup.day >= first)
    if end is not None:
        conditions.append(rollup.day < end)
    return conditions


def _in_range(column: Any, low: date | None, high: date | None) -> list[Any]:
    conditions: list[Any] = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return conditions


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _month_and_day_spans(
    first: date | None, end: date | None
) -> list[tuple[Any, Any, date | None, date | None]]:
    """The whole days [first, end) (None: unbounded) as (rollup, its column, from, to): the
    whole months in them from product_month_counts, the days before and after them from
    product_day_counts. Empty spans are left out."""
    months_from = first if first is None or first.day == 1 else _next_month(first)
    months_to = None if end is None else end.replace(day=1)
    if months_from is not None and months_to is not None and months_from >= months_to:
        return [(ProductDayCount, ProductDayCount.day, first, end)]  # no whole month
    spans: list[tuple[Any, Any, date | None, date | None]] = [
        (ProductMonthCount, ProductMonthCount.month, months_from, months_to)
    ]
    if first is not None and months_from != first:
        spans.append((ProductDayCount, ProductDayCount.day, first, months_from))
    if end is not None and months_to != end:
        spans.append((ProductDayCount, ProductDayCount.day, months_to, end))
    return spans


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
    session: Session,
    bucket: str,
    since: datetime | None,
    until: datetime | None,
    where: Slice = ALL,
) -> list[tuple[Any, str, int]]:
    """Succeeded calls per bucket (UTC) and reason, in [since, until).

    Whole days come from the reason_day_counts rollup (a few thousand rows for years of
    calls); only the parts of a day at either end of the range are counted in extractions.
    """
    dialect = session.get_bind().dialect.name
    first, end, edges = _split_days(since, until)
    rollup = ReasonDayCount
    whole_days = _whole_days(rollup, first, end, where)
    parts: list[Any] = [
        select(
            rollup.day.label("day"), rollup.reason.label("reason"), rollup.calls.label("calls")
        ).where(*whole_days)
    ]
    for day, start, stop in edges:
        code = Extraction.answer_reason
        parts.append(
            select(literal(day, Date).label("day"), code.label("reason"), func.count())
            .where(*current_conditions(where.extraction_filter(None, start, stop)), ANSWERED)
            .group_by(code)
        )
    counted = _union(parts).subquery("counted")
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
    where: Slice = ALL,
) -> list[tuple[str, int, dict[str, int]]]:
    """Top products by number of calls, each with its calls per reason.

    All time: from the product_reason_counts rollup. Between dates: whole days from the
    product_day_counts rollup, the parts of a day at either end from the extractions."""
    if reason == NO_REASON:  # calls without a reason: not in the rollups' terms
        per_reason = _per_reason_from_extractions(reason, since, until, where)
        return _top_products(session, per_reason, limit)
    if since is None and until is None:
        return _product_counts_all_time(session, reason, limit, where)
    return _product_counts_between(session, reason, since, until, limit, where)


def _per_reason_from_extractions(
    reason: str | None, since: datetime | None, until: datetime | None, where: Slice = ALL
) -> Any:
    """Calls per product and reason (with the first spelling) in [since, until), counted in
    the extractions."""
    conditions = current_conditions(where.extraction_filter(reason, since, until))
    conditions += [ANSWERED, Extraction.answer_product_key.is_not(None)]
    return (
        select(
            Extraction.answer_product_key.label("product_key"),
            Extraction.answer_reason.label("reason"),
            func.min(Extraction.answer_product).label("product"),
            func.count().label("calls"),
        )
        .where(*conditions)
        .group_by(Extraction.answer_product_key, Extraction.answer_reason)
        .cte("per_reason")
    )


def _product_counts_between(
    session: Session,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    where: Slice,
) -> list[tuple[str, int, dict[str, int]]]:
    """Top products in [since, until), in two passes over the same counts: whole days from the
    product_day_counts rollup, the parts of a day at either end from the extractions.

    1. `top`: each product's total, grouped by product_key alone (a month is some 40,000
       rollup rows, read from an index that holds day, product_key, reason and calls: no
       table visits, no text keys but one to group by).
    2. `rows`: for those products only (by product_key: an index probe each), their calls per
       reason and spelling; the first spelling names the product."""
    first, end, edges = _split_days(since, until)
    # The whole days as whole months (product_month_counts) and the days around them
    # (product_day_counts): a year is 12 month rows per product and reason, not 365.
    spans = [
        (
            rollup,
            column,
            [*_in_range(column, low, high), rollup.calls > 0, *where.on_rollup(rollup)],
        )
        for rollup, column, low, high in _month_and_day_spans(first, end)
    ]
    for rollup, _, conditions in spans:
        if reason is not None:
            conditions.append(rollup.reason == reason)

    key = Extraction.answer_product_key

    def in_edge(start: datetime, stop: datetime) -> list[Any]:
        conditions = current_conditions(where.extraction_filter(reason, start, stop))
        return [*conditions, ANSWERED, key.is_not(None)]

    totals: list[Any] = [
        select(rollup.product_key.label("product_key"), rollup.calls.label("calls")).where(
            *conditions
        )
        for rollup, _, conditions in spans
    ]
    for _, start, stop in edges:
        totals.append(select(key, func.count()).where(*in_edge(start, stop)).group_by(key))
    counted = _union(totals).subquery("counted")
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
        ).where(*conditions, rollup.product_key.in_(top_keys))
        for rollup, _, conditions in spans
    ]
    for _, start, stop in edges:
        product = func.coalesce(Extraction.answer_product, "")
        code = Extraction.answer_reason
        parts.append(
            select(key, product, code, func.count())
            .where(*in_edge(start, stop), key.in_(top_keys))
            .group_by(key, product, code)
        )
    rows = _union(parts).subquery("rows")
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
    session: Session, reason: str | None, limit: int, where: Slice
) -> list[tuple[str, int, dict[str, int]]]:
    """From the rollup: the top products by their total (a sum over some 10,000 rows: no
    string comparisons), then, for those only, their calls per reason and their first
    spelling (the primary key's order: one index probe each)."""
    rollup = ProductReasonCount
    conditions: list[Any] = [rollup.calls > 0, *where.on_rollup(rollup)]
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
            *where.on_rollup(spelling),
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
