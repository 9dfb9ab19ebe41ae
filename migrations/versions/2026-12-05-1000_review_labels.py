"""the review loop: human labels, the answer that counts, the review decision, a review scope

- labels: a person's reason and product for a call, with its history (one row per version,
  the latest current) and the model's answer it replaces.
- extractions.answer_*: the answer that counts (the current label's, else the model's);
  analytics, filters and the rollups read it. Filled from the model's answers here.
- extractions.review_*, in_audit, audit_rate: the review decision, made when the extraction is
  stored. Extractions stored before this revision have none (review_threshold NULL) and are
  not in the queue.
- api_keys.scope gains `review`.
- extractions.product_confidence: the model's own probability of its product answer.
- call_extractions shows the model's answer, the label and the answer.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00.000000+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous_view() -> str:
    """call_extractions as revision 0007 made it (read from that revision, not copied)."""
    path = Path(__file__).with_name("2026-12-05-0800_confidence_calibrated.py")
    spec = importlib.util.spec_from_file_location("callx_migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.VIEW)


VIEW_BEFORE = _previous_view()
# `reason` and `product` stay the model's answer, as before; answer_* is what counts.
VIEW = VIEW_BEFORE.replace(
    "    e.error_kind,\n",
    """    e.error_kind,
    e.product_confidence,
    e.answer_reason,
    e.answer_product,
    e.answer_product_key,
    e.answer_by,
    l.reason AS label_reason,
    l.product AS label_product,
    l.note AS label_note,
    l.labelled_by,
    l.created_at AS labelled_at,
    l.version AS label_version,
    e.review_cause,
    e.in_audit,
    e.review_threshold,
    e.audit_rate,
    e.review_priority IS NOT NULL AS awaiting_review,
