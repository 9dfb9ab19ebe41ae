"""`callx submit`: a file of transcripts to a running API, in NDJSON batches."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.progress import progress_bar
from app.records import read_records, record_text

_FIELDS = ("external_id", "source", "language", "occurred_at", "metadata")


@dataclass
class SubmitSummary:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

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
    item: dict[str, Any] = {k: record[k] for k in _FIELDS if record.get(k) not in (None, "")}
    if "external_id" not in item and record.get("id") is not None:
        item["external_id"] = str(record["id"])
    if source and "source" not in item:
        item["source"] = source
    item["text"] = record_text(record) or ""
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
                raise SystemExit(f"HTTP {response.status_code}: {response.text[:500]}")
            answer = response.json()
            summary.received += answer["received"]
            summary.accepted += answer["accepted"]
            summary.duplicates += answer["duplicates"]
            summary.rejected += answer["rejected"]
            if answer.get("id"):
                summary.batches.append(answer["id"])
            for error in answer.get("errors", []):
                summary.errors.append(
                    f"record {start + error['index'] + 1}: {'; '.join(error['errors'])}"
                )
            bar.advance(task, len(part))
    return summary
