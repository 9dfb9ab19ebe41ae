"""`callx submit --wait --output`: a file's results back, in the file's order, through a real
API and a real worker (fake backend) on PostgreSQL and Redis."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import httpx

from app.config import Settings
from support.env import callx_command, fake_worker_env
from support.services import CallxProcess

RECORDS = [
    {"id": "c-1", "transcript": "Client: ma box Livebox est en panne", "queue": "sav"},
    {"external_id": "c-2", "text": "Customer: I was charged twice on my invoice"},
    {"text": "Client: où en est ma livraison ?"},  # no id: matched by its position
    {"id": "c-4", "text": ""},  # rejected: empty text
    {"id": "known", "text": "Customer: please cancel my subscription"},  # stored before
]


def test_submit_waits_and_writes_the_results_in_the_files_order(
    api_url: str, settings: Settings, start_callx: Callable[..., CallxProcess], tmp_path: Path
) -> None:
    start_callx(["worker", "--concurrency", "2"], fake_worker_env(settings, 0.05))
    known = httpx.post(
        f"{api_url}/v1/transcripts",
        json={"external_id": "known", "text": "Customer: please cancel my subscription"},
    )
    assert known.status_code == 202
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    env = {"CALLX_DATA_DIR": str(tmp_path / "data")}

    results = tmp_path / "results.jsonl"
    done = callx_command(
        ("submit", str(calls), "--url", api_url, "--wait", "--output", str(results)), env, 120
    )
    assert done.returncode == 1, done.stderr  # one record was rejected: said, exit 1
    assert "record 4: text" in done.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["external_id"] for r in rows] == ["c-1", "c-2", None, "c-4", "known"]
    assert [r["status"] for r in rows] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "rejected",
        "succeeded",
    ]
    assert [r["reason"] for r in rows] == ["breakdown", "billing", "delivery", None, "cancellation"]
    assert rows[4]["transcript_id"] == known.json()["id"]
    assert "text" in rows[3]["error"]
    # The same file again: every call is a duplicate now, answered from what is stored.
    as_csv = tmp_path / "results.csv"
    again = callx_command(
        ("submit", str(calls), "--url", api_url, "--wait", "--output", str(as_csv)), env, 120
    )
    assert again.returncode == 1, again.stderr
    with as_csv.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    # The call without an id cannot be told from a new one: it is submitted again.
    assert [r["reason"] for r in table] == [r["reason"] or "" for r in rows]
    assert [r["transcript_id"] for r in table][:2] == [r["transcript_id"] for r in rows][:2]


def test_submit_refuses_an_output_it_cannot_write_before_sending(
    api_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.write_text(json.dumps(RECORDS[0]) + "\n")
    env = {"CALLX_DATA_DIR": str(tmp_path / "data")}
    for args, message in [
        (("--wait", "--output", str(tmp_path / "out.txt")), ".jsonl or .csv"),
        (("--output", str(tmp_path / "out.jsonl")), "--output needs --wait"),
        (("--wait", "--output", str(tmp_path / "no" / "out.csv")), "no such directory"),
    ]:
        result = callx_command(("submit", str(calls), "--url", api_url, *args), env, 60)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert httpx.get(f"{api_url}/v1/extractions").json()["items"] == []
    listed = httpx.get(f"{api_url}/v1/transcripts", params={"external_id": "c-1"})
    assert listed.status_code == 404  # nothing was sent
