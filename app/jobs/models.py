"""Which models answer the calls: the live workers grouped by backend, model and taxonomy,
with the eval figures recorded in the adapter's card, where this server can read it (the
console's Models page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings, SettingsError
from app.db import workers as workers_db
from app.jobs.workers import LIVE_INTERVALS
from app.llm import check_backend
from app.llm.calibration import read_card, taxonomies_summary
from app.llm.model_files import adapter_for


@dataclass(frozen=True)
class ModelInUse:
    """One (backend, model, taxonomy) the workers run, or this server is configured with."""

    backend: str
    model: str
    taxonomy_version: str
    workers: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    last_seen: datetime | None = None
    configured: bool = False  # this server's settings name it
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    taxonomies: dict[str, list[str]] = field(default_factory=dict)
    card: str | None = None  # the card's file name, where one was read


def models_in_use(
    session: Session, settings: Settings, taxonomy_version: str, now: datetime | None = None
) -> list[ModelInUse]:
    """The live workers' models, and this server's configured one (which a worker started
    with the same settings runs), each with its adapter card's figures where readable."""
    now = now or datetime.now(UTC)
    interval = timedelta(seconds=LIVE_INTERVALS * settings.broker.heartbeat_interval_s)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for worker in workers_db.seen_since(session, now - interval):
        key = (worker.backend, worker.model, worker.taxonomy_version)
        groups.setdefault(key, []).append(worker)
    configured = _configured(settings, taxonomy_version)
    if configured is not None:
        groups.setdefault(configured, [])
    card = _configured_card(settings)
    models = []
    for (backend, model, taxonomy), workers in sorted(groups.items()):
        # The card describes the adapter this server's settings name: it belongs to a worker
        # model of the same file name (workers on other machines with the same settings).
        own = configured is not None and (backend, model) == configured[:2] and card is not None
        models.append(
            ModelInUse(
                backend=backend,
                model=model,
                taxonomy_version=taxonomy,
                workers=[w.name for w in workers],
                queues=sorted({q for w in workers for q in w.queues.split(",")}),
                last_seen=max((w.last_seen for w in workers), default=None),
                configured=(backend, model, taxonomy) == configured,
                evaluations=list(card.get("evaluations", ())) if own and card else [],
                taxonomies=taxonomies_summary(card) if own and card else {},
                card=str(card.get("adapter")) if own and card else None,
            )
        )
    return models


def _configured(settings: Settings, taxonomy_version: str) -> tuple[str, str, str] | None:
    try:
        info = check_backend(settings)
    except SettingsError:  # a server set up for another machine's files: show the workers only
        return None
    return info.name, info.model, taxonomy_version


def _configured_card(settings: Settings) -> dict[str, Any] | None:
    if settings.extraction.backend != "llamacpp":
        return None
    section = settings.llamacpp
    return read_card(adapter_for(section.model_path, section.lora_path, section.default_adapter))
