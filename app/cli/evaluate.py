"""`callx eval`: backend configurations scored side by side on labelled calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from app.cli.app import cli, err, settings_for
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.evaluation.runner import BackendResult


@cli.command("eval")
def evaluate(
    dataset: Annotated[
        Path, typer.Option(help="Labelled records: text (or transcript), reason, product, id.")
    ],
    backend: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME[:key=value,...], repeatable, e.g. llamacpp:lora_path=a.gguf, or "
            "classical:train=FILE[+FILE] (TF-IDF + logistic regression, the classical baseline)"
        ),
    ] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="The dataset's taxonomy file.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N records.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Directory for report.md and images.")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """Score backend configurations side by side on a labelled dataset (same pipeline)."""
    from datetime import UTC, datetime

    from app.cli.errors import CliError
    from app.evaluation.classical import MissingEvalExtraError
    from app.evaluation.report import write_json, write_report
    from app.evaluation.runner import BackendConfig, load_dataset
    from app.evaluation.runner import evaluate as run_eval
    from app.llm.prompts import PROMPT_VERSION
    from app.progress import progress_bar
    from schemas.taxonomy import load_taxonomy

    configure_logging("WARNING")
    base = settings_for(None, taxonomy)
    tax = load_taxonomy(base.extraction.taxonomy_path)
    # Every mistake is said before the first model is loaded, not after an hour of the first.
    try:
        records = load_dataset(dataset, tax, limit, seed)
        configs = [BackendConfig.parse(spec) for spec in (backend or [base.extraction.backend])]
        for config in configs:
            config.check(base)
    except ValueError as exc:  # the dataset (RecordFileError), a --backend spec, its settings
        raise CliError(str(exc)) from None
    results = []
    with progress_bar() as bar:
        for config in configs:
            try:
                extractor = config.extractor(base, tax)
            except (MissingEvalExtraError, ValueError, OSError) as exc:
                raise CliError(f"{config.label}: {exc}") from None
            task = bar.add_task(config.label, total=len(records))
            results.append(run_eval(extractor, config, records, lambda t=task: bar.advance(t)))
    meta = {
        "dataset": str(dataset),
        "records": len(records),
        "limit": limit,
        "seed": seed,
        "taxonomy_version": tax.version,
        "prompt_version": PROMPT_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _print_tables(results)
    if json_path is not None:
        write_json(json_path, results, meta)
    if report is not None:
        err.print(f"report: {write_report(report, results, list(tax.codes), meta)}")


@cli.command("compare")
def compare(
    results_files: Annotated[
        list[Path], typer.Argument(help="Two or more `callx eval --json` files, same records.")
    ],
) -> None:
    """Compare configurations evaluated in separate runs, record by record (exact McNemar)."""
    from dataclasses import replace

    from app.cli.errors import CliError
    from app.evaluation.report import load_results

    try:
        results = [(path, result) for path in results_files for result in load_results(path)[0]]
        if len(results) < 2:
            raise ValueError("needs two or more configurations (in one file or several)")
        labels = [result.label for _, result in results]
        if len(set(labels)) < len(labels):  # the same label in two files: say which file
            results = [(p, replace(r, label=f"{p.stem}/{r.label}")) for p, r in results]
        _print_tables([result for _, result in results])
    except ValueError as exc:  # not eval results, too few, or not the same records
        raise CliError(str(exc)) from None


def _print_tables(results: list[BackendResult]) -> None:
    """The summary, the confidence, then the paired comparison of every two configurations."""
    from rich.table import Table

    from app.evaluation.paired import compare_all
    from app.evaluation.report import comparison_rows, confidence_rows, summary_rows

    # Each table, and how many of its leading cells name a row (a configuration, a pair).
    tables = [
        (summary_rows(results), 1),
        (confidence_rows(results), 1),
        (comparison_rows(compare_all(results)), 2),
    ]
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or logged: whole cells rather than an 80-column table cut into "re…".
        console = Console(width=240)
    for rows, naming in tables:
        if len(rows) < 2:
            continue
        if _natural_width(rows) <= console.width:
            table = Table(*rows[0])
            for row in rows[1:]:
                table.add_row(*row)
            console.print(table)
        else:
            console.print(_blocks(rows, naming), markup=False, highlight=False)


def _natural_width(rows: list[list[str]]) -> int:
    """Columns of a table whose every cell is whole: cells, padding and borders."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return sum(widths) + 3 * len(widths) + 1


def _blocks(rows: list[list[str]], naming: int) -> str:
    """A table too wide for the terminal as one block per row: the cells that name it, then
    each other column as `name  value` on a line of its own."""
    header, *body = rows
    width = max(len(name) for name in header[naming:]) + 2
    blocks = []
    for row in body:
        cells = zip(header[naming:], row[naming:], strict=True)
        lines = [" vs ".join(row[:naming])] + [f"  {name:<{width}}{value}" for name, value in cells]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# ---- API keys ------------------------------------------------------------------------------


@cli.command("calibrate")
def calibrate(
    adapter: Annotated[Path, typer.Argument(help="The adapter (GGUF) whose card to update.")],
    results_files: Annotated[
        list[Path],
        typer.Argument(help="`callx eval --json` files of this adapter on dev sets: fitted on."),
    ],
    measured: Annotated[
        list[Path] | None,
        typer.Option(
            help="`callx eval --json` files recorded in the card as evaluations, not fitted on "
            "(e.g. a test split, or a taxonomy the calibration should not cover). Repeatable."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(help="The configuration to read, where a file has several of this adapter."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the calibration without writing the card.")
    ] = False,
) -> None:
    """Fit the temperature that makes the adapter's confidence the probability of being right,
    on its evaluated dev sets, and write it (with every figure given) into its card."""
    from app.cli.errors import CliError
    from app.evaluation.calibration import calibrate_card, read_evaluated
    from app.llm.calibration import card_path, read_card, write_card

    if not adapter.is_file():
        raise CliError(f"{adapter}: no such adapter file")
    card = read_card(adapter)
    if card is None:
        raise CliError(f"{card_path(adapter)}: the adapter has no card to write the calibration in")

    try:
        fit = [read_evaluated(path, adapter.name, label) for path in results_files]
        others = [read_evaluated(path, adapter.name, label) for path in measured or []]
        updated = calibrate_card(card, adapter.name, fit, others)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    fitted = {item.taxonomy_version for item in fit}
    for version, section in updated["calibration"]["taxonomies"].items():
        if version in fitted:
            err.print(
                f"{version}: temperature {section['temperature']} on {section['calls']} calls, "
                f"calibration error {section['calibration_error_raw']:.3f} -> "
                f"{section['calibration_error']:.3f}"
            )
    for entry in updated["evaluations"][-len(fit) - len(others) :]:
        after = entry.get("calibration_error")
        err.print(
            f"  {entry['dataset']}: reason {entry['reason_accuracy']:.1%}, calibration error "
            f"{entry['calibration_error_raw']:.3f}"
            + (f" -> {after:.3f}" if after is not None else " (not calibrated: other taxonomy)")
        )
    if dry_run:
        return
    err.print(f"written: {write_card(adapter, updated)}")
