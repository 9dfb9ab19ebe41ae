"""One round of the improvement loop, after the labels are in files: a candidate fine-tuned
from the promoted adapter (its rank and alpha) on the labels plus a replay of earlier data,
registered, measured against the promoted adapter on the gate's calls (and on guards, calls
it must not lose ground on), and promoted if the gate passes. `callx improve` runs it on the
export of the review queue's labels; the flywheel benchmark (`bench/flywheel.py`) on simulated
reviewers' labels. `run_round` imports torch: call it after `app.finetune.require_extra()`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.session import session_scope
from app.finetune import FinetuneError
from app.registry import service as registry
from app.registry.gate import Guard, compare_adapters
from app.registry.service import Comparison
from schemas.taxonomy import Taxonomy

# The labels are few next to the replay: each is given this many times per epoch. 3 is the
# flywheel benchmark's first recipe (docs/flywheel.md: v2, once with more replay, is cheaper;
# neither keeps callx's own calls within 2 points).
LABEL_PASSES = 3


@dataclass(frozen=True)
class RoundPlan:
    """What a round trains on and how long it may take."""

    labels: Path  # the labelled calls to train on (eval/finetune's record format)
    gate: Path  # labelled calls it is measured on against the promoted adapter, not trained on
    output: Path  # the candidate's .gguf (its card beside it)
    replay: tuple[str, ...] = ()  # FILE[@TAXONOMY] of earlier training data
    label_passes: int = LABEL_PASSES
    epochs: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None
    promote: bool = True
    by: str = "cli:improve"
    lr: float | None = None  # None: `callx finetune`'s default
    guards: tuple[Guard, ...] = ()  # labelled calls it must not lose ground on
    # Promote for this list only (its taxonomy version): trained from, gated against and
    # replacing the adapter its workers run; workers of other lists keep theirs.
    for_taxonomy: str | None = None


@dataclass(frozen=True)
class RoundResult:
    baseline_name: str
    candidate_id: int
    candidate_path: Path
    comparison: Comparison
    promoted: bool
    train_seconds: float
    train_cpu_seconds: float  # every thread of this process, torch's included
    gate_seconds: float

    @property
    def verdict(self) -> str:
        return self.comparison.verdict


def run_round(
    settings: Settings,
    sessions: sessionmaker[Session],
    taxonomy: Taxonomy,
    plan: RoundPlan,
    say: Callable[[str], None],
    console: Console | None = None,
) -> RoundResult:
    """Fine-tune, register, gate and (if it passes and `plan.promote`) promote. Raises
    FinetuneError for training inputs that cannot work (nothing is registered then)."""
    from app.finetune.command import run_command
    from app.finetune.job import Hyperparameters

    with session_scope(sessions) as session:
        current = registry.promoted(session, settings, plan.for_taxonomy)
        if current is None:
            raise FinetuneError("no adapter is promoted and none ships with callx")
        current_path = registry.adapter_file(settings, current)
        current_id, current_name, card = current.id, current.name, current.card or {}
    hyper_card: dict[str, Any] = card.get("hyperparameters") or {}
    hyper = Hyperparameters(
        rank=int(hyper_card.get("rank", 16)), alpha=float(hyper_card.get("alpha", 32.0))
    )
    if plan.lr is not None:
        hyper = replace(hyper, lr=plan.lr)
    wall, cpu = time.perf_counter(), time.process_time()
    status = run_command(
        settings,
        console or Console(stderr=True),
        train=[str(plan.labels)] * plan.label_passes + list(plan.replay),
        output=plan.output,
        epochs=None if plan.max_steps else plan.epochs,
        max_steps=plan.max_steps,
        max_minutes=plan.max_minutes,
        hyper=hyper,
        init_adapter=current_path,
    )
    if status != 0:
        raise FinetuneError(f"fine-tuning stopped (exit {status}); see above")
    train_seconds, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    say(f"fine-tuned {plan.output.name} from {current_name} in {train_seconds / 60:.1f} min")

    with session_scope(sessions) as session:
        candidate = registry.register(session, settings, plan.output, plan.output.stem, plan.by)
        candidate_id, candidate_path = candidate.id, registry.adapter_file(settings, candidate)
    wall = time.perf_counter()
    result = compare_adapters(
        settings, candidate_path, current_path, plan.gate, taxonomy, guards=plan.guards
    )
    gate_seconds = time.perf_counter() - wall
    with session_scope(sessions) as session:
        registry.record_evaluation(
            session,
            registry.get_adapter(session, candidate_id),
            registry.get_adapter(session, current_id),  # the one measured, promoted or not since
            result,
            plan.by,
        )
    promoted = plan.promote and result.verdict == "passes"
    if promoted:
        with session_scope(sessions) as session:
            registry.promote(
                session, settings, candidate_id, plan.by, for_taxonomy=plan.for_taxonomy
            )
    return RoundResult(
        baseline_name=current_name,
        candidate_id=candidate_id,
        candidate_path=candidate_path,
        comparison=result,
        promoted=promoted,
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu,
        gate_seconds=gate_seconds,
    )
