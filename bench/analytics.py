"""Analytics on a year of calls: p50/p95 of each analytics endpoint through the real API.

    .venv/bin/python -m bench.analytics [--quick]

PostgreSQL + Redis started here, N transcripts with their current extractions generated in
the database (bench/data_gen.py; 1,000,000, or 200,000 with --quick), the API as a real
process (uvicorn, one process). Each endpoint is called 50 times (30 with --quick) after a
warm-up, one request at a time.

Floor: the very SQL the endpoint runs (captured from the repository functions), run directly
with psycopg in the same run: callx / floor is the API's own overhead (HTTP, validation,
JSON). Target: p95 <= 50 ms, absolute.

EXPLAIN (ANALYZE, BUFFERS) of each query, and of the queries as they were before the rollups
(the same answers counted over the extractions), go to reports/analytics-plans.txt.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from app.db import analytics as analytics_db
from app.db import results as results_db
from app.results import service as listing
from app.results.cursor import encode_cursor
from app.review.quality import QualityFilter, audit_reason_accuracy
from bench.common import BenchRow, machine, report
from bench.data_gen import ANCHOR, TAXONOMY_VERSION, generate, psycopg_url, stack

TARGET_MS = 50.0
CONSOLE_TARGET_MS = 100.0  # a console page: its services' queries and the template
PLANS = Path("reports/analytics-plans.txt")

# A range that starts and ends inside a day (the rollup covers the whole days in between).
SINCE = ANCHOR - timedelta(days=90) + timedelta(hours=7, minutes=13)
UNTIL = ANCHOR - timedelta(hours=3)
LAST_30 = (
    ANCHOR - timedelta(days=30) + timedelta(hours=9, minutes=41),
    ANCHOR - timedelta(hours=2),
)

# The same answers as the analytics endpoints, counted over the extractions: the queries as
# they were before the rollups, for the record (EXPLAIN only).
BEFORE = {
    "reasons, day buckets, all time": """
        SELECT date_trunc('day', occurred_at) AS bucket, answer_reason, count(*) FROM extractions
        WHERE is_current AND answer_reason IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2""",
    "products, all time (top 20)": """
        SELECT answer_product_key, min(answer_product), count(*) FROM extractions
        WHERE is_current AND answer_reason IS NOT NULL AND answer_product_key IS NOT NULL
        GROUP BY answer_product_key ORDER BY count(*) DESC, answer_product_key LIMIT 20""",
    "products, 30 days (top 20)": f"""
        SELECT answer_product_key, min(answer_product), count(*) FROM extractions
        WHERE is_current AND answer_reason IS NOT NULL AND answer_product_key IS NOT NULL
          AND occurred_at >= '{LAST_30[0].isoformat()}' AND occurred_at < '{LAST_30[1].isoformat()}'
        GROUP BY answer_product_key ORDER BY count(*) DESC, answer_product_key LIMIT 20""",
    "extractions, reason=billing, deep page (keyset condition only)": """
        SELECT e.id, e.occurred_at, t.external_id FROM extractions e
        JOIN transcripts t ON t.id = e.transcript_id
        WHERE e.is_current AND e.answer_reason = 'billing'
          AND (e.occurred_at < %(at)s OR (e.occurred_at = %(at)s AND e.id < %(id)s))
        ORDER BY e.occurred_at DESC, e.id DESC LIMIT 51""",
}


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, Any]
    query: Callable[[Session], Any]  # what the endpoint runs, to capture its SQL
    statements: list[tuple[str, Any]] = field(default_factory=list)
    target_ms: float = TARGET_MS


def _iso(value: datetime) -> str:
    return value.isoformat()


def cases(deep_cursor: tuple[datetime, Any]) -> list[Case]:
    listed = results_db.ExtractionFilter(reason="billing")
    result = []
    for bucket in ("day", "week", "month"):
        result.append(
            Case(
                f"reasons bucket={bucket}",
                "/v1/analytics/reasons",
                {"bucket": bucket},
                lambda s, b=bucket: analytics_db.reason_counts(s, b, None, None),
            )
        )
        result.append(
            Case(
                f"reasons bucket={bucket}, 90 days (since/until mid-day)",
                "/v1/analytics/reasons",
                {"bucket": bucket, "since": _iso(SINCE), "until": _iso(UNTIL)},
                lambda s, b=bucket: analytics_db.reason_counts(s, b, SINCE, UNTIL),
            )
        )
    result += [
        Case(
            "products limit=20",
            "/v1/analytics/products",
            {"limit": 20},
            lambda s: analytics_db.product_counts(s, None, None, None, 20),
        ),
        Case(
            "products reason=billing limit=20",
            "/v1/analytics/products",
            {"reason": "billing", "limit": 20},
            lambda s: analytics_db.product_counts(s, "billing", None, None, 20),
        ),
        Case(
            "products limit=20, last 30 days (since/until mid-day)",
            "/v1/analytics/products",
            {"limit": 20, "since": _iso(LAST_30[0]), "until": _iso(LAST_30[1])},
            lambda s: analytics_db.product_counts(s, None, *LAST_30, 20),
        ),
        Case(
            "extractions reason=billing, first page",
            "/v1/extractions",
            {"reason": "billing"},
            lambda s: results_db.list_extractions(s, listed, 51, None),
        ),
        Case(
            "extractions reason=billing, deep cursor page",
            "/v1/extractions",
            {"reason": "billing", "cursor": encode_cursor(*deep_cursor)},
            lambda s: results_db.list_extractions(s, listed, 51, deep_cursor),
        ),
    ]
    return result + console_cases()


def _console_overview(session: Session, first: date, last: date, bucket: str) -> None:
    """What the console's overview runs for the days first..last (app/web/pages.py)."""
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    where = listing.Slice(source=None, taxonomy_version=TAXONOMY_VERSION)
    listing.reason_counts(session, bucket, since, until, where)
    listing.product_counts(session, None, since, until, 10, where)
    listing.call_counts(session, since, until, None, TAXONOMY_VERSION)
    audit_reason_accuracy(
        session, QualityFilter(since=since, until=until, taxonomy_version=TAXONOMY_VERSION)
    )


