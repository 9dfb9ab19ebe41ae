"""product_day_counts: calls per day, product and reason, for product analytics between dates

Without it, GET /v1/analytics/products?since=&until= counts every extraction in the range
(a month of a million-call year: 80,000 rows, over 100 ms). Built here from the extractions
already stored; kept in step by the application like the other rollups; on PostgreSQL,
TRUNCATE extractions empties it too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 13:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUCCEEDED = "is_current AND status = 'succeeded'"


def _truncate_function(tables: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION callx_truncate_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE {tables};
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "product_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_key", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "product_key", "product", "reason", name=op.f("pk_product_day_counts")
        ),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    day = "(occurred_at AT TIME ZONE 'UTC')::date" if postgresql else "date(occurred_at)"
    op.execute(
        f"""
        INSERT INTO product_day_counts (day, product_key, product, reason, calls)
        SELECT {day}, product_key, coalesce(product, ''), coalesce(reason, ''), count(*)
        FROM extractions WHERE {SUCCEEDED} AND product_key IS NOT NULL
        GROUP BY {day}, product_key, coalesce(product, ''), coalesce(reason, '')
        """
    )
    if postgresql:
        op.execute(
            _truncate_function("reason_day_counts, product_reason_counts, product_day_counts")
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_truncate_function("reason_day_counts, product_reason_counts"))
    op.drop_table("product_day_counts")
