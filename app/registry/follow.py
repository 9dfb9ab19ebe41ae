"""Workers follow the registry: the promoted adapter at start, and a newly promoted one from
the next call on, without a restart. A worker runs the adapter promoted for its taxonomy (its
list) where one is, else the registry's promoted adapter. A call in progress finishes on the
adapter it started with. An adapter that cannot be loaded is refused: the worker keeps the one
it has, and says so in its log and in callx_adapter_load_failures_total."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import Settings
from app.db.session import session_scope
from app.extraction.extractor import Extractor, check_extraction_settings
from app.llm.calibration import known_trained_taxonomies
from app.llm.llamacpp import reason_scoring
from app.llm.model_files import file_sha256, reader_for
from app.registry.service import adapter_file, check_gguf, promoted
from schemas.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


def follows_registry(settings: Settings) -> bool:
    """Whether this worker runs the registry's promoted adapter (CALLX_MODELS__FOLLOW)."""
    if settings.extraction.backend != "llamacpp":
        return False
    if settings.models.follow == "auto":
        return settings.llamacpp.lora_path is None and settings.llamacpp.model_path is None
    return bool(settings.models.follow)


def workers_list(settings: Settings) -> str:
    """The taxonomy version the workers of these settings extract with, read from its file:
    the list whose promoted adapter they run, where it has one of its own. Callers that hold
    the loaded taxonomy pass its version instead."""
    return load_taxonomy(settings.extraction.taxonomy_path).version


def workers_model(session: Session, settings: Settings, taxonomy_version: str) -> str | None:
    """What the workers of these settings and list run, as a re-extraction records it: the
    sha256 of the adapter promoted for them where they follow the registry, and where they read
    this list's definitions with a reader, the reader's too (`ADAPTER+reader:READER`: another
    reader is another job); else None (the configured files)."""
    if not follows_registry(settings):
        return None
    current = promoted(session, settings, taxonomy_version)
    if current is None:
        return None
    reader = list_reader(settings, current.card, taxonomy_version)
    return current.sha256 if reader is None else f"{current.sha256}+reader:{reader}"


def list_reader(
    settings: Settings, card: dict[str, Any] | None, taxonomy_version: str
) -> str | None:
    """The sha256 of the reader that workers of these settings, running the adapter of this
    card, read this list's definitions with; None where they do not read them with one."""
    section = settings.llamacpp
    reader = reader_for(section.model_path, section.reader_path, section.default_reader)
    if reader is None or not reader.is_file():
        return None
    _, reads = reason_scoring(
        section.prior_correction,
        section.read_definitions,
        known_trained_taxonomies(card),
        taxonomy_version,
    )
    return file_sha256(reader) if reads else None


def followed_model(session: Session, settings: Settings, taxonomy_version: str) -> str | None:
    """The model a worker of `taxonomy_version` that follows the registry runs, named as its
    backend names it (its processes switch to the promoted adapter between tasks); None:
    nothing promoted."""
    current = promoted(session, settings, taxonomy_version)
    if current is None:
        return None
    backend, _ = check_extraction_settings(with_adapter(settings, adapter_file(settings, current)))
    return backend.model


def with_adapter(settings: Settings, adapter: Path) -> Settings:
    return settings.model_copy(
        update={"llamacpp": settings.llamacpp.model_copy(update={"lora_path": adapter})}
    )


def promoted_file(
    sessions: sessionmaker[Session], settings: Settings, taxonomy_version: str | None = None
) -> tuple[str, Path] | None:
    """(sha256, file) of the adapter promoted for `taxonomy_version` (None: the workers' list
    of these settings), registering the shipped default on first use."""
    version = taxonomy_version or workers_list(settings)
    with session_scope(sessions) as session:
        adapter = promoted(session, settings, version)
        return None if adapter is None else (adapter.sha256, adapter_file(settings, adapter))


class AdapterFollower:
    """Looks for a new promotion at most every `interval_s`, between calls."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        current_sha256: str | None,
        build: Callable[[Settings], Extractor] = Extractor.from_settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.current_sha256 = current_sha256
        self.build = build
        self.clock = clock
        self.refused: str | None = None  # a promoted file that failed to load: not retried
        self.taxonomy_version = workers_list(settings)  # read once: the file is the worker's
        self._next_check = clock() + settings.models.check_interval_s
        self._lock = threading.Lock()

    def next_extractor(self, current: Extractor) -> Extractor:
        """The extractor for the next call: `current`, or one with the newly promoted
        adapter (loaded here, once, by the first call that sees the promotion)."""
        if self.clock() < self._next_check:
            return current
        with self._lock:
            if self.clock() < self._next_check:
                return current
            self._next_check = self.clock() + self.settings.models.check_interval_s
            try:
                found = promoted_file(self.sessions, self.settings, self.taxonomy_version)
            except Exception as exc:  # database down: keep going with what we have
                log.warning("could not read the promoted adapter", extra={"error": str(exc)})
                return current
            if found is None or found[0] in (self.current_sha256, self.refused):
                return current
            sha256, path = found
            try:
                check_gguf(path)
                if file_sha256(path) != sha256:
                    raise ValueError(f"{path} is not the registered file (its sha256 differs)")
                extractor = self.build(with_adapter(self.settings, path))
            except Exception as exc:
                self.refused = sha256
                metrics.ADAPTER_LOAD_FAILURES.inc()
                log.error(
                    "cannot load the promoted adapter %s: keeping %s",
                    path.name,
                    current.backend.model,
                    extra={"adapter": path.name, "error": str(exc)},
                )
                return current
            self.current_sha256 = sha256
            metrics.ADAPTER_SWITCHES.inc()
            log.info(
                "switched to the promoted adapter %s",
                path.name,
                extra={"model": extractor.backend.model, "adapter_sha256": sha256},
            )
            return extractor
