"""Benchmark data and services: a real PostgreSQL + Redis (+ the API as a process), and N
transcripts with their current extractions generated inside PostgreSQL (generate_series).

    .venv/bin/python -m bench.data_gen [N]      # start a throwaway PostgreSQL, load N, report

The distributions are meant to look like a year of a call centre: 7 reasons, skewed; about
2,000 products, Zipf-like (a few very frequent, a long tail), some spelled in capitals (same
product_key); calls spread over 365 days; 96% succeeded, the rest failed (no product/reason);
8% of the successes name no product; 3% of the transcripts were extracted twice (the older
attempt kept, not current).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.db import rollups as rollups_db
from app.db.migrate import upgrade
from schemas.taxonomy import load_taxonomy
from support.services import CallxProcess, PostgresServer, RedisServer, free_port

# The newest generated call is just before ANCHOR; the oldest 365 days earlier.
ANCHOR = datetime(2026, 11, 29, tzinfo=UTC)
DAYS = 365
PRODUCTS = 2000
# The default taxonomy's version: the calls are the API's own (the console shows its taxonomy's).
TAXONOMY_VERSION = load_taxonomy(None).version
ROLLUPS = (
    "reason_day_counts",
    "product_reason_counts",
    "product_day_counts",
    "product_month_counts",
)

# (code, cumulative share)
REASONS = [
    ("breakdown", 0.30),
    ("billing", 0.52),
    ("usage_help", 0.67),
    ("delivery", 0.79),
    ("sales_inquiry", 0.88),
    ("cancellation", 0.95),
    ("other", 1.0),
]
BRANDS = [
    "Bosch Série",
    "Samsung Galaxy",
    "Dyson V",
    "Fibre",
    "Livebox",
    "Forfait mobile",
    "iPhone",
    "Freebox",
    "Miele",
    "Box Pro",
]


def psycopg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


# ---- services ----------------------------------------------------------------------------


@dataclass
class Stack:
    postgres: PostgresServer
    redis: RedisServer
    database_url: str  # SQLAlchemy URL of the migrated database
    log_dir: Path
    api: CallxProcess | None = None
    api_url: str | None = None

    @property
    def dsn(self) -> str:
        return psycopg_url(self.database_url)

    def start_api(self, **env: str) -> str:
        """`callx serve --no-worker --no-migrate` as a real process (uvicorn, one process)."""
        port = free_port()
        environment = {
            "CALLX_DATA_DIR": str(self.log_dir / "data"),
            "CALLX_CACHE_DIR": str(self.log_dir / "cache"),
            "CALLX_DATABASE__URL": self.database_url,
            "CALLX_BROKER__URL": self.redis.url,
            "CALLX_AUTH__REQUIRED": "false",
            "CALLX_EXTRACTION__BACKEND": "fake",
            **env,
        }
        self.api = CallxProcess(
            ["serve", "--port", str(port), "--no-worker", "--no-migrate"],
            environment,
            self.log_dir,
            "api",
        ).start()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api.wait_http(self.api_url + "/healthz")
        return self.api_url


@contextmanager
def stack(database: str = "callx_bench") -> Iterator[Stack]:
    """PostgreSQL and Redis started here, a database built by the migrations; all stopped at
    the end (the API too, if started)."""
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    log_dir = Path(tempfile.mkdtemp(prefix="callx-bench-"))
    running = Stack(postgres, redis, postgres.url(database), log_dir)
    try:
        admin = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        upgrade(running.database_url)
        yield running
    except BaseException:
        print(f"bench: logs kept in {log_dir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    finally:
        if running.api is not None:
            running.api.stop()
        redis.cleanup()
        postgres.cleanup()


# ---- data ----------------------------------------------------------------------------------


def _reason_case(column: str) -> str:
    branches = " ".join(f"WHEN {column} < {share} THEN '{code}'" for code, share in REASONS[:-1])
    return f"CASE {branches} ELSE '{REASONS[-1][0]}' END"


def _brand_array() -> str:
    return "ARRAY[" + ", ".join("'" + b.replace("'", "''") + "'" for b in BRANDS) + "]"


def generate(
    database_url: str, n: int, *, seed: float = 0.42, source: str = "gen"
) -> dict[str, float]:
    """Load n transcripts, each with a current extraction, into an empty (migrated) database,
    rebuild the analytics rollups, VACUUM ANALYZE. Returns timings in seconds."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        # Secondary indexes are dropped during the load and built again after (much faster);
        # FK triggers are skipped (session_replication_role) since the ids are generated here.
        indexes = conn.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = 'public' AND i.tablename IN ('transcripts', 'extractions')
              AND NOT EXISTS (
                SELECT 1 FROM pg_constraint c
                WHERE c.conindid = (quote_ident(i.indexname))::regclass)
            """
        ).fetchall()
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            conn.execute("SELECT setseed(%s)", (seed,))
            conn.execute(
                f"""
                CREATE TEMP TABLE gen ON COMMIT DROP AS
                SELECT i,
                       gen_random_uuid() AS tid,
                       gen_random_uuid() AS eid,
                       %(anchor)s::timestamptz
                         - random() * interval '{DAYS} days' AS occurred,
                       random() AS r_reason,
                       least({PRODUCTS}, floor(exp(random() * ln({PRODUCTS} + 1)))::int) AS rank,
                       random() AS r_status,
                       random() AS r_product,
                       random() AS r_case,
                       random() AS r_redo,
                       random() AS r_latency,
                       random() AS r_audit
                FROM generate_series(1, %(n)s) AS i
                """,
                {"anchor": ANCHOR, "n": n},
            )
            conn.execute(
                """
                INSERT INTO transcripts (id, source, external_id, text, text_sha256, language,
                    occurred_at, metadata, batch_id, queue, status, lease_until, claim_token,
                    runs, created_at, updated_at)
                SELECT tid, %(source)s, 'call-' || i, t.body,
                       encode(sha256(convert_to(t.body, 'UTF8')), 'hex'),
                       CASE WHEN i %% 3 = 0 THEN 'en' ELSE 'fr' END,
                       occurred, ('{"agent": "A' || (i %% 50) || '"}')::json, NULL, 'batch',
                       CASE WHEN r_status < 0.96 THEN 'succeeded' ELSE 'failed' END,
                       NULL, NULL, CASE WHEN r_redo < 0.03 THEN 2 ELSE 1 END,
                       occurred + interval '5 minutes', occurred + interval '6 minutes'
                FROM gen,
                     LATERAL (SELECT 'Agent: Bonjour, service client.' || chr(10)
                                  || 'Client: appel numéro ' || i
                                  || ', j''ai un souci avec mon produit ' || rank
                                  || '.' AS body) AS t
                """,
                {"source": source},
            )
            timings["transcripts_s"] = time.perf_counter() - started
            product = f"({_brand_array()})[1 + rank % {len(BRANDS)}] || ' ' || rank"
            # Inlined as the statements below take no parameters (their `%` are operators).
            assert source.isidentifier(), source
            source_literal = f"'{source}'"
            extraction_columns = """
                (id, transcript_id, is_current, status, occurred_at, source, product,
                 product_key, reason, confidence, backend, model, prompt_version, taxonomy_version,
                 latency_ms, prompt_tokens, completion_tokens, attempts, truncated, raw_answer,
                 error, error_kind, created_at, answer_product, answer_product_key,
                 answer_reason, answer_by, review_cause, in_audit, review_threshold, audit_rate,
                 review_priority)
            """
            ok = "r_status < 0.96"
            named = f"{ok} AND r_product >= 0.08"
            # The review decision at threshold 0.9 with a 2% audit sample; people labelled half
            # of the audit sample (agreeing with the model on 19 calls in 20), and those calls
            # left the review queue.
            confidence = "0.5 + r_reason / 2"
            audit = "r_audit < 0.02"
            labelled = f"r_audit < 0.01 AND {ok}"
            review = f"""
                CASE WHEN NOT ({ok}) THEN 'failed'
                     WHEN {confidence} < 0.9 THEN 'low_confidence' END,
                {audit}, 0.9, 0.02,
                CASE WHEN {labelled} THEN NULL
                     WHEN {audit} THEN -2
                     WHEN NOT ({ok}) THEN -1
                     WHEN {confidence} < 0.9 THEN {confidence} END
            """
            current = f"""
                INSERT INTO extractions {extraction_columns}
                SELECT eid, tid, true,
                       CASE WHEN {ok} THEN 'succeeded' ELSE 'failed' END, occurred,
                       {source_literal},
                       CASE WHEN {named} THEN
                            CASE WHEN r_case < 0.1 THEN upper({product}) ELSE {product} END
                       END,
                       CASE WHEN {named} THEN lower({product}) END,
                       CASE WHEN {ok} THEN {_reason_case("r_reason")} END,
                       CASE WHEN {ok} THEN 0.5 + r_reason / 2 END,
                       'llamacpp', 'qwen2.5-1.5b-instruct-q4_k_m', 'v3', '{TAXONOMY_VERSION}',
                       (300 + r_latency * 900)::int, 180 + (i % 400), 12 + (i % 9),
                       1, false,
                       CASE WHEN {ok} THEN '{{"product": "x", "reason": "y"}}' END,
                       CASE WHEN {ok} THEN NULL ELSE 'timed out after 60 s' END,
                       CASE WHEN {ok} THEN NULL ELSE 'timeout' END,
                       occurred + interval '6 minutes',
                       CASE WHEN {named} THEN
                            CASE WHEN r_case < 0.1 THEN upper({product}) ELSE {product} END
                       END,
                       CASE WHEN {named} THEN lower({product}) END,
                       CASE WHEN {labelled} AND r_product < 0.05 THEN 'other'
                            WHEN {ok} THEN {_reason_case("r_reason")} END,
                       CASE WHEN {labelled} THEN 'label' WHEN {ok} THEN 'model' END,
                       {review}
                FROM gen
            """
            conn.execute(current)
            conn.execute(
                f"""
                INSERT INTO labels (id, transcript_id, version, is_current, reason, product,
                    product_key, note, taxonomy_version, labelled_by, key_id, created_at,
                    extraction_id, machine_status, machine_reason, machine_product,
                    machine_confidence)
                SELECT gen_random_uuid(), tid, 1, true,
                       CASE WHEN r_product < 0.05 THEN 'other'
                            ELSE {_reason_case("r_reason")} END,
                       CASE WHEN {named} THEN {product} END,
                       CASE WHEN {named} THEN lower({product}) END,
                       NULL, '{TAXONOMY_VERSION}', 'reviewer-' || (i % 5), NULL,
                       occurred + interval '1 day', eid, 'succeeded',
                       {_reason_case("r_reason")}, CASE WHEN {named} THEN {product} END,
                       {confidence}
                FROM gen WHERE {labelled}
                """
            )
            # The earlier, superseded attempt of 3% of the calls: failed, not current.
            conn.execute(
                f"""
                INSERT INTO extractions {extraction_columns}
                SELECT gen_random_uuid(), tid, false, 'failed', occurred, {source_literal},
                       NULL, NULL, NULL, NULL,
                       'llamacpp', 'qwen2.5-1.5b-instruct-q4_k_m', 'v3', '{TAXONOMY_VERSION}',
                       60000, NULL, NULL, 3, false, NULL, 'timed out after 60 s', 'timeout',
                       occurred + interval '5 minutes 30 seconds', NULL, NULL, NULL, NULL,
                       NULL, false, NULL, NULL, NULL
                FROM gen WHERE r_redo < 0.03
                """
            )
            timings["extractions_s"] = time.perf_counter() - started - timings["transcripts_s"]
        mark = time.perf_counter()
        for _, definition in indexes:
            conn.execute(definition)
        timings["indexes_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        rebuild_rollups(database_url)
        timings["rollups_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        # VACUUM also sets the visibility map: index-only scans need no heap visits.
        for table in ROLLUPS + ("transcripts", "extractions", "labels"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        timings["vacuum_analyze_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    return timings


def rebuild_rollups(database_url: str) -> None:
    """The analytics rollups computed from the extractions loaded behind the app's back."""
    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        rollups_db.rebuild_rollups(session)
    engine.dispose()


def new_external_ids(n: int, prefix: str = "bench") -> list[str]:
    run = uuid.uuid4().hex[:10]
    return [f"{prefix}-{run}-{i}" for i in range(n)]


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 1_000_000
    with stack() as running:
        timings = generate(running.database_url, n)
        with psycopg.connect(running.dsn) as conn:
            sizes = conn.execute(
                """
                SELECT relname, pg_size_pretty(pg_total_relation_size(oid)),
                       (SELECT reltuples::bigint FROM pg_class c2 WHERE c2.oid = c.oid)
                FROM pg_class c
                WHERE relname = ANY(%s)
                """,
                [["transcripts", "extractions", *ROLLUPS]],
            ).fetchall()
    print(f"{n} calls generated: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    for name, size, rows in sizes:
        print(f"  {name}: {rows} rows, {size}")


if __name__ == "__main__":
    main(sys.argv[1:])
