"""promotions for one taxonomy: an adapter promoted for a customer's own list only

- promotions.taxonomy_version: None for the registry's promotion (every list without its own,
  as before); a taxonomy version for a promotion that only the workers of that list follow.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 07:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("promotions", sa.Column("taxonomy_version", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_promotions_taxonomy_version", "promotions", ["taxonomy_version", "created_at"]
    )


def downgrade() -> None:
    # Without the column a list's promotion would read as the registry's: every list would
    # run an adapter promoted for one. Refused, saying how to go on.
    rows = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM promotions WHERE taxonomy_version IS NOT NULL"))
        .scalar_one()
    )
    if rows:
        raise RuntimeError(
            f"{rows} promotion(s) are for one list only, which revision 0010 cannot tell from "
            "the registry's: hand each list back first (`callx models rollback --for-taxonomy "
            "VERSION` until it is released), then delete those rows "
            "(DELETE FROM promotions WHERE taxonomy_version IS NOT NULL) and downgrade again"
        )
    op.drop_index("ix_promotions_taxonomy_version", table_name="promotions")
    with op.batch_alter_table("promotions") as batch_op:
        batch_op.drop_column("taxonomy_version")