def console_cases() -> list[Case]:
    """The console's overview and calls list, as a browser asks for them."""
    last = (ANCHOR - timedelta(days=1)).date()
    result = []
    for days, bucket in ((30, "day"), (90, "week"), (365, "month")):
        first = last - timedelta(days=days - 1)
        result.append(
            Case(
                f"console overview, {days} days by {bucket}",
                "/ui",
                {"from": first.isoformat(), "to": last.isoformat(), "bucket": bucket},
                lambda s, f=first, b=bucket: _console_overview(s, f, last, b),
                target_ms=CONSOLE_TARGET_MS,
            )
        )
    for name, params, filters in (
        ("console calls, first page", {}, results_db.ExtractionFilter()),
        (
            "console calls, reason=billing waiting for review",
            {"reason": "billing", "review": "waiting"},
            results_db.ExtractionFilter(reason="billing", review="waiting"),
        ),
        (
            "console calls, language=en, last 30 days",
            {"language": "en", "from": (last - timedelta(days=29)).isoformat()},
            results_db.ExtractionFilter(
                language="en",
                since=datetime.combine(last - timedelta(days=29), datetime.min.time(), UTC),
            ),
        ),
    ):
        result.append(
            Case(
                name,
                "/ui/calls",
                params,
                lambda s, f=filters: listing.list_extractions(s, f, page_size=50, cursor=None),
                target_ms=CONSOLE_TARGET_MS,
            )
        )
    return result


def _capture(database_url: str, all_cases: list[Case]) -> None:
    """The SQL (and parameters) each case's repository function sends, as the API sends it."""
    engine = create_engine(database_url)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    for case in all_cases:
        captured.clear()
        with Session(engine) as session:
            case.query(session)
        case.statements = list(captured)
    engine.dispose()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max_ms": 1000 * ordered[-1],
    }


