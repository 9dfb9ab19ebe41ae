"""extractions.confidence_calibrated: whether the confidence is a calibrated probability

True where the model's card holds a calibration fitted on the extraction's taxonomy (the
confidence is then the probability of being right, which the review queue routes by); false
for the model's raw score: a taxonomy the model was never measured on, a backend without a
calibration, and every extraction stored before this revision. Shown in call_extractions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:00:00.000000+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous_view() -> str:
    """call_extractions as revision 0006 made it (read from that revision, not copied)."""
    path = Path(__file__).with_name("2026-12-05-0430_sources_taxonomies_workers.py")
    spec = importlib.util.spec_from_file_location("callx_migration_0006", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.CALL_EXTRACTIONS_VIEW)


VIEW_BEFORE = _previous_view()
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
