"""The model registry's rows: adapters, their evaluations, promotions. None of these functions
commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Adapter, AdapterEvaluation, Promotion


def add(session: Session, row: Adapter | AdapterEvaluation | Promotion) -> None:
    session.add(row)
    session.flush()


def adapters(session: Session) -> list[Adapter]:
    return list(session.scalars(select(Adapter).order_by(Adapter.id)))


def get_adapter(session: Session, adapter_id: int) -> Adapter | None:
    return session.get(Adapter, adapter_id)


def adapter_by_sha256(session: Session, sha256: str) -> Adapter | None:
    return session.scalars(select(Adapter).where(Adapter.sha256 == sha256)).one_or_none()


def adapter_by_name(session: Session, name: str) -> Adapter | None:
    return session.scalars(select(Adapter).where(Adapter.name == name)).one_or_none()


def promotions(
    session: Session, limit: int | None = 2, taxonomy_version: str | None = None
) -> list[Promotion]:
    """The latest promotions of one scope (all with limit None), the latest first: the
    registry's (taxonomy_version None, every list) or one list's."""
    statement = (
        select(Promotion)
        .where(
            Promotion.taxonomy_version.is_(None)
            if taxonomy_version is None
            else Promotion.taxonomy_version == taxonomy_version
        )
        .order_by(Promotion.created_at.desc(), Promotion.id.desc())
    )
    return list(session.scalars(statement if limit is None else statement.limit(limit)))


def promoted_lists(session: Session) -> dict[str, int]:
    """{taxonomy version: adapter id} of every list with a promotion of its own in force."""
    statement = (
        select(Promotion)
        .where(Promotion.taxonomy_version.is_not(None))
        .order_by(Promotion.created_at, Promotion.id)
    )
    latest: dict[str, Promotion] = {}
    for row in session.scalars(statement):
        latest[str(row.taxonomy_version)] = row
    return {v: row.adapter_id for v, row in latest.items() if row.action != "release"}


def latest_evaluation(
    session: Session,
    adapter_id: int,
    baseline_id: int | None,
    taxonomy_version: str | None = None,
) -> AdapterEvaluation | None:
    """The adapter's latest evaluation against `baseline_id` (the promoted adapter), on calls
    of `taxonomy_version` where given (a list's promotion is gated on that list's calls)."""
    where = [
        AdapterEvaluation.adapter_id == adapter_id,
        AdapterEvaluation.baseline_id == baseline_id,
    ]
    if taxonomy_version is not None:
        where.append(AdapterEvaluation.taxonomy_version == taxonomy_version)
    return session.scalars(
        select(AdapterEvaluation)
        .where(*where)
        .order_by(AdapterEvaluation.created_at.desc(), AdapterEvaluation.id.desc())
        .limit(1)
    ).one_or_none()


def evaluated_on(session: Session, adapter_id: int, taxonomy_version: str) -> bool:
    """Whether the adapter was ever evaluated on calls of the taxonomy version."""
    return (
        session.scalars(
            select(AdapterEvaluation.id)
            .where(
                AdapterEvaluation.adapter_id == adapter_id,
                AdapterEvaluation.taxonomy_version == taxonomy_version,
            )
            .limit(1)
        ).first()
        is not None
    )


def evaluated_versions(session: Session, adapter_id: int) -> list[str]:
    """The taxonomy versions the adapter was evaluated on, in order."""
    return sorted(
        set(
            session.scalars(
                select(AdapterEvaluation.taxonomy_version).where(
                    AdapterEvaluation.adapter_id == adapter_id
                )
            )
        )
    )


def evaluations(session: Session) -> list[AdapterEvaluation]:
    return list(
        session.scalars(
            select(AdapterEvaluation).order_by(
                AdapterEvaluation.created_at.desc(), AdapterEvaluation.id.desc()
            )
        )
    )
