"""Register, list, evaluate, promote and roll back LoRA adapters. Functions that take a
session flush; the caller commits. Evaluations run the model: they hold no session while
they do."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import registry as registry_db
from app.db.models import Adapter, AdapterEvaluation, Promotion
from app.errors import ConflictError, InvalidRequestError, NotFoundError
from app.llm.calibration import card_calibration, card_path, read_card, write_card
from app.llm.model_files import DEFAULT_ADAPTER, file_sha256

DEFAULT_NAME = "callx-default"
GGUF_MAGIC = b"GGUF"
SIGNIFICANCE = 0.05


def check_gguf(path: Path) -> None:
    """Refuses what is not a GGUF file (a truncated copy, a checkpoint of another format)."""
    if not path.is_file():
        raise InvalidRequestError(f"no such file: {path}")
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise InvalidRequestError(f"{path} is not a GGUF file (llama.cpp's adapter format)")


def check_card(adapter: Path) -> None:
    """Refuses a card beside the adapter that callx could not read later: not a JSON object,
    a `base_model` that is not one, or a `calibration` without numbers (workers read it)."""
    where = card_path(adapter)
    if not where.is_file():
        return
    try:
        card = json.loads(where.read_text("utf-8"))
    except (UnicodeDecodeError, ValueError):
        card = None
    if not isinstance(card, dict):
        raise InvalidRequestError(
            f"{where.name}: the card is not a JSON object (the .json `callx finetune` writes)",
            loc=("body", "card"),
        )
    if not isinstance(card.get("base_model") or {}, dict):
        raise InvalidRequestError(
            f"{where.name}: base_model is not an object (file, sha256)", loc=("body", "card")
        )
    try:
        card_calibration(card)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InvalidRequestError(
            f"{where.name}: calibration is not what `callx calibrate` writes "
            "(a temperature per taxonomy version)",
            loc=("body", "card"),
        ) from None


def ensure_default(session: Session, settings: Settings, by: str = "callx") -> None:
    """On first use: the shipped default adapter registered and promoted (once)."""
    if registry_db.adapters(session):
        return
    if not DEFAULT_ADAPTER.is_file():
        return
    # Every process opens the registry at start (a worker's main process and its pool's
    # children at the same moment): the one that loses the race to the unique sha256 rolls
    # back to here and reads the winner's rows, instead of failing its caller.
    try:
        with session.begin_nested():
            adapter = _store(session, settings, DEFAULT_ADAPTER, DEFAULT_NAME, by)
            registry_db.add(
                session,
                Promotion(
                    adapter_id=adapter.id,
                    previous_id=None,
                    action="initial",
                    forced=False,
                    note="the adapter that ships with callx",
                    promoted_by=by,
                ),
            )
    except IntegrityError:
        if not registry_db.adapters(session):
            raise


def register(
    session: Session,
    settings: Settings,
    path: Path,
    name: str | None,
    by: str,
    *,
    name_option: str = "--name",
) -> Adapter:
    """Record an adapter and copy it (with its card) into the models directory."""
    ensure_default(session, settings, by)
    check_gguf(path)
    check_card(path)
    name = (name or path.stem).strip()
    if not name or len(name) > 100:
        raise InvalidRequestError("a name of 1 to 100 characters", loc=("body", "name"))
    existing = registry_db.adapter_by_sha256(session, file_sha256(path))
    if existing is not None:
        raise ConflictError(
            f"this file is already registered as {existing.name!r} (id {existing.id})"
        )
    if registry_db.adapter_by_name(session, name) is not None:
        raise ConflictError(f"the name {name!r} is taken: choose another ({name_option})")
    return _store(session, settings, path, name, by)


# A card is a page of JSON (the largest shipped, with its earlier stages' cards, is 60 KB).
MAX_CARD_BYTES = 1 << 20


def register_upload(
    session: Session,
    settings: Settings,
    adapter: BinaryIO,
    card: bytes | None,
    name: str,
    by: str,
) -> Adapter:
    """Register an adapter sent as bytes (`POST /v1/models`; the API's body limit,
    CALLX_API__MAX_BODY_BYTES, bounds it), with its card if given: written to a private folder
    of the models directory, checked, stored as `register` stores a file, and the folder
    removed whatever happens."""
    if card is not None and len(card) > MAX_CARD_BYTES:
        raise InvalidRequestError(
            f"the card is over {MAX_CARD_BYTES >> 10} KiB: is it the adapter's .json card?",
            loc=("body", "card"),
        )
    settings.models_path.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".upload-", dir=settings.models_path))
    try:
        path = folder / f"{_safe(name) or 'adapter'}.gguf"
        with open(path, "wb") as handle:
            shutil.copyfileobj(adapter, handle, 1 << 20)
        if card is not None:
            card_path(path).write_bytes(card)
        try:
            check_gguf(path)
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                "the file is not a GGUF file (llama.cpp's adapter format)", loc=("body", "file")
            ) from exc
        return register(session, settings, path, name, by, name_option="name")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def blend(
    session: Session,
    settings: Settings,
    first_id: int,
    second_id: int,
    weight: float,
    name: str | None,
    by: str,
) -> Adapter:
    """Register the weighted mean of two registered adapters' updates, (1 - weight) of the
    first and `weight` of the second, written exactly as one adapter of their summed rank
    (app/finetune/blend.py; needs the finetune extra's gguf). Its card names both, with their
    cards; it carries no calibration, since neither's temperature fits it."""
    from app.finetune import FinetuneError
    from app.finetune.blend import blend_adapters, blend_card

    if first_id == second_id:
        raise InvalidRequestError("blend two different adapters", loc=("body", "second"))
    if not 0 < weight < 1:
        raise InvalidRequestError(
            f"the weight is the second adapter's share: between 0 and 1 excluded, not {weight:g}",
            loc=("body", "weight"),
        )
    ensure_default(session, settings, by)
    parts = [
        (get_adapter(session, first_id), 1 - weight),
        (get_adapter(session, second_id), weight),
    ]
    bases = {a.base_model_sha256 for a, _ in parts if a.base_model_sha256}
    if len(bases) > 1:
        raise InvalidRequestError(
            f"adapters {first_id} and {second_id} were trained for different base models"
        )
    name = name or f"blend-{first_id}-{second_id}-{weight:g}"
    settings.models_path.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".blend-", dir=settings.models_path))
    try:
        path = folder / f"{_safe(name) or 'blend'}.gguf"
        try:
            rank = blend_adapters([(adapter_file(settings, a), w) for a, w in parts], path)
        except FinetuneError as exc:
            raise InvalidRequestError(str(exc)) from None
        named = [({"id": a.id, "name": a.name, "sha256": a.sha256}, w, a.card) for a, w in parts]
        card = blend_card(path, rank, named, created_by="callx models blend")
        write_card(path, card)
        return register(session, settings, path, name, by)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _store(session: Session, settings: Settings, path: Path, name: str, by: str) -> Adapter:
    sha256 = file_sha256(path)
    directory = settings.models_path
    directory.mkdir(parents=True, exist_ok=True)
    # One folder per file: the adapter keeps its own name (the model's name in extractions,
    # "base.gguf+NAME.gguf", reads as before), and two files never share a path.
    target = directory / sha256[:16] / f"{_safe(name)}.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        _copy_whole(path, target)
    card = read_card(path)
    if card is not None:
        _copy_whole(card_path(path), card_path(target))
    base = (card or {}).get("base_model") or {}
    adapter = Adapter(
        name=name,
        sha256=sha256,
        file_name=str(target.relative_to(directory)),
        size_bytes=path.stat().st_size,
        base_model=base.get("file"),
        base_model_sha256=base.get("sha256"),
        card=card,
        registered_by=by,
    )
    registry_db.add(session, adapter)
    return adapter


