"""callx: the command line. Each command lives in a module of its own concern."""

from __future__ import annotations

import sys
import traceback

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


def main() -> None:
    try:
        cli()
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise  # a bug: its traceback
        if invocation.debug:
            traceback.print_exc()
        prefix = f"callx {invocation.command}" if invocation.command else "callx"
        print(f"{prefix}: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
