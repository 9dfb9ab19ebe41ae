"""the model registry (adapters, their evaluations, promotions) and re-extraction jobs

- adapters: each LoRA adapter callx knows (its sha256, file in CALLX_MODELS_DIR, base model,
  card, who registered it and when). The shipped default is registered on first use.
- adapter_evaluations: a candidate measured against the promoted adapter on labelled calls
  (reason accuracy of both, the paired McNemar p-value, the gate's verdict).
- promotions: every change of the promoted adapter (promote, rollback, forced or not, by
  whom): the latest is the one workers load.
- extractions.adapter_sha256: the adapter that answered.
- reextractions, reextraction_items: jobs that extract stored calls again, and their calls.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 15:00:00.000000+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
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
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("base_model", sa.String(length=200), nullable=True),
        sa.Column("base_model_sha256", sa.String(length=64), nullable=True),
        sa.Column("card", sa.JSON(), nullable=True),
        sa.Column("registered_by", sa.String(length=100), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("name", name=op.f("uq_adapters_name")),
        sa.UniqueConstraint("sha256", name=op.f("uq_adapters_sha256")),
    )
    op.create_table(
        "adapter_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("baseline_id", sa.Integer(), nullable=True),
        sa.Column("dataset", sa.String(length=500), nullable=False),
        sa.Column("dataset_sha256", sa.String(length=64), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("reason_accuracy", sa.Float(), nullable=False),
        sa.Column("baseline_reason_accuracy", sa.Float(), nullable=True),
        sa.Column("product_rate", sa.Float(), nullable=True),
        sa.Column("baseline_product_rate", sa.Float(), nullable=True),
        sa.Column("only_candidate_right", sa.Integer(), nullable=True),
        sa.Column("only_baseline_right", sa.Integer(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("evaluated_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_adapter_evaluations_adapter_id_adapters")
        ),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["adapters.id"],
            name=op.f("fk_adapter_evaluations_baseline_id_adapters"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_evaluations")),
    )
    op.create_index(
        "ix_adapter_evaluations_adapter_id", "adapter_evaluations", ["adapter_id", "created_at"]
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("promoted_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_promotions_adapter_id_adapters")
        ),
        sa.ForeignKeyConstraint(
            ["previous_id"], ["adapters.id"], name=op.f("fk_promotions_previous_id_adapters")
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["adapter_evaluations.id"],
            name=op.f("fk_promotions_evaluation_id_adapter_evaluations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
    )
    op.create_index("ix_promotions_created_at", "promotions", ["created_at", "id"])
    op.add_column("extractions", sa.Column("adapter_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "reextractions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reextractions")),
        sa.UniqueConstraint("key", name=op.f("uq_reextractions_key")),
    )
    op.create_table(
        "reextraction_items",
        sa.Column("reextraction_id", sa.Uuid(), nullable=False),
        sa.Column("transcript_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reextraction_id"],
            ["reextractions.id"],
            name=op.f("fk_reextraction_items_reextraction_id_reextractions"),
        ),
        sa.ForeignKeyConstraint(
            ["transcript_id"],
            ["transcripts.id"],
            name=op.f("fk_reextraction_items_transcript_id_transcripts"),
        ),
        sa.PrimaryKeyConstraint(
            "reextraction_id", "transcript_id", name=op.f("pk_reextraction_items")
        ),
    )


def downgrade() -> None:
    op.drop_table("reextraction_items")
    op.drop_table("reextractions")
    # SQLite copies the table to drop a column, which it cannot do while a view reads it.
    op.execute("DROP VIEW call_extractions")
    with op.batch_alter_table("extractions") as batch_op:
        batch_op.drop_column("adapter_sha256")
    op.execute(_view())
    op.drop_index("ix_promotions_created_at", table_name="promotions")
    op.drop_table("promotions")
    op.drop_index("ix_adapter_evaluations_adapter_id", table_name="adapter_evaluations")
    op.drop_table("adapter_evaluations")
    op.drop_table("adapters")
