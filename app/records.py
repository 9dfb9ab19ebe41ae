"""Reading labelled or unlabelled call records from JSONL or CSV files (CLI, eval, finetune)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class RecordFileError(ValueError):
    pass


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of a .jsonl/.ndjson/.json (array) or .csv file, in file order."""
    return list(iter_records(path))


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise RecordFileError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle):
                yield {k: v for k, v in row.items() if k is not None}
        return
    if suffix == ".json":
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, list):
            raise RecordFileError(f"{path}: a .json file must hold an array of records")
        yield from data
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordFileError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise RecordFileError(f"{path}:{number}: expected a JSON object")
            yield record


def record_text(record: dict[str, Any]) -> str | None:
    """The transcript of a record: its `transcript` or `text` field."""
    value = record.get("transcript", record.get("text"))
    return value if isinstance(value, str) and value.strip() else None
