"""product_day_counts: covering indexes for top products between dates, in two passes

GET /v1/analytics/products?since=&until= first sums the calls of each product over the whole
days of the range, from an index holding (day, product_key, reason, calls) alone (an
index-only scan: a month is some 40,000 entries, read without visiting the table), then
reads the calls per reason and spelling of the top products only, by product_key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 16:00:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_product_day_counts_day_product_key",
        "product_day_counts",
        ["day", "product_key"],
        postgresql_include=["reason", "calls"],
    )
    op.create_index(
        "ix_product_day_counts_product_key_day",
        "product_day_counts",
        ["product_key", "day"],
        postgresql_include=["product", "reason", "calls"],
    )


def downgrade() -> None:
    op.drop_index("ix_product_day_counts_product_key_day", table_name="product_day_counts")
    op.drop_index("ix_product_day_counts_day_product_key", table_name="product_day_counts")
