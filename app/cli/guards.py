"""The --guard options of `callx models evaluate` and `callx improve`: labelled calls a candidate
must not lose ground on (app/registry/gate.Guard), and how their figures are printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.errors import CliError
from app.registry import GUARD_MAX_LOSS

if TYPE_CHECKING:
    from app.registry.gate import Guard
    from schemas.taxonomy import Taxonomy

GuardOption = Annotated[
    list[str] | None,
    typer.Option(
        "--guard",
        help="FILE\\[@TAXONOMY] of labelled calls the candidate must not lose ground on against "
        "the promoted adapter (repeatable): e.g. your calls in the list you ran before, "
        "data/calls/dev.jsonl@default.",
    ),
]
GuardLossOption = Annotated[
    float,
    typer.Option(min=0, help="Reason-accuracy points a candidate may lose on each guard."),
]


def parse_guards(specs: list[str] | None, max_loss: float, default: Taxonomy) -> tuple[Guard, ...]:
    """The --guard options, each file read and checked now (a one-line error naming it)."""
    from app.registry.gate import Guard

    if not specs and max_loss != GUARD_MAX_LOSS:
        raise CliError("--guard-max-loss is an allowance on guards: give them with --guard")
    guards = []
    for spec in specs or ():
        try:
            guards.append(Guard.parse(spec, default, max_loss))
        except ValueError as exc:
            raise CliError(f"--guard {spec}: {exc}") from None
    return tuple(guards)


def guard_lines(guards: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    """One line per guard: both figures, what was lost against the allowance, held or not."""
    return [
        f"guard {g['dataset']} ({g['calls']} calls, {g['taxonomy_version']}): candidate "
        f"{g['reason_accuracy']:.1%} vs promoted {g['baseline_reason_accuracy']:.1%}, "
        f"{g['points_lost']:.2f} points lost (at most {g['max_loss']:g}; only candidate right "
        f"{g['only_candidate_right']}, only promoted right {g['only_baseline_right']}, McNemar "
        f"p={g['p_value']}): {'held' if g['held'] else 'NOT held'}"
        for g in guards
    ]