""",
).replace(
    "LEFT JOIN extractions AS e ON e.transcript_id = t.id AND e.is_current\n",
    "LEFT JOIN extractions AS e ON e.transcript_id = t.id AND e.is_current\n"
    "LEFT JOIN labels AS l ON l.transcript_id = t.id AND l.is_current\n",
)
assert VIEW != VIEW_BEFORE and "labels AS l" in VIEW

CURRENT = "is_current"
OLD_INDEXES = {
    "ix_extractions_current_reason_occurred_at": (["reason", "occurred_at"], CURRENT, None),
    "ix_extractions_current_product_key": (["product_key", "reason"], CURRENT, None),
    "ix_extractions_succeeded_occurred_at": (
        ["occurred_at"],
        "is_current AND status = 'succeeded'",
        ["reason", "product_key", "product"],
    ),
}
NEW_INDEXES = {
    "ix_extractions_current_answer_reason_occurred_at": (
        ["answer_reason", "occurred_at"],
        CURRENT,
        None,
    ),
    "ix_extractions_current_answer_product_key": (
        ["answer_product_key", "answer_reason"],
        CURRENT,
        None,
    ),
    "ix_extractions_answered_occurred_at": (
        ["occurred_at"],
        "is_current AND answer_reason IS NOT NULL",
        ["answer_reason", "answer_product_key", "answer_product"],
    ),
    "ix_extractions_review_queue": (
        ["review_priority", "id"],
        "is_current AND review_priority IS NOT NULL",
        None,
    ),
}


def _create_indexes(indexes: dict[str, tuple[list[str], str, list[str] | None]]) -> None:
    for name, (columns, where, include) in indexes.items():
        op.create_index(
            name,
            "extractions",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
            **({"postgresql_include": include} if include else {}),
        )


def _scope_check(scopes: str) -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_keys_scope"), type_="check")
        batch_op.create_check_constraint(op.f("ck_api_keys_scope"), f"scope IN ({scopes})")


def upgrade() -> None:
    # SQLite copies a table to alter it, which it cannot do while a view reads it.
    op.execute("DROP VIEW call_extractions")
    for name in OLD_INDEXES:
        op.drop_index(name, table_name="extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        for name, kind in (
            ("answer_reason", sa.String(length=40)),
            ("answer_product", sa.String(length=200)),
            ("answer_product_key", sa.String(length=200)),
            ("answer_by", sa.String(length=8)),
            ("review_cause", sa.String(length=16)),
            ("review_threshold", sa.Float()),
            ("audit_rate", sa.Float()),
            ("review_priority", sa.Float()),
            ("product_confidence", sa.Float()),
        ):
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.add_column(
            sa.Column("in_audit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE extractions SET answer_reason = reason, answer_product = product, "
        "answer_product_key = product_key, answer_by = 'model' WHERE status = 'succeeded'"
    )
    _create_indexes(NEW_INDEXES)
    op.create_table(
        "labels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transcript_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=True),
        sa.Column("product_key", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("labelled_by", sa.String(length=100), nullable=False),
        sa.Column("key_id", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extraction_id", sa.Uuid(), nullable=True),
        sa.Column("machine_status", sa.String(length=16), nullable=True),
        sa.Column("machine_reason", sa.String(length=40), nullable=True),
        sa.Column("machine_product", sa.String(length=200), nullable=True),
        sa.Column("machine_confidence", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["extraction_id"],
            ["extractions.id"],
            name=op.f("fk_labels_extraction_id_extractions"),
        ),
        sa.ForeignKeyConstraint(
            ["transcript_id"],
            ["transcripts.id"],
            name=op.f("fk_labels_transcript_id_transcripts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint(
            "transcript_id", "version", name=op.f("uq_labels_transcript_id_version")
        ),
    )
    op.create_index("ix_labels_created_at", "labels", ["created_at"])
    op.create_index(
        "uq_labels_current_transcript",
        "labels",
        ["transcript_id"],
        unique=True,
        postgresql_where=sa.text("is_current"),
        sqlite_where=sa.text("is_current"),
    )
    _scope_check("'ingest', 'read', 'review', 'admin'")
    op.execute(VIEW)


def _count_model_answers() -> None:
    """The rollups as revision 0007 counts them: the model's succeeded answers (labels gone)."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    day = "(occurred_at AT TIME ZONE 'UTC')::date" if postgresql else "date(occurred_at)"
    counted = "is_current AND status = 'succeeded'"
    keys = "source, taxonomy_version, coalesce(reason, '')"
    for table in ("reason_day_counts", "product_reason_counts", "product_day_counts"):
        op.execute(f"DELETE FROM {table}")
    op.execute(
        f"INSERT INTO reason_day_counts (day, source, taxonomy_version, reason, calls) "
        f"SELECT {day}, {keys}, count(*) FROM extractions WHERE {counted} "
        f"GROUP BY {day}, {keys}"
    )
    named = f"{counted} AND product_key IS NOT NULL"
    op.execute(
        "INSERT INTO product_reason_counts "
        "(product_key, product, source, taxonomy_version, reason, calls) "
        f"SELECT product_key, coalesce(product, ''), {keys}, count(*) FROM extractions "
        f"WHERE {named} GROUP BY product_key, coalesce(product, ''), {keys}"
    )
    op.execute(
        "INSERT INTO product_day_counts "
        "(day, product_key, product, source, taxonomy_version, reason, calls) "
        f"SELECT {day}, product_key, coalesce(product, ''), {keys}, count(*) FROM extractions "
        f"WHERE {named} GROUP BY {day}, product_key, coalesce(product, ''), {keys}"
    )


def downgrade() -> None:
    # People's work is not thrown away by a schema change: export it, then delete it.
    labels = op.get_bind().execute(sa.text("SELECT count(*) FROM labels")).scalar_one()
    if labels:
        raise RuntimeError(
            f"the labels table holds {labels} human labels, which revision 0007 has no place "
            "for: export them (callx labels export --output DIR), delete them "
            "(DELETE FROM labels), then downgrade"
        )
    op.execute("DROP VIEW call_extractions")
    op.execute("DELETE FROM api_keys WHERE scope = 'review'")
    _scope_check("'ingest', 'read', 'admin'")
    op.drop_table("labels")
    for name in NEW_INDEXES:
        op.drop_index(name, table_name="extractions")
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        for name in (
            "answer_reason",
            "answer_product",
            "answer_product_key",
            "answer_by",
            "review_cause",
            "review_threshold",
            "audit_rate",
            "review_priority",
            "product_confidence",
            "in_audit",
        ):
            batch_op.drop_column(name)
    _create_indexes(OLD_INDEXES)
    _count_model_answers()
    op.execute(VIEW_BEFORE)
