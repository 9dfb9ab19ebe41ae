"""extractions.confidence_calibrated: whether the confidence is a calibrated probability

True where the model's card holds a calibration fitted on the extraction's taxonomy (the
confidence is then the probability of being right, which the review queue routes by); false
for the model's raw score: a taxonomy the model was never measured on, a backend without a
calibration, and every extraction stored before this revision. Shown in call_extractions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As revision 0006 made it.
VIEW_BEFORE = """
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
VIEW = VIEW_BEFORE.replace(
    "    e.confidence,\n", "    e.confidence,\n    e.confidence_calibrated,\n"
)


def upgrade() -> None:
    # SQLite copies the table to alter it, which it cannot do while a view reads it.
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "confidence_calibrated", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_column("confidence_calibrated")
    op.execute(VIEW_BEFORE)
