"""`callx improve`: the loop in one command. People's labels exported, a candidate fine-tuned
from the promoted adapter on them (with a replay of earlier data), measured against the
promoted adapter, promoted if the gate passes, and the unsure calls re-extracted with it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli, err, get_settings, open_database
from app.cli.errors import CliError
from app.cli.guards import GuardLossOption, GuardOption, guard_lines, parse_guards
from app.db.session import session_scope
from app.registry import GUARD_MAX_LOSS
from app.registry.improve import LABEL_PASSES


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
            help="FILE\\[@TAXONOMY] of earlier training data mixed in, so that the model keeps "
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
    epochs: Annotated[float, typer.Option(help="Epochs over the labels and the replay.")] = 1.0,
    label_passes: Annotated[
        int,
        typer.Option(min=1, help="Times each label is given per epoch (they are few)."),
    ] = LABEL_PASSES,
    promote: Annotated[
        bool, typer.Option(help="Promote the candidate when the gate passes.")
    ] = True,
    guard: GuardOption = None,
    guard_max_loss: GuardLossOption = GUARD_MAX_LOSS,
    for_list: Annotated[
        bool,
        typer.Option(
            "--for-list",
            help="Train from, gate against and promote for the configured taxonomy's workers "
            "only: workers of other lists keep the adapter they run (callx models list shows "
            "it under 'promoted for').",
        ),
    ] = False,
    reextract_below: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="After a promotion, re-extract the calls less sure than this."
        ),
    ] = None,
) -> None:
    """Export the labels, fine-tune from the promoted adapter, evaluate against it (and on the
    guards), promote if it is not worse and holds every guard, optionally re-extract the unsure
    calls. Exit 0: promoted (or measured, with --no-promote); 1: the gate kept the promoted
    adapter; 2: an error."""

    from app.finetune import require_extra
    from app.jobs import reextract
    from app.jobs.queue import TaskQueue, build_celery
    from app.registry import service as registry
    from app.registry.follow import workers_model
    from app.review.export import ExportError, export_labels
    from schemas.taxonomy import load_taxonomy

    require_extra()
    from app.finetune import FinetuneError
    from app.registry.improve import RoundPlan, run_round

    settings = get_settings()
    taxonomy = load_taxonomy(settings.extraction.taxonomy_path)
    guards = parse_guards(guard, guard_max_loss, taxonomy)
    engine, sessions = open_database("adapters")
    started = datetime.now(UTC)

    # 1. The labels of the configured taxonomy, split as `callx labels export` splits them.
    with session_scope(sessions) as session:
        try:
            summary = export_labels(session, output / "labels", taxonomy_version=taxonomy.version)
        except ExportError as exc:
            raise CliError(str(exc)) from None
        scope = taxonomy.version if for_list else None
        own = registry.lists_with_their_own(session)
        if scope is None and taxonomy.version in own:
            # Its workers would not run what this promotes: the round would be for nothing.
            raise CliError(
                f"{taxonomy.version} runs its own adapter {own[taxonomy.version]}: pass "
                "--for-list, or hand it back first (`callx models rollback --for-taxonomy "
                f"{taxonomy.version}`)"
            )
        current = registry.promoted(session, settings, scope)
        if current is None:
            raise CliError("no adapter is promoted and none ships with callx: nothing to improve")
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

    # 2-3. A candidate trained from the promoted adapter on the labels and the replay,
    #      registered, and measured against the promoted adapter on the gate's calls.
    plan = RoundPlan(
        labels=train_file,
        gate=gate_file,
        output=output / f"candidate-{started.strftime('%Y%m%dT%H%M%S')}.gguf",
        replay=tuple(replay or ()),
        label_passes=label_passes,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        promote=False,
        guards=guards,
        for_taxonomy=scope,
    )
    try:
        result = run_round(settings, sessions, taxonomy, plan, lambda m: _say("2/4 " + m))
    except FinetuneError as exc:
        engine.dispose()
        raise CliError(str(exc)) from None
    comparison = result.comparison
    _say(
        f"3/4 candidate {comparison.reason_accuracy:.1%} vs promoted "
        f"{comparison.baseline_reason_accuracy:.1%} on {comparison.calls} calls "
        f"(McNemar p={comparison.p_value}): {result.verdict}"
    )
    for line in guard_lines(comparison.guards):
        _say("3/4 " + line)
    candidate_id = result.candidate_id
    if not promote or result.verdict != "passes":
        _say("4/4 kept the promoted adapter" + ("" if promote else " (--no-promote)"))
        engine.dispose()
        raise typer.Exit(0 if not promote else 1)

    # 4. Promoted (workers switch between calls), and the unsure calls re-extracted.
    with session_scope(sessions) as session:
        registry.promote(session, settings, candidate_id, "cli:improve", for_taxonomy=scope)
    whose = "workers" if scope is None else f"workers of {scope}"
    _say(f"4/4 promoted adapter {candidate_id}: {whose} switch to it between calls")
    if reextract_below is not None:
        queue = TaskQueue(build_celery(settings, "callx-cli"), settings)
        with session_scope(sessions) as session:
            state = reextract.create_reextraction(
                session,
                queue,
                reextract.ReextractionFilter(max_confidence=reextract_below),
                taxonomy_version=taxonomy.version,
                model=workers_model(session, settings, taxonomy.version),
                by="cli:improve",
            )
            _say(f"re-extraction {state.job.id}: {state.job.calls} calls below {reextract_below}")
    engine.dispose()
    typer.echo(str(candidate_id))
