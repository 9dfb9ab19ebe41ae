"""`callx improve`: the loop in one command. People's labels exported, a candidate fine-tuned
from the promoted adapter on them (with a replay of earlier data), measured against the
promoted adapter, promoted if the gate passes, and the unsure calls re-extracted with it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.app import cli, err, get_settings, open_database
from app.cli.errors import CliError
from app.db.session import session_scope


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


@cli.command("improve")
def improve(
    output: Annotated[
        Path, typer.Option(help="A folder for this round: the export, the candidate, its card.")
    ],
    replay: Annotated[
        list[str] | None,
        typer.Option(
            help="FILE[@TAXONOMY] of earlier training data mixed in, so that the model keeps "
            "what it knew (repeatable), e.g. data/calls/train.jsonl."
        ),
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(help="The gate's labelled calls (default: the export's test split)."),
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Fine-tuning time at most (it stops cleanly).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Fine-tuning steps at most.")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the labels.")] = 1.0,
    promote: Annotated[
        bool, typer.Option(help="Promote the candidate when the gate passes.")
    ] = True,
    reextract_below: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="After a promotion, re-extract the calls less sure than this."
        ),
    ] = None,
) -> None:
    """Export the labels, fine-tune from the promoted adapter, evaluate against it, promote if
    it is not worse, optionally re-extract the unsure calls. Exit 0: promoted (or measured,
    with --no-promote); 1: the gate kept the promoted adapter; 2: an error."""
    from rich.console import Console

    from app.finetune import require_extra
    from app.jobs import reextract
    from app.jobs.queue import TaskQueue, build_celery
    from app.registry import service as registry
    from app.registry.follow import workers_model
    from app.registry.gate import compare_adapters
    from app.review.export import ExportError, export_labels
    from schemas.taxonomy import load_taxonomy

    require_extra()
    from app.finetune.command import run_command
    from app.finetune.job import Hyperparameters

    settings = get_settings()
    taxonomy = load_taxonomy(settings.extraction.taxonomy_path)
    engine, sessions = open_database("adapters")
    started = datetime.now(UTC)

    # 1. The labels of the configured taxonomy, split as `callx labels export` splits them.
    with session_scope(sessions) as session:
        try:
            summary = export_labels(session, output / "labels", taxonomy_version=taxonomy.version)
        except ExportError as exc:
            raise CliError(str(exc)) from None
        current = registry.promoted(session, settings)
        if current is None:
            raise CliError("no adapter is promoted and none ships with callx: nothing to improve")
        current_path = registry.adapter_file(settings, current)
        current_name, card = current.name, current.card or {}
    train_file = output / "labels" / "train.jsonl"
    if summary.counts.get("train", 0) == 0:
        raise CliError(f"no labelled call of {taxonomy.version} to train on (see the review queue)")
    gate_file = test or output / "labels" / "test.jsonl"
    if not gate_file.is_file() or not gate_file.read_text("utf-8").strip():
        raise CliError(f"{gate_file}: no labelled calls for the gate; label more, or pass --test")
    _say(
        f"1/4 exported {summary.counts['train']} training and "
        f"{summary.counts.get('test', 0)} test labels to {output / 'labels'}"
    )

    # 2. A candidate trained from the promoted adapter (its rank and alpha), on the labels
    #    and the replay.
    hyper_card: dict[str, Any] = card.get("hyperparameters") or {}
    hyper = Hyperparameters(
        rank=int(hyper_card.get("rank", 16)), alpha=float(hyper_card.get("alpha", 32.0))
    )
    candidate_file = output / f"candidate-{started.strftime('%Y%m%dT%H%M%S')}.gguf"
    status = run_command(
        settings,
        Console(stderr=True),
        train=[str(train_file), *(replay or [])],
        output=candidate_file,
        epochs=None if max_steps else epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        hyper=hyper,
        init_adapter=current_path,
    )
    if status != 0:
        raise typer.Exit(status)
    _say(f"2/4 fine-tuned {candidate_file.name} from {current_name}")

    # 3. Registered, and measured against the promoted adapter on the gate's calls.
    with session_scope(sessions) as session:
        candidate = registry.register(
            session, settings, candidate_file, candidate_file.stem, "cli:improve"
        )
        candidate_id, candidate_path = candidate.id, registry.adapter_file(settings, candidate)
    result = compare_adapters(settings, candidate_path, current_path, gate_file, taxonomy)
    with session_scope(sessions) as session:
        row = registry.record_evaluation(
            session,
            registry.get_adapter(session, candidate_id),
            registry.promoted(session, settings),
            result,
            "cli:improve",
        )
        verdict = row.verdict
    _say(
        f"3/4 candidate {result.reason_accuracy:.1%} vs promoted "
        f"{result.baseline_reason_accuracy:.1%} on {result.calls} calls "
        f"(McNemar p={result.p_value}): {verdict}"
    )
    if not promote or verdict != "passes":
        _say("4/4 kept the promoted adapter" + ("" if promote else " (--no-promote)"))
        engine.dispose()
        raise typer.Exit(0 if not promote else 1)

    # 4. Promoted (workers switch between calls), and the unsure calls re-extracted.
    with session_scope(sessions) as session:
        registry.promote(session, settings, candidate_id, "cli:improve")
    _say(f"4/4 promoted adapter {candidate_id}: workers switch to it between calls")
    if reextract_below is not None:
        queue = TaskQueue(build_celery(settings, "callx-cli"), settings)
        with session_scope(sessions) as session:
            state = reextract.create_reextraction(
                session,
                queue,
                reextract.ReextractionFilter(max_confidence=reextract_below),
                taxonomy_version=taxonomy.version,
                model=workers_model(session, settings),
                by="cli:improve",
            )
            _say(f"re-extraction {state.job.id}: {state.job.calls} calls below {reextract_below}")
    engine.dispose()
    typer.echo(str(candidate_id))
