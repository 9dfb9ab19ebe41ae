"""`callx models`: the registry of LoRA adapters, the gate, promotion and rollback."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.app import cli, err, get_settings, open_database
from app.cli.errors import CliError
from app.cli.guards import GuardLossOption, GuardOption, guard_lines, parse_guards
from app.db.session import session_scope
from app.registry import GUARD_MAX_LOSS

ForTaxonomyOption = Annotated[
    str | None,
    typer.Option(
        "--for-taxonomy",
        metavar="VERSION",
        help="A list's taxonomy version (the `version:` of its YAML): for the workers of that "
        "list only; the other lists keep the registry's promoted adapter.",
    ),
]

models_cli = typer.Typer(
    help="LoRA adapters: register, blend, list, evaluate against the promoted one, promote "
    "(behind a gate), roll back. Workers of the local backend run the promoted adapter.",
    no_args_is_help=True,
)
cli.add_typer(models_cli, name="models")


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (a container without passwd)
        return "cli"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _database() -> Any:
    """(engine, sessions) on the configured database, with the registry's tables."""
    return open_database("adapters")


@models_cli.command("register")
def models_register(
    adapter: Annotated[Path, typer.Argument(help="A LoRA adapter in llama.cpp's GGUF format.")],
    name: Annotated[
        str | None, typer.Option(help="A name for it (default: the file's name).")
    ] = None,
) -> None:
    """Record an adapter (sha256, base model, card, who, when) and copy it, with its card, into
    the models directory (CALLX_MODELS_DIR)."""
    from app.registry import service

    settings = get_settings()
    engine, sessions = _database()
    with session_scope(sessions) as session:
        row = service.register(session, settings, adapter, name, _who())
        summary = f"registered {row.name!r} as id {row.id} (sha256 {row.sha256[:16]}…)"
    engine.dispose()
    err.print(summary, markup=False, highlight=False)


@models_cli.command("blend")
def models_blend(
    first: Annotated[int, typer.Argument(help="An adapter's id (callx models list).")],
    second: Annotated[int, typer.Argument(help="Another adapter's id.")],
    weight: Annotated[
        float, typer.Option(help="The second adapter's share of the blend, between 0 and 1.")
    ] = 0.5,
    name: Annotated[
        str | None, typer.Option(help="A name for it (default: blend-FIRST-SECOND-WEIGHT).")
    ] = None,
) -> None:
    """Register the weighted mean of two adapters as a new adapter, to evaluate and promote.

    The mean of their updates, written exactly as one adapter of their summed rank. Blending a
    fine-tuned adapter with the one it started from keeps most of its gain and gives back part
    of what it forgot (docs/flywheel.md). Needs the finetune extra's gguf."""
    from importlib.util import find_spec

    from app.registry import service

    if find_spec("gguf") is None:
        raise CliError("callx models blend needs gguf: pip install -e '.[finetune]'")
    settings = get_settings()
    engine, sessions = _database()
    with session_scope(sessions) as session:
        row = service.blend(session, settings, first, second, weight, name, _who())
        rank = (row.card or {}).get("rank")
        summary = (
            f"registered {row.name!r} as id {row.id} (rank {rank}, sha256 {row.sha256[:16]}…): "
            f"{1 - weight:g} of adapter {first} and {weight:g} of adapter {second}; "
            f"measure it with callx models evaluate {row.id}"
        )
    engine.dispose()
    err.print(summary, markup=False, highlight=False)


