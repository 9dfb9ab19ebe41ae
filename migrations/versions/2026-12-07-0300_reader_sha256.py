"""extractions.reader_sha256: the reader that read the list's definitions

- extractions.reader_sha256: the sha256 of the reader (`CALLX_LLAMACPP__READER_PATH`, a second
  adapter trained to read a list's definitions) that chose the reason of a call on a list the
  answering adapter was not trained on; NULL where no reader did.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 03:00:00.000000+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _view() -> str:
    """call_extractions as revision 0008 made it (read from that revision, not copied)."""
    path = Path(__file__).with_name("2026-12-05-1000_review_labels.py")
    spec = importlib.util.spec_from_file_location("callx_migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.VIEW)


def upgrade() -> None:
    op.add_column("extractions", sa.Column("reader_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Provenance only: nothing else reads it, and the adapter that answered stays recorded.
    # SQLite copies the table to drop a column, which it cannot do while a view reads it.
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions") as batch_op:
        batch_op.drop_column("reader_sha256")
    op.execute(_view())