def _copy_whole(source: Path, target: Path) -> None:
    """Copy under a name of this process's own, then rename: a worker never sees half a file,
    and two processes storing the same file at once (the default, on first use) never share
    a partial copy."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    shutil.copyfile(source, partial)
    partial.replace(target)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]


def adapter_file(settings: Settings, adapter: Adapter) -> Path:
    """The adapter's file in the models directory; the shipped default's is written again
    where it is missing (a new machine, a models directory not shared)."""
    path = settings.models_path / adapter.file_name
    if not path.is_file() and DEFAULT_ADAPTER.is_file() and adapter.name == DEFAULT_NAME:
        if file_sha256(DEFAULT_ADAPTER) == adapter.sha256:
            path.parent.mkdir(parents=True, exist_ok=True)
            _copy_whole(DEFAULT_ADAPTER, path)
            if card_path(DEFAULT_ADAPTER).is_file():
                card_path(path).write_text(card_path(DEFAULT_ADAPTER).read_text("utf-8"), "utf-8")
    return path


def promoted(
    session: Session, settings: Settings, taxonomy_version: str | None = None
) -> Adapter | None:
    """The adapter workers should run (None: nothing registered and no default shipped); for
    workers of `taxonomy_version`, the one promoted for that list if any, else the registry's."""
    ensure_default(session, settings)
    if taxonomy_version is not None:
        own = registry_db.promotions(session, 1, taxonomy_version)
        if own and own[0].action != "release":
            return registry_db.get_adapter(session, own[0].adapter_id)
    latest = registry_db.promotions(session, 1)
    return None if not latest else registry_db.get_adapter(session, latest[0].adapter_id)


