"""What every benchmark returns, and the table and JSON they are reported as."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class BenchRow:
    """One figure: callx's value against the floor measured in the same run.

    `ratio` is callx / floor for times (lower is better) or callx / floor for rates (higher is
    better), as `better` says; `target` is the ratio (or absolute) the project aims for.
    """

    name: str
    unit: str
    floor: float | None
    callx: float
    ratio: float | None
    target: str
    met: bool | None
    better: str = "lower"  # or "higher"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def render(rows: list[BenchRow]) -> str:
    header = ["benchmark", "unit", "floor", "callx", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r.name,
                    r.unit,
                    "—" if r.floor is None else f"{r.floor:.4g}",
                    f"{r.callx:.4g}",
                    "—" if r.ratio is None else f"{r.ratio:.2f}",
                    r.target,
                    {True: "yes", False: "NO", None: "—"}[r.met],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_json(path: Path, rows: list[BenchRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2), "utf-8"
    )


def report(rows: list[BenchRow], path: Path) -> None:
    """What a benchmark module run alone ends with: the table, each row's notes, the JSON."""
    print(render(rows))
    for row in rows:
        if row.notes:
            print(f"- {row.name}: {row.notes}")
    write_json(path, rows)
    print(f"\nwritten: {path}")