@models_cli.command("list")
def models_list() -> None:
    """Every adapter, the promoted one marked *, the lists each is promoted for alone, with
    its latest evaluation against the promoted one."""
    from app.registry import service

    settings = get_settings()
    engine, sessions = _database()
    with session_scope(sessions) as session:
        rows = [
            [
                ("* " if item.promoted else "  ") + str(item.adapter.id),
                item.adapter.name,
                item.adapter.sha256[:12],
                item.adapter.registered_at.strftime("%Y-%m-%d %H:%M"),
                item.adapter.registered_by,
                ", ".join(item.promoted_for) or "-",
                "-"
                if item.evaluation is None
                else (
                    f"{_percent(item.evaluation.reason_accuracy)} vs "
                    f"{_percent(item.evaluation.baseline_reason_accuracy)} "
                    f"on {item.evaluation.calls} ({item.evaluation.verdict})"
                ),
            ]
            for item in service.list_adapters(session, settings)
        ]
    engine.dispose()
    header = [
        "id",
        "name",
        "sha256",
        "registered",
        "by",
        "promoted for",
        "reason accuracy vs promoted",
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


@models_cli.command("evaluate")
def models_evaluate(
    adapter_id: Annotated[int, typer.Argument(help="The candidate's id (callx models list).")],
    dataset: Annotated[
        Path,
        typer.Option(
            help="Labelled calls (JSONL or CSV, as `callx eval` reads them): the test split "
            "of `callx labels export`, or a file of your own. Never a file trained on."
        ),
    ],
    taxonomy: Annotated[
        Path | None, typer.Option(help="The dataset's taxonomy (default: the configured one).")
    ] = None,
    guard: GuardOption = None,
    guard_max_loss: GuardLossOption = GUARD_MAX_LOSS,
    for_taxonomy: Annotated[
        str | None,
        typer.Option(
            "--for-taxonomy",
            metavar="VERSION",
            help="A list's taxonomy version: against the adapter that list's workers run (for "
            "`promote --for-taxonomy`), the dataset read with that list (--taxonomy).",
        ),
    ] = None,
) -> None:
    """Run the candidate and the promoted adapter on every call of the dataset (and of each
    guard), and store the comparison: reason accuracy of both, the paired McNemar p-value, the
    gate's verdict (passes, worse, or forgets: a guard lost more than it allows). With
    --for-taxonomy, against the adapter that list's workers run (for `promote
    --for-taxonomy`); the dataset is read with that list (--taxonomy)."""
    from app.registry import service
    from app.registry.gate import compare_adapters
    from schemas.taxonomy import load_taxonomy

    settings = get_settings()
    if not dataset.is_file():
        raise CliError(f"--dataset {dataset}: no such file")
    chosen = load_taxonomy(taxonomy or settings.extraction.taxonomy_path)
    service.check_gate_list(for_taxonomy, chosen.version)
    guards = parse_guards(guard, guard_max_loss, load_taxonomy(settings.extraction.taxonomy_path))
    engine, sessions = _database()
    with session_scope(
        sessions
    ) as session:  # the paths only; no session is held while the models run
        candidate = service.get_adapter(session, adapter_id)
        # The registry's promoted adapter, or the one the list runs (--for-taxonomy).
        baseline = service.promoted(session, settings, for_taxonomy)
        candidate_path = service.adapter_file(settings, candidate)
        baseline_path = None if baseline is None else service.adapter_file(settings, baseline)
        if baseline is not None and baseline.id == candidate.id:
            baseline_path = None
    against = baseline_path.name if baseline_path else "nothing (no adapter is promoted)"
    err.print(f"evaluating {candidate_path.name} against {against} on {dataset}")
    if guards and baseline_path is None:
        err.print("the guards are not measured: there is no other promoted adapter to compare")
    result = compare_adapters(
        settings, candidate_path, baseline_path, dataset, chosen, guards=guards
    )
    with session_scope(sessions) as session:
        fresh_candidate = service.get_adapter(session, adapter_id)
        # The adapter measured, even if another was promoted while the models ran.
        fresh_baseline = (
            None
            if baseline is None or baseline_path is None
            else service.get_adapter(session, baseline.id)
        )
        row = service.record_evaluation(session, fresh_candidate, fresh_baseline, result, _who())
        verdict = row.verdict
    engine.dispose()
    typer.echo(
        f"candidate {_percent(result.reason_accuracy)} vs promoted "
        f"{_percent(result.baseline_reason_accuracy)} on {result.calls} calls "
        f"(only candidate right {result.only_candidate_right}, only promoted right "
        f"{result.only_baseline_right}, McNemar p={result.p_value}): {verdict}"
    )
    for line in guard_lines(result.guards):
        typer.echo(line)


@models_cli.command("promote")
def models_promote(
    adapter_id: Annotated[int, typer.Argument(help="The adapter's id (callx models list).")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate refuses (recorded).")
    ] = False,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    for_taxonomy: ForTaxonomyOption = None,
) -> None:
    """Make the adapter the one workers run, if its latest evaluation against the promoted one
    passed the gate (not lower in reason accuracy, and within each guard's allowance). With
    --for-taxonomy, only the workers of that list run it; the other lists keep theirs."""
    from app.registry import service

    settings = get_settings()
    engine, sessions = _database()
    with session_scope(sessions) as session:
        row = service.promote(
            session, settings, adapter_id, _who(), force=force, note=note, for_taxonomy=for_taxonomy
        )
        said = f"promoted adapter {row.adapter_id}" + (" (forced: recorded)" if row.forced else "")
        own = sorted(service.lists_with_their_own(session))
    engine.dispose()
    if for_taxonomy is not None:
        said += f"; workers of {for_taxonomy} switch to it between calls"
    else:
        said += "; workers switch to it between calls"
        if own:
            said += f", except those of {', '.join(own)}, which run their own"
    err.print(said, markup=False, highlight=False)


@models_cli.command("rollback")
def models_rollback(for_taxonomy: ForTaxonomyOption = None) -> None:
    """Promote again the adapter promoted before the current one. With --for-taxonomy, along
    that list's own promotions; past its first, the list runs the registry's adapter again."""
    from app.registry import service

    settings = get_settings()
    engine, sessions = _database()
    with session_scope(sessions) as session:
        row = service.rollback(session, settings, _who(), for_taxonomy)
        if row.action == "release":
            current = service.promoted(session, settings)
            said = (
                f"{for_taxonomy} has no adapter of its own any more: its workers run the "
                f"registry's promoted adapter {current.id if current else '(none)'}"
            )
        else:
            said = f"rolled back to adapter {row.adapter_id}"
            if for_taxonomy is not None:
                said += f" for {for_taxonomy}"
    engine.dispose()
    err.print(said + "; workers switch between calls", markup=False, highlight=False)