@dataclass(frozen=True)
class AdapterListing:
    adapter: Adapter
    promoted: bool  # the registry's promotion, for every list without its own
    evaluation: AdapterEvaluation | None  # the latest against the promoted adapter
    promoted_for: tuple[str, ...] = ()  # the lists it is promoted for, each its own


def list_adapters(session: Session, settings: Settings) -> list[AdapterListing]:
    current = promoted(session, settings)
    current_id = None if current is None else current.id
    lists = registry_db.promoted_lists(session)
    return [
        AdapterListing(
            adapter,
            adapter.id == current_id,
            _latest_against_current(session, adapter.id, current_id, lists),
            tuple(sorted(v for v, adapter_id in lists.items() if adapter_id == adapter.id)),
        )
        for adapter in registry_db.adapters(session)
    ]


def _latest_against_current(
    session: Session, adapter_id: int, current_id: int | None, lists: dict[str, int]
) -> AdapterEvaluation | None:
    """The latest evaluation against the registry's promoted adapter, else against the adapter
    a list runs, on that list's calls (a candidate for that list)."""
    found = registry_db.latest_evaluation(session, adapter_id, current_id)
    if found is not None:
        return found
    for_lists = [
        registry_db.latest_evaluation(session, adapter_id, own_id, version)
        for version, own_id in lists.items()
    ]
    dated = [e for e in for_lists if e is not None]
    return max(dated, key=lambda e: (e.created_at, e.id)) if dated else None


def lists_with_their_own(session: Session) -> dict[str, int]:
    """{taxonomy version: adapter id} of the lists whose workers run an adapter of their own."""
    return registry_db.promoted_lists(session)


def check_gate_list(for_taxonomy: str | None, dataset_version: str) -> None:
    """A list's gate is measured on that list's calls: refuses a dataset of another list."""
    if for_taxonomy is not None and for_taxonomy != dataset_version:
        raise InvalidRequestError(
            f"--for-taxonomy {for_taxonomy}: the dataset's calls are read with {dataset_version}; "
            "give --taxonomy the list's YAML",
            loc=("body", "for_taxonomy"),
        )


def get_adapter(session: Session, adapter_id: int) -> Adapter:
    adapter = registry_db.get_adapter(session, adapter_id)
    if adapter is None:
        raise NotFoundError(f"no adapter {adapter_id}: see `callx models list`")
    return adapter


