"""`callx submit`: a file of transcripts to a running API, in NDJSON batches."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.cli.errors import CliError
from app.progress import progress_bar
from app.records import read_records
from schemas.records import TRANSCRIPT_FIELDS


@dataclass
class SubmittedCall:
    """One record of the file as the API answered it, in file order."""

    external_id: str | None
    source: str
    transcript_id: str | None  # None: rejected, or a duplicate of a call already stored
    error: str | None = None  # why it was rejected


@dataclass
class SubmitSummary:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: list[SubmittedCall] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"{self.received} records: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{self.rejected} rejected; batches: {', '.join(self.batches) or 'none'}"
        ]
        lines += self.errors[:20]
        if len(self.errors) > 20:
            lines.append(f"... and {len(self.errors) - 20} more errors")
        return "\n".join(lines)


def _payload(record: dict[str, Any], source: str | None) -> dict[str, Any]:
    """The record as the API takes it (its other fields, labels included, go into metadata);
    a transcript field that is null is left out, as if absent."""
    item = {k: v for k, v in record.items() if v is not None or k not in TRANSCRIPT_FIELDS}
    if source and "source" not in item:
        item["source"] = source
    return item


def submit_file(
    path: Path, *, url: str, source: str | None, chunk: int, api_key: str | None
) -> SubmitSummary:
    records = read_records(path)
    summary = SubmitSummary()
    headers = {"content-type": "application/x-ndjson"}
    if api_key:
        headers["x-api-key"] = api_key
    with (
        httpx.Client(base_url=url.rstrip("/"), timeout=300, headers=headers) as client,
        progress_bar() as bar,
    ):
        task = bar.add_task("submitting", total=len(records))
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            body = "\n".join(json.dumps(_payload(r, source), ensure_ascii=False) for r in part)
            response = client.post("/v1/batches", content=body.encode("utf-8"))
            if response.status_code not in (200, 202, 422):
                raise CliError(f"{response.request.url} answered {refusal(response)}")
            answer = response.json()
            summary.received += answer["received"]
            summary.accepted += answer["accepted"]
            summary.duplicates += answer["duplicates"]
            summary.rejected += answer["rejected"]
            if answer.get("id"):
                summary.batches.append(answer["id"])
            refused = {}
            for error in answer.get("errors", []):
                refused[error["index"]] = "; ".join(error["errors"])
                summary.errors.append(
                    f"record {start + error['index'] + 1}: {refused[error['index']]}"
                )
            stored = answer.get("transcript_ids") or [None] * len(part)
            for i, record in enumerate(part):
                summary.calls.append(
                    SubmittedCall(
                        external_id=_id_of(record),
                        source=_payload(record, source).get("source") or "default",
                        transcript_id=stored[i],
                        error=refused.get(i),
                    )
                )
            bar.advance(task, len(part))
    return summary


def refusal(response: httpx.Response) -> str:
    """`HTTP 401: the API's detail`, in one line."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        detail = response.text
    return f"HTTP {response.status_code}: {' '.join(str(detail).split())[:300]}"


def _id_of(record: dict[str, Any]) -> str | None:
    value = record.get("external_id")
    return None if value in (None, "") else str(value)
