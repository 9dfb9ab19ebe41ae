"""`callx submit --wait --output FILE`: wait for a submitted file's calls, then write their
results in the file's order (JSONL or CSV)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import httpx

from app.cli.errors import CliError
from app.cli.submit import SubmitSummary, refusal
from app.progress import progress_bar

RESULT_FIELDS = (
    "external_id",
    "transcript_id",
    "status",
    "product",
    "reason",
    "confidence",
    "error",
    "model",
    "taxonomy_version",
)
PAGE = 500


def check_output_path(path: Path) -> None:
    """Refuse an output the results cannot be written to, before anything is submitted."""
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise CliError(f"--output {path}: use a .jsonl or .csv file name")
    if not path.parent.is_dir():
        raise CliError(f"--output {path}: no such directory: {path.parent}")


def wait_for_batches(
    client: httpx.Client, batches: list[str], total: int, *, poll_s: float, timeout_s: float
) -> None:
    """Poll the batches' progress until every call is done, with a progress bar."""
    deadline = time.monotonic() + timeout_s
    with progress_bar() as bar:
        task = bar.add_task("extracting", total=total)
        while True:
            done = 0
            finished = True
            for batch in batches:
                progress = _get(client, f"/v1/batches/{batch}")
                done += progress["counts"]["succeeded"] + progress["counts"]["failed"]
                finished &= progress["done"]
            bar.update(task, completed=done)
            if finished:
                return
            if time.monotonic() > deadline:
                raise CliError(
                    f"--wait: {total - done} calls still not done after {timeout_s:.0f} s; "
                    f"see GET /v1/batches/ID for {', '.join(batches)}"
                )
            time.sleep(poll_s)


def collect_results(
    client: httpx.Client, summary: SubmitSummary, *, poll_s: float, timeout_s: float
) -> list[dict[str, Any]]:
    """One result per submitted record, in file order: the batches' calls by id, the
    duplicates (calls stored before) by their source and external_id, and the rejected
    records with why."""
    by_id: dict[str, dict[str, Any]] = {}
    for batch in summary.batches:
        cursor = None
        while True:
            params: dict[str, Any] = {"batch_id": batch, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            page = _get(client, "/v1/extractions", params)
            for item in page["items"]:
                by_id[item["transcript_id"]] = item["extraction"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    deadline = time.monotonic() + timeout_s
    rows = []
    for call in summary.calls:
        row: dict[str, Any] = {name: None for name in RESULT_FIELDS}
        row["external_id"] = call.external_id
        if call.error is not None:
            row.update(status="rejected", error=call.error)
        elif call.transcript_id is not None:
            row["transcript_id"] = call.transcript_id
            _fill(row, by_id.get(call.transcript_id))
        else:  # a duplicate of a call stored before: its current answer
            stored = _wait_for_call(client, call.source, call.external_id, poll_s, deadline)
            row["transcript_id"] = stored["id"]
            _fill(row, stored.get("extraction"), stored["status"])
        rows.append(row)
    return rows


def _wait_for_call(
    client: httpx.Client, source: str, external_id: str | None, poll_s: float, deadline: float
) -> dict[str, Any]:
    params = {"source": source, "external_id": external_id}
    while True:
        stored = _get(client, "/v1/transcripts", params)
        if stored["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return stored
        time.sleep(poll_s)


def _fill(row: dict[str, Any], extraction: dict[str, Any] | None, status: str = "queued") -> None:
    if extraction is None:
        row["status"] = status
        return
    for name in ("status", "product", "reason", "confidence", "error", "model"):
        row[name] = extraction.get(name)
    row["taxonomy_version"] = extraction.get("taxonomy_version")


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as JSONL or CSV (by the file name), written whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(out, fieldnames=RESULT_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(path)


def _get(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> Any:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise CliError(f"{response.request.url} answered {refusal(response)}")
    return response.json()