@dataclass(frozen=True)
class Comparison:
    """A candidate and the promoted adapter on the same labelled calls."""

    dataset: str
    dataset_sha256: str
    taxonomy_version: str
    calls: int
    reason_accuracy: float
    baseline_reason_accuracy: float | None
    product_rate: float | None
    baseline_product_rate: float | None
    only_candidate_right: int | None
    only_baseline_right: int | None
    p_value: float | None
    details: dict[str, Any]
    guards: tuple[dict[str, Any], ...] = ()  # app.registry.gate's figures on each guard

    @property
    def verdict(self) -> str:
        """`worse` where the candidate's reason accuracy is lower than the promoted one's (by
        any amount: a significantly worse one is lower too); `forgets` where it loses more
        than a guard allows; `passes` otherwise."""
        if self.baseline_reason_accuracy is None:
            return "passes"
        if self.reason_accuracy < self.baseline_reason_accuracy:
            return "worse"
        return "forgets" if any(not guard["held"] for guard in self.guards) else "passes"


def record_evaluation(
    session: Session, candidate: Adapter, baseline: Adapter | None, result: Comparison, by: str
) -> AdapterEvaluation:
    row = AdapterEvaluation(
        adapter_id=candidate.id,
        baseline_id=None if baseline is None else baseline.id,
        dataset=result.dataset,
        dataset_sha256=result.dataset_sha256,
        taxonomy_version=result.taxonomy_version,
        calls=result.calls,
        reason_accuracy=result.reason_accuracy,
        baseline_reason_accuracy=result.baseline_reason_accuracy,
        product_rate=result.product_rate,
        baseline_product_rate=result.baseline_product_rate,
        only_candidate_right=result.only_candidate_right,
        only_baseline_right=result.only_baseline_right,
        p_value=result.p_value,
        verdict=result.verdict,
        details={**result.details, "guards": list(result.guards)},
        evaluated_by=by,
    )
    registry_db.add(session, row)
    return row


def promote(
    session: Session,
    settings: Settings,
    adapter_id: int,
    by: str,
    *,
    force: bool = False,
    note: str | None = None,
    for_taxonomy: str | None = None,
) -> Promotion:
    """Make the adapter the one workers run, if it passed the gate against the promoted one
    (its latest evaluation against it); `force` overrides a refusal and is recorded. With
    `for_taxonomy`, only the workers of that list run it, gated against the adapter they run
    now on that list's calls; the other lists keep theirs."""
    current = promoted(session, settings, for_taxonomy)
    candidate = get_adapter(session, adapter_id)
    if current is not None and candidate.id == current.id:
        if for_taxonomy is None:
            raise ConflictError(f"{candidate.name!r} (id {candidate.id}) is already promoted")
        raise ConflictError(
            f"{for_taxonomy} already runs {candidate.name!r} (id {candidate.id})"
            + (
                ""
                if for_taxonomy in registry_db.promoted_lists(session)
                else ": it is the registry's promoted adapter"
            )
        )
    if for_taxonomy is not None and not registry_db.evaluated_on(
        session, candidate.id, for_taxonomy
    ):
        # Even with force: a list's version mistyped would be a promotion no worker follows.
        seen = registry_db.evaluated_versions(session, candidate.id)
        raise InvalidRequestError(
            f"{candidate.name!r} was never evaluated on calls of {for_taxonomy!r} (it was on: "
            f"{', '.join(seen) or 'none'}): give the `version:` of the list's YAML, and run "
            f"`callx models evaluate {candidate.id} --dataset LABELS.jsonl --taxonomy "
            f"LIST.yaml --for-taxonomy {for_taxonomy}` first",
            loc=("body", "for_taxonomy"),
        )
    evaluation = registry_db.latest_evaluation(
        session, candidate.id, None if current is None else current.id, for_taxonomy
    )
    refusal = _refusal(candidate, current, evaluation, for_taxonomy)
    if refusal and not force:
        raise ConflictError(refusal + "; --force promotes it anyway (recorded)")
    row = Promotion(
        adapter_id=candidate.id,
        previous_id=None if current is None else current.id,
        action="promote",
        taxonomy_version=for_taxonomy,
        evaluation_id=None if evaluation is None else evaluation.id,
        forced=bool(refusal),
        note=note or refusal,
        promoted_by=by,
    )
    registry_db.add(session, row)
    return row


