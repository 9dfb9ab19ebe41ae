"""Turning a batch request body (JSON array, NDJSON or CSV) into records, line by line."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from app.records import csv_error

NDJSON_TYPES = {
    "application/x-ndjson",
    "application/jsonl",
    "application/ndjson",
    "application/json-lines",
}
CSV_TYPES = {"text/csv", "application/csv"}
JSON_TYPES = {"application/json"}
SUPPORTED_TYPES = NDJSON_TYPES | CSV_TYPES | JSON_TYPES
# Columns that are a transcript's own fields (`transcript` and `id`: the other spellings of
# `text` and `external_id`); the others go into its metadata.
CSV_FIELDS = {"text", "transcript", "external_id", "id", "source", "language", "occurred_at"}


class BodyError(ValueError):
    """The body as a whole cannot be read (not its records: those are reported one by one)."""


@dataclass(frozen=True)
class RawRecord:
    index: int
    line: int | None
    data: Any = None
    error: str | None = None


def parse_batch_body(body: bytes, content_type: str) -> list[RawRecord]:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in NDJSON_TYPES:
        return _parse_ndjson(body)
    if media_type in CSV_TYPES:
        return _parse_csv(_decode(body))
    if media_type in JSON_TYPES or not media_type:
        return _parse_json_array(_decode(body))
    raise BodyError(
        f"unsupported content type {media_type!r}: use application/json (an array), "
        "application/x-ndjson or text/csv"
    )


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _parse_json_array(text: str) -> list[RawRecord]:
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:
        raise BodyError(str(exc)) from exc
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise BodyError("a JSON batch must be an array of transcript objects")
    return [RawRecord(index=i, line=None, data=item) for i, item in enumerate(data)]


def _parse_ndjson(body: bytes) -> list[RawRecord]:
    fast = _parse_ndjson_at_once(body)
    if fast is not None:
        return fast
    records: list[RawRecord] = []
    for number, raw_line in enumerate(body.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        index = len(records)
        try:
            line = raw_line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            records.append(RawRecord(index, number, error=f"not valid UTF-8 (byte {exc.start})"))
            continue
        try:
            records.append(RawRecord(index, number, data=_loads(line)))
        except json.JSONDecodeError as exc:
            records.append(
                RawRecord(index, number, error=f"invalid JSON at column {exc.colno}: {exc.msg}")
            )
        except ValueError as exc:
            records.append(RawRecord(index, number, error=str(exc)))
    return records


def _parse_ndjson_at_once(body: bytes) -> list[RawRecord] | None:
    """A well-formed NDJSON body parsed as one JSON array (one call into the C parser, not
    one per line); None if anything is off, for the line-by-line parse to say what and where."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    try:
        values = _loads("[" + ",".join(line for _, line in numbered) + "]")
    except ValueError:  # JSONDecodeError included
        return None
    if not isinstance(values, list) or len(values) != len(numbered):
        return None  # a line held more (or less) than one value: "1, 2"
    return [
        RawRecord(index, number, data=value)
        for index, ((number, _), value) in enumerate(zip(numbered, values, strict=True))
    ]


def _parse_csv(text: str) -> list[RawRecord]:
    # strict: a quote left open is an error, not the rest of the body read into one field.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise BodyError(f"{csv_error(exc, 1)} (in the header)") from exc
    header = [h.strip() for h in header]
    if "text" not in header and "transcript" not in header:
        raise BodyError("CSV header must have a 'text' column (or 'transcript')")
    records: list[RawRecord] = []
    while True:
        starts_on = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # said at the record's first line
            records.append(RawRecord(len(records), starts_on, error=csv_error(exc, starts_on)))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            records.append(
                RawRecord(
                    len(records),
                    reader.line_num,
                    error=f"expected {len(header)} fields, found {len(row)}",
                )
            )
            continue
        values = dict(zip(header, row, strict=True))
        data: dict[str, Any] = {k: v for k, v in values.items() if k in CSV_FIELDS and v != ""}
        extra = {k: v for k, v in values.items() if k not in CSV_FIELDS and v != ""}
        if extra:
            data["metadata"] = extra
        records.append(RawRecord(len(records), reader.line_num, data=data))
    return records