def _time_floor(conn: psycopg.Connection, case: Case, runs: int) -> dict[str, float]:
    samples = []
    for i in range(runs + 3):
        started = time.perf_counter()
        for statement, parameters in case.statements:
            conn.execute(statement, parameters).fetchall()
        conn.rollback()
        if i >= 3:
            samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def _time_api(client: httpx.Client, case: Case, runs: int) -> dict[str, float]:
    samples = []
    for i in range(runs + 3):
        started = time.perf_counter()
        response = client.get(case.path, params=case.params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{case.name}: {response.status_code} {response.text[:300]}")
        if i >= 3:
            samples.append(elapsed)
    return _percentiles(samples)


def _explain(conn: psycopg.Connection, statement: str, parameters: Any) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).fetchall()
    conn.rollback()
    return "\n".join(r[0] for r in rows)


def _deep_cursor(conn: psycopg.Connection) -> tuple[datetime, Any]:
    """The position half-way down the billing calls, newest first."""
    (count,) = conn.execute(
        "SELECT count(*) FROM extractions WHERE is_current AND answer_reason = 'billing'"
    ).fetchone()  # type: ignore[misc]
    row = conn.execute(
        "SELECT occurred_at, id FROM extractions WHERE is_current AND answer_reason = 'billing' "
        "ORDER BY occurred_at DESC, id DESC OFFSET %s LIMIT 1",
        (count // 2,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def run(quick: bool) -> list[BenchRow]:
    n = 200_000 if quick else 1_000_000
    runs = 30 if quick else 50
    plans: list[str] = [f"callx analytics query plans, {n:,} calls; {machine()}", ""]
    results: list[tuple[Case, dict[str, float], dict[str, float]]] = []
    with stack("callx_analytics") as running:
        timings = generate(running.database_url, n)
        plans.append("data: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + "\n")
        url = running.start_api()
        with psycopg.connect(psycopg_url(running.database_url)) as conn:
            all_cases = cases(_deep_cursor(conn))
            conn.rollback()
            _capture(running.database_url, all_cases)
            with httpx.Client(base_url=url, timeout=60) as client:
                for case in all_cases:
                    api = _time_api(client, case, runs)
                    floor = _time_floor(conn, case, runs)
                    results.append((case, floor, api))
            for case in all_cases:
                for statement, parameters in case.statements:
                    plans += [
                        "=" * 100,
                        f"{case.name}: GET {case.path} {case.params}",
                        "-" * 100,
                        statement.strip(),
                        f"parameters: {parameters}",
                        "",
                        _explain(conn, statement, parameters),
                        "",
                    ]
            deep_at, deep_id = _deep_cursor(conn)
            plans += ["", "#" * 100, "BEFORE: the same answers counted over the extractions", ""]
            for name, statement in BEFORE.items():
                plans += [
                    "=" * 100,
                    f"before: {name}",
                    "-" * 100,
                    " ".join(statement.split()),
                    "",
                    _explain(conn, statement, {"at": deep_at, "id": deep_id}),
                    "",
                ]
    PLANS.parent.mkdir(parents=True, exist_ok=True)
    PLANS.write_text("\n".join(plans), "utf-8")

    rows = []
    for case, floor, api in results:
        rows.append(
            BenchRow(
                name=f"GET {case.path}: {case.name}",
                unit="ms p95",
                floor=floor["p95_ms"],
                callx=api["p95_ms"],
                ratio=api["p95_ms"] / floor["p95_ms"],
                target=f"p95 <= {case.target_ms:.0f} ms",
                met=api["p95_ms"] <= case.target_ms,
                better="lower",
                notes=f"p50 {api['p50_ms']:.1f} ms (SQL alone {floor['p50_ms']:.1f} ms); "
                f"{n:,} calls, {runs} requests",
                extra={"api": api, "floor_sql": floor, "params": case.params, "calls": n},
            )
        )
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    report(rows, Path("reports/bench-analytics.json"))
    print(f"query plans: {PLANS}")


if __name__ == "__main__":
    main(sys.argv[1:])
