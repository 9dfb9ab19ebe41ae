"""`callx keys`: API keys, created, listed and revoked."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.auth.keys import Scope
from app.cli.app import cli, err, open_database

keys_cli = typer.Typer(
    help="API keys for the REST API: create (shown once), list, revoke.", no_args_is_help=True
)
cli.add_typer(keys_cli, name="keys")


def _when(value: Any) -> str:
    from datetime import UTC

    if value is None:
        return "-"
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


@keys_cli.command("create")
def keys_create(
    scope: Annotated[
        Scope,
        typer.Option(
            help="ingest: submit transcripts and batches; read: transcripts, batches, "
            "extractions, analytics, quality; review: read, and the review queue and labels; "
            "admin: everything."
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="What or who the key is for, e.g. crm-sync.")
    ] = None,
) -> None:
    """Create an API key and print it, this once: only a hash of it is stored."""
    from app.auth.service import create_api_key
    from app.db.session import session_scope

    if name is not None and len(name) > 100:
        raise typer.BadParameter("at most 100 characters", param_hint="--name")
    engine, sessions = open_database("api_keys")
    with session_scope(sessions) as session:
        key, plaintext = create_api_key(session, scope, name or None)
    engine.dispose()
    err.print(
        f"created API key {key.id} (scope {scope}); it is shown only this once: store it now. "
        "Send it as the X-API-Key header.",
        markup=False,
        highlight=False,
    )
    typer.echo(plaintext)


@keys_cli.command("list")
def keys_list() -> None:
    """The API keys: id, name, scope, created, last used, revoked. Never their secrets."""
    from app.auth.service import list_api_keys
    from app.db.session import session_scope

    engine, sessions = open_database("api_keys")
    with session_scope(sessions) as session:
        keys = list_api_keys(session)
    engine.dispose()
    if not keys:
        err.print(
            "no API keys yet: callx keys create --scope ingest|read|review|admin", markup=False
        )
        return
    rows = [("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            k.id,
            k.name or "-",
            k.scope,
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `callx keys list`).")],
) -> None:
    """Revoke an API key: from now on requests with it get 401."""
    from datetime import UTC, datetime

    from app.auth.keys import parse_key
    from app.auth.service import find_api_key, revoke_api_key
    from app.db.session import session_scope

    engine, sessions = open_database("api_keys")
    with session_scope(sessions) as session:
        key = find_api_key(session, key_id)
        already = key is not None and key.revoked_at is not None
        if key is not None:
            revoke_api_key(session, key, datetime.now(UTC))
    engine.dispose()
    if key is None:
        parsed = parse_key(key_id)
        # Never echo a whole key back: only its id.
        err.print(f"no API key with id {parsed[0] if parsed else key_id!r}", markup=False)
        raise typer.Exit(1)
    if already:
        err.print(f"API key {key.id} was already revoked ({_when(key.revoked_at)})", markup=False)
    else:
        named = f", {key.name}" if key.name else ""
        err.print(f"revoked API key {key.id} ({key.scope}{named})", markup=False)
