"""Reading call records from JSONL, JSON or CSV files (`callx extract`, `submit`, `eval`,
`finetune`), with the API's field names: `text` (or `transcript`), `external_id` (or `id`)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas.records import ALIASES, LANGUAGE_TAG, TEXT, RecordFieldError, canonical_record

_TEXT_COLUMNS = {TEXT, *(alias for alias, name in ALIASES.items() if name == TEXT)}


class RecordFileError(ValueError):
    """A record file that cannot be read, or a malformed record; the message says where."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of a .jsonl/.ndjson/.json (array) or .csv file, in file order, with the
    canonical field names (schemas/records.py); an empty CSV cell is an absent field.

    Raises RecordFileError, naming the file (and line), for a file that cannot be read, a line
    that is not a JSON object, a CSV without a `text` column, a record without a text or with
    two spellings of one field that differ.
    """
    return list(iter_records(path))


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise RecordFileError(f"{path}: no such file")
    if path.is_dir():
        raise RecordFileError(f"{path}: is a directory, not a file of records")
    try:
        for where, record in _located_records(path):
            try:
                canonical = canonical_record(record)
            except RecordFieldError as exc:
                raise RecordFileError(f"{where}: {exc}") from None
            if TEXT not in canonical:
                raise RecordFileError(f"{where}: no `text` field (or `transcript`)")
            language = canonical.get("language")
            if language is not None and not (
                isinstance(language, str) and re.match(LANGUAGE_TAG, language)
            ):
                raise RecordFileError(
                    f"{where}: `language` {language!r} is not a language tag (fr, en, fr-CA)"
                )
            yield canonical
    except UnicodeDecodeError as exc:
        raise RecordFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecordFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _located_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record of the file with where it is (`FILE:LINE`, or `FILE record N`)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(path)
        return
    if suffix == ".json":
        try:
            data = json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise RecordFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(data, list):
            raise RecordFileError(f"{path}: a .json file must hold an array of records")
        for number, record in enumerate(data, start=1):
            if not isinstance(record, dict):
                raise RecordFileError(f"{path} record {number}: expected a JSON object")
            yield f"{path} record {number}", record
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordFileError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise RecordFileError(f"{path}:{number}: expected a JSON object")
            yield f"{path}:{number}", record


def csv_error(exc: csv.Error, starts_on: int) -> str:
    """What is wrong with a CSV record that starts on line `starts_on`, said plainly."""
    if str(exc) == "unexpected end of data":
        return f"invalid CSV: the quoted field opened on line {starts_on} is never closed"
    if str(exc) == "',' expected after '\"'":
        return 'invalid CSV: text after a closing quote (a quote inside a field is written "")'
    return f"invalid CSV: {exc}"


def _csv_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        # strict: a quote left open is an error, not the rest of the file read into one field.
        reader = csv.reader(handle, strict=True)
        starts_on = 1
        try:
            header = [name.strip() for name in next(reader, [])]
            if not header:
                return  # an empty file: no records
            if not _TEXT_COLUMNS & set(header):
                raise RecordFileError(
                    f"{path}: no `text` column (or `transcript`); its columns: " + ", ".join(header)
                )
            starts_on = reader.line_num + 1
            for row in reader:
                where = f"{path}:{reader.line_num}"
                starts_on = reader.line_num + 1  # the next record's first line
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise RecordFileError(
                        f"{where}: {len(row)} fields where the header has {len(header)}"
                    )
                values = zip(header, row, strict=True)
                # An empty text stays: the record is there, its transcript is empty.
                yield where, {k: v for k, v in values if v != "" or k in _TEXT_COLUMNS}
        except csv.Error as exc:  # said at the record's first line
            raise RecordFileError(f"{path}:{starts_on}: {csv_error(exc, starts_on)}") from None


def record_text(record: dict[str, Any]) -> str | None:
    """The transcript of a record read by `read_records`; None when it is empty."""
    value = record.get(TEXT)
    return value if isinstance(value, str) and value.strip() else None


def record_language(record: dict[str, Any]) -> str | None:
    """The `language` of a record read by `read_records` (a language tag), or None."""
    language = record.get("language")
    return language if isinstance(language, str) else None
