"""callx: the command line. Each command lives in a module of its own concern."""

from __future__ import annotations

import sys
import traceback

import typer

from app.cli import (  # noqa: F401  (registers)
    evaluate,
    files,
    finetune,
    improve,
    keys,
    labels,
    models,
    reextract,
    service,
)
from app.cli.app import cli, invocation
from app.cli.errors import EXIT_USAGE, describe


def _usage(error: typer.TyperException) -> str:
    """A usage error (an unknown command or option, a missing or bad value) in one line."""
    param = getattr(error, "param", None)
    options = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    if type(error).__name__ == "MissingParameter" and options:
        what = f"missing option {' / '.join(options)}"
    else:
        what = " ".join(error.format_message().split())
    where = getattr(getattr(error, "ctx", None), "command_path", None) or "callx"
    if where == "callx" and invocation.command:  # an option's value missing at the line's end
        where = f"callx {invocation.command}"
    usage = error.exit_code == EXIT_USAGE  # not a file typer could not open, say
    return f"{where}: {what}" + (f" (see {where} --help)" if usage else "")


def main() -> None:
    try:
        # Not standalone: a usage error comes here, to be said in one line, not in a box.
        code = cli(standalone_mode=False, prog_name="callx")
    except typer.TyperException as error:
        if type(error).__name__ != "NoArgsIsHelpError":  # that one: the help, printed
            print(_usage(error), file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:
        print("callx: aborted", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise  # a bug: its traceback
        if invocation.debug:
            traceback.print_exc()
        prefix = f"callx {invocation.command}" if invocation.command else "callx"
        print(f"{prefix}: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    # A command's typer.Exit(code), or --help's 0; what a command returns is not an exit code.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