def _refusal(
    candidate: Adapter, current: Adapter | None, evaluation: Any, for_taxonomy: str | None
) -> str | None:
    if current is None:
        return None
    if evaluation is None:
        calls = "" if for_taxonomy is None else f" on calls of {for_taxonomy}"
        option = (
            "" if for_taxonomy is None else f" --taxonomy LIST.yaml --for-taxonomy {for_taxonomy}"
        )
        return (
            f"{candidate.name!r} was never evaluated against the promoted {current.name!r}"
            f"{calls}: run `callx models evaluate {candidate.id} --dataset LABELS.jsonl"
            f"{option}` first"
        )
    lost = "; ".join(
        f"on the guard {g['dataset']} ({g['calls']} calls, {g['taxonomy_version']}) "
        f"{g['reason_accuracy']:.1%} against {g['baseline_reason_accuracy']:.1%}, "
        f"{g['points_lost']:.2f} points lower where {g['max_loss']:g} are allowed"
        for g in evaluation.guards
        if not g["held"]
    )
    if evaluation.verdict == "worse":
        points = 100 * (evaluation.baseline_reason_accuracy - evaluation.reason_accuracy)
        return (
            f"{candidate.name!r} is worse than the promoted {current.name!r} on "
            f"{evaluation.dataset} ({evaluation.calls} calls): reason accuracy "
            f"{evaluation.reason_accuracy:.1%} against {evaluation.baseline_reason_accuracy:.1%} "
            f"({points:.1f} points lower; paired McNemar p={evaluation.p_value:.3g})"
            + (f"; it also loses ground {lost}" if lost else "")
        )
    if evaluation.verdict == "forgets":
        return f"{candidate.name!r} loses ground the promoted {current.name!r} holds: {lost}"
    return None


def rollback(
    session: Session, settings: Settings, by: str, for_taxonomy: str | None = None
) -> Promotion:
    """Promote again the adapter that was promoted before the current one. Rollbacks go back
    along the history (two rollbacks return two steps), never forth. With `for_taxonomy`,
    along that list's own promotions; past its first, the list is released: its workers run
    the registry's promotion again (the row's action is `release`)."""
    ensure_default(session, settings, by)
    stack: list[int] = []
    history = registry_db.promotions(session, None, for_taxonomy)
    for promotion in reversed(history):  # the oldest first
        if promotion.action == "rollback":
            stack = stack[:-1]
        elif promotion.action == "release":
            stack = []
        else:
            stack.append(promotion.adapter_id)
    if for_taxonomy is not None and len(stack) == 1:
        general = promoted(session, settings)
        row = Promotion(
            adapter_id=stack[-1] if general is None else general.id,  # what the list runs now
            previous_id=stack[-1],
            action="release",
            taxonomy_version=for_taxonomy,
            forced=False,
            note="the list runs the registry's promoted adapter again",
            promoted_by=by,
        )
        registry_db.add(session, row)
        return row
    if len(stack) < 2:
        if for_taxonomy is not None:
            own = sorted(registry_db.promoted_lists(session))
            raise ConflictError(
                f"nothing to roll back for {for_taxonomy}: no adapter is promoted for that "
                "list alone (its workers run the registry's promoted adapter); lists with "
                f"their own: {', '.join(own) or 'none'}"
            )
        raise ConflictError("nothing to roll back to: no adapter was promoted before this one")
    row = Promotion(
        adapter_id=stack[-2],
        previous_id=stack[-1],
        action="rollback",
        taxonomy_version=for_taxonomy,
        forced=False,
        promoted_by=by,
    )
    registry_db.add(session, row)
    return row
