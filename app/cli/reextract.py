"""`callx reextract`: extract stored calls again, as POST /v1/reextractions does."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from app.cli.app import cli, err, get_settings, open_database, parse_time
from app.cli.errors import CliError
from app.db.session import session_scope


@cli.command("reextract")
def reextract_command(
    since: Annotated[
        str | None, typer.Option(help="Calls at or after this time (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Calls before this time.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source's calls.")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Only calls with this answer (a code).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only the calls this model answered.")] = None,
    taxonomy_version: Annotated[
        str | None, typer.Option(help="Only calls extracted with this taxonomy version.")
    ] = None,
    max_confidence: Annotated[
        float | None, typer.Option(min=0, max=1, help="Only calls at most this sure.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many.")] = 10_000,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every call is done.")] = False,
) -> None:
    """Extract stored calls again on the batch queue, with the model the workers run now and
    the configured taxonomy: a new model, or a new taxonomy version, applied to calls already
    stored. Earlier results are kept; labels stay the answer; the same job twice extracts once."""
    from app.jobs import reextract
    from app.jobs.queue import TaskQueue, build_celery
    from app.registry.follow import workers_model
    from schemas.api import normalize_source
    from schemas.taxonomy import load_taxonomy

    settings = get_settings()
    taxonomy = load_taxonomy(settings.extraction.taxonomy_path)
    if reason is not None and reason not in taxonomy.codes:
        raise CliError(
            f"--reason {reason!r}: not a code of {taxonomy.version}: {', '.join(taxonomy.codes)}"
        )
    filters = reextract.ReextractionFilter(
        since=parse_time("--since", since),
        until=parse_time("--until", until),
        source=normalize_source(source) if source else None,
        reason=reason,
        model=model,
        taxonomy_version=taxonomy_version,
        max_confidence=max_confidence,
        limit=limit,
    )
    engine, sessions = open_database("reextractions")
    queue = TaskQueue(build_celery(settings, "callx-cli"), settings)
    with session_scope(sessions) as session:
        state = reextract.create_reextraction(
            session,
            queue,
            filters,
            taxonomy_version=taxonomy.version,
            model=workers_model(session, settings, taxonomy.version),
            by="cli",
        )
        job_id, calls = state.job.id, state.job.calls
    said = "made" if state.created else "already made (nothing extracted twice)"
    err.print(f"re-extraction {job_id} {said}: {calls} calls", markup=False, highlight=False)
    typer.echo(str(job_id))
    while wait:
        with session_scope(sessions) as session:
            now = reextract.get_state(session, job_id)
        err.print(f"done {now.done}/{calls}, queued {now.queued}, running {now.running}")
        if now.finished:
            break
        time.sleep(2)
    engine.dispose()
