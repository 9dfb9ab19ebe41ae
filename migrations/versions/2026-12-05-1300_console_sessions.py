"""the console: its sign-in sessions, indexes for its overview, and a monthly product rollup

- web_sessions: a browser signed in to the console (/ui) with an API key. Only a hash of the
  session's cookie is kept, with the CSRF token its forms carry and when it expires. Deleted
  with its key's revocation in effect (the key is checked on every request).
- ix_extractions_current_failed: the failed calls in a date range (the overview's failures),
  read from a small index instead of every extraction.
- ix_extractions_audit_occurred_at: the audit sample in a date range (the overview's
  production accuracy), likewise.
- product_month_counts: calls per UTC month, product and reason (the answers that count), so
  that the top products of a quarter or a year read a row per month instead of per day. Built
  here from the extractions; kept in step by the application like the other rollups; on
  PostgreSQL, TRUNCATE extractions empties it too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 13:00:00.000000+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ROLLUPS = "reason_day_counts, product_reason_counts, product_day_counts"
AUDITED = "in_audit AND review_threshold IS NOT NULL"
COUNTED = "is_current AND answer_reason IS NOT NULL AND answer_product_key IS NOT NULL"


def _truncate_function(tables: str) -> str:
    """The TRUNCATE trigger's function over `tables`, as revision 0004 writes it (read from
    that revision, not copied)."""
    path = Path(__file__).with_name("2026-11-29-1300_product_day_counts.py")
    spec = importlib.util.spec_from_file_location("callx_migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module._truncate_function(tables))


def _product_month_counts() -> None:
    op.create_table(
        "product_month_counts",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("product_key", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "month",
            "product_key",
            "product",
            "source",
            "taxonomy_version",
            "reason",
            name=op.f("pk_product_month_counts"),
        ),
    )
    op.create_index(
        "ix_product_month_counts_month_product_key",
        "product_month_counts",
        ["month", "product_key"],
        postgresql_include=["source", "taxonomy_version", "reason", "calls"],
    )
    op.create_index(
        "ix_product_month_counts_product_key_month",
        "product_month_counts",
        ["product_key", "month"],
        postgresql_include=["product", "source", "taxonomy_version", "reason", "calls"],
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    month = (
        "date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date"
        if postgresql
        else "date(occurred_at, 'start of month')"
    )
    op.execute(
        f"""
        INSERT INTO product_month_counts
            (month, product_key, product, source, taxonomy_version, reason, calls)
        SELECT {month}, answer_product_key, coalesce(answer_product, ''), source,
               taxonomy_version, answer_reason, count(*)
        FROM extractions WHERE {COUNTED}
        GROUP BY {month}, answer_product_key, coalesce(answer_product, ''), source,
                 taxonomy_version, answer_reason
        """
    )
    if postgresql:
        op.execute(_truncate_function(ROLLUPS + ", product_month_counts"))


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_web_sessions_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_sessions")),
    )
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])
    op.create_index(
        "ix_extractions_current_failed",
        "extractions",
        ["occurred_at"],
        postgresql_where=sa.text("is_current AND status = 'failed'"),
        sqlite_where=sa.text("is_current AND status = 'failed'"),
    )
    op.create_index(
        "ix_extractions_audit_occurred_at",
        "extractions",
        ["occurred_at"],
        postgresql_include=["id", "status", "reason", "taxonomy_version"],
        postgresql_where=sa.text(AUDITED),
        sqlite_where=sa.text(AUDITED),
    )
    _product_month_counts()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_truncate_function(ROLLUPS))
    op.drop_index("ix_product_month_counts_product_key_month", table_name="product_month_counts")
    op.drop_index("ix_product_month_counts_month_product_key", table_name="product_month_counts")
    op.drop_table("product_month_counts")
    op.drop_index(
        "ix_extractions_audit_occurred_at",
        table_name="extractions",
        postgresql_where=sa.text(AUDITED),
        sqlite_where=sa.text(AUDITED),
    )
    op.drop_index(
        "ix_extractions_current_failed",
        table_name="extractions",
        postgresql_where=sa.text("is_current AND status = 'failed'"),
        sqlite_where=sa.text("is_current AND status = 'failed'"),
    )
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_table("web_sessions")
