"""callx: the command line. Each command lives in a module of its own concern."""

from __future__ import annotations

from app.cli import evaluate, files, finetune, keys, service  # noqa: F401  (registers commands)
from app.cli.app import cli


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
