"""analytics rollups: calls per day and reason, per product and reason; a covering index

reason_day_counts and product_reason_counts count the current, succeeded extractions; the
application keeps them in step in the transaction that stores an extraction. Built here from
the extractions already stored. On PostgreSQL, TRUNCATE extractions empties them too.

ix_extractions_succeeded_occurred_at: the succeeded current extractions by time, with what the
analytics read (PostgreSQL: INCLUDE), for ranges the rollups do not cover.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUCCEEDED = "is_current AND status = 'succeeded'"

TRUNCATE_FUNCTION = """
CREATE FUNCTION callx_truncate_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE reason_day_counts, product_reason_counts;
    RETURN NULL;
END
$$
"""
TRUNCATE_TRIGGER = """
CREATE TRIGGER extractions_truncate_rollups AFTER TRUNCATE ON extractions
FOR EACH STATEMENT EXECUTE FUNCTION callx_truncate_rollups()
"""


def upgrade() -> None:
    op.create_table(
        "reason_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "reason", name=op.f("pk_reason_day_counts")),
    )
    op.create_table(
        "product_reason_counts",
        sa.Column("product_key", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "product_key", "product", "reason", name=op.f("pk_product_reason_counts")
        ),
    )
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_extractions_succeeded_occurred_at",
            ["occurred_at"],
            unique=False,
            postgresql_include=["reason", "product_key", "product"],
            postgresql_where=sa.text(SUCCEEDED),
            sqlite_where=sa.text(SUCCEEDED),
        )

    postgresql = op.get_bind().dialect.name == "postgresql"
    # SQLite stores the times in UTC without their offset.
    day = "(occurred_at AT TIME ZONE 'UTC')::date" if postgresql else "date(occurred_at)"
    op.execute(
        f"""
        INSERT INTO reason_day_counts (day, reason, calls)
        SELECT {day}, coalesce(reason, ''), count(*)
        FROM extractions WHERE {SUCCEEDED}
        GROUP BY {day}, coalesce(reason, '')
        """
    )
    op.execute(
        f"""
        INSERT INTO product_reason_counts (product_key, product, reason, calls)
        SELECT product_key, coalesce(product, ''), coalesce(reason, ''), count(*)
        FROM extractions WHERE {SUCCEEDED} AND product_key IS NOT NULL
        GROUP BY product_key, coalesce(product, ''), coalesce(reason, '')
        """
    )
    if postgresql:
        op.execute(TRUNCATE_FUNCTION)
        op.execute(TRUNCATE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS extractions_truncate_rollups ON extractions")
        op.execute("DROP FUNCTION IF EXISTS callx_truncate_rollups()")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_extractions_succeeded_occurred_at",
            postgresql_include=["reason", "product_key", "product"],
            postgresql_where=sa.text(SUCCEEDED),
            sqlite_where=sa.text(SUCCEEDED),
        )
    op.drop_table("product_reason_counts")
    op.drop_table("reason_day_counts")
