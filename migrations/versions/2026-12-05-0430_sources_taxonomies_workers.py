"""rollups per source and taxonomy version; the taxonomy a call is queued for; worker heartbeats

- transcripts.taxonomy_version: the taxonomy the API queued the call for; only a worker with
  that taxonomy extracts it (NULL for calls queued before: any worker).
- extractions.source: copied from the transcript (immutable there), so that analytics filter by
  source without a join.
- The three rollups gain source and taxonomy_version in their keys (the analytics filter by
  them, and results of two taxonomies no longer mix in one count); rebuilt from the extractions.
- worker_heartbeats: each worker's last sign of life, its queues, backend, model and taxonomy
  (/readyz).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 04:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUCCEEDED = "is_current AND status = 'succeeded'"
ROLLUPS = ("reason_day_counts", "product_reason_counts", "product_day_counts")

# As revision 0001 made it: SQLite's ALTER of extractions (a copy, then a rename) cannot run
# while a view reads the table, so the view is dropped and made again around it.
CALL_EXTRACTIONS_VIEW = """
CREATE VIEW call_extractions AS
SELECT
    t.id AS transcript_id,
    t.source,
    t.external_id,
    t.language,
    t.occurred_at,
    t.created_at AS received_at,
    t.status,
    t.batch_id,
    e.product,
    e.product_key,
    e.reason,
    e.confidence,
    e.backend,
    e.model,
    e.prompt_version,
    e.taxonomy_version,
    e.latency_ms,
    e.prompt_tokens,
    e.completion_tokens,
    e.attempts,
    e.truncated,
    e.error_kind,
    e.created_at AS extracted_at
FROM transcripts AS t
LEFT JOIN extractions AS e ON e.transcript_id = t.id AND e.is_current
"""


def _create_rollups(dimensions: bool) -> None:
    """The three rollups, with (source, taxonomy_version) in their keys or without, filled
    from the extractions."""
    extra = ["source", "taxonomy_version"] if dimensions else []

    def columns() -> list[sa.Column]:
        if not dimensions:
            return []
        return [
            sa.Column("source", sa.String(length=100), nullable=False),
            sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        ]

    op.create_table(
        "reason_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        *columns(),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", *extra, "reason", name=op.f("pk_reason_day_counts")),
    )
    op.create_table(
        "product_reason_counts",
        sa.Column("product_key", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        *columns(),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "product_key", "product", *extra, "reason", name=op.f("pk_product_reason_counts")
        ),
    )
    op.create_table(
        "product_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_key", sa.String(length=200), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        *columns(),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "product_key", "product", *extra, "reason", name=op.f("pk_product_day_counts")
        ),
    )
    op.create_index(
        "ix_product_day_counts_day_product_key",
        "product_day_counts",
        ["day", "product_key"],
        postgresql_include=[*extra, "reason", "calls"],
    )
    op.create_index(
        "ix_product_day_counts_product_key_day",
        "product_day_counts",
        ["product_key", "day"],
        postgresql_include=["product", *extra, "reason", "calls"],
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    day = "(occurred_at AT TIME ZONE 'UTC')::date" if postgresql else "date(occurred_at)"
    keys = "".join(f", {name}" for name in extra)
    product, reason = "coalesce(product, '')", "coalesce(reason, '')"
    op.execute(
        f"""
        INSERT INTO reason_day_counts (day{keys}, reason, calls)
        SELECT {day}{keys}, {reason}, count(*) FROM extractions WHERE {SUCCEEDED}
        GROUP BY {day}{keys}, {reason}
        """
    )
    op.execute(
        f"""
        INSERT INTO product_reason_counts (product_key, product{keys}, reason, calls)
        SELECT product_key, {product}{keys}, {reason}, count(*)
        FROM extractions WHERE {SUCCEEDED} AND product_key IS NOT NULL
        GROUP BY product_key, {product}{keys}, {reason}
        """
    )
    op.execute(
        f"""
        INSERT INTO product_day_counts (day, product_key, product{keys}, reason, calls)
        SELECT {day}, product_key, {product}{keys}, {reason}, count(*)
        FROM extractions WHERE {SUCCEEDED} AND product_key IS NOT NULL
        GROUP BY {day}, product_key, {product}{keys}, {reason}
        """
    )


def upgrade() -> None:
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taxonomy_version", sa.String(length=64), nullable=True))
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=100), nullable=True))
    op.execute(
        "UPDATE extractions SET source = "
        "(SELECT source FROM transcripts WHERE transcripts.id = extractions.transcript_id)"
    )
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=100), nullable=False)
    op.execute(CALL_EXTRACTIONS_VIEW)
    # The TRUNCATE trigger's function names the rollups at run time: it needs no change.
    for table in ROLLUPS:
        op.drop_table(table)
    _create_rollups(dimensions=True)
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=400), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    for table in ROLLUPS:
        op.drop_table(table)
    _create_rollups(dimensions=False)
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_column("source")
    op.execute(CALL_EXTRACTIONS_VIEW)
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.drop_column("taxonomy_version")
