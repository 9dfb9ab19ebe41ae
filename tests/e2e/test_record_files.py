"""One record file everywhere: callx's labelled files (`id`, `transcript`, labels) and the API's
spelling (`external_id`, `text`) through the API, `callx submit`, `callx extract` and `callx eval`
(the fake backend: the records, not a model, are under test)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from support.env import run_callx

pytestmark = pytest.mark.services

DEV = Path(__file__).resolve().parents[2] / "data" / "calls" / "dev.jsonl"


def stored(database_url: str, source: str) -> dict[str, dict[str, Any]]:
    """external_id -> metadata of the transcripts stored for `source`."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT external_id, metadata FROM transcripts WHERE source = :source"),
            {"source": source},
        ).all()
    engine.dispose()
    return {row.external_id: row.metadata for row in rows}


def dev_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEV.read_text("utf-8").splitlines()]


def test_a_labelled_file_is_posted_as_it_is(api_url: str, database_url: str) -> None:
    """data/calls/dev.jsonl to /v1/batches unchanged: every record accepted, its id kept as
    external_id, its labels and other fields kept in metadata."""
    records = dev_records()
    with httpx.Client(base_url=api_url, timeout=60) as client:
        answer = client.post(
            "/v1/batches",
            content=DEV.read_bytes(),
            headers={"content-type": "application/x-ndjson"},
        ).json()
        assert (answer["received"], answer["accepted"], answer["rejected"]) == (61, 61, 0)
        # One call alone, in the API's spelling and in callx's: the same record.
        first = records[0]
        alone = {"external_id": "alone-1", "text": first["transcript"], "source": "single"}
        assert client.post("/v1/transcripts", json=alone).status_code == 202
        aliased = {**first, "id": "alone-2", "source": "single"}
        assert client.post("/v1/transcripts", json=aliased).status_code == 202
        # Both spellings of one field that differ: refused, naming both.
        both = {"id": "a", "external_id": "b", "text": "Client: bonjour."}
        refused = client.post("/v1/transcripts", json=both)
        assert refused.status_code == 422
        assert "`external_id` and `id`" in json.dumps(refused.json())
        # A near miss of a field's name is not taken for metadata.
        typo = client.post("/v1/transcripts", json={"text": "Client: bonjour.", "extrenal_id": "x"})
        assert typo.status_code == 422
        assert typo.json()["errors"][0]["loc"] == ["body", "extrenal_id"]

    kept = stored(database_url, "default")
    assert set(kept) == {r["id"] for r in records}
    for record in records:
        expected = {k: v for k, v in record.items() if k not in ("id", "transcript", "language")}
        assert kept[record["id"]] == expected  # reason, product, domain, style
    assert set(stored(database_url, "single")) == {"alone-1", "alone-2"}


def test_a_csv_batch_takes_either_spelling(api_url: str, database_url: str) -> None:
    body = "id,transcript,reason\nc1,Client: ma box ne marche plus.,breakdown\n"
    with httpx.Client(base_url=api_url, timeout=60) as client:
        answer = client.post(
            "/v1/batches", content=body, headers={"content-type": "text/csv"}
        ).json()
    assert answer["accepted"] == 1, answer
    assert stored(database_url, "default") == {"c1": {"reason": "breakdown"}}


@pytest.mark.parametrize("spelling", ["callx", "api"])
def test_one_file_through_submit_extract_and_eval(
    api_url: str, database_url: str, tmp_path: Path, spelling: str
) -> None:
    records = dev_records()[:12]
    if spelling == "api":
        records = [
            {"external_id": r["id"], "text": r["transcript"], "reason": r["reason"]}
            for r in records
        ]
    ids = [r.get("id", r.get("external_id")) for r in records]
    source = tmp_path / "calls.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    run = run_callx("submit", str(source), "--url", api_url, "--source", "cli", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "12 records: 12 accepted" in run.stderr
    assert set(stored(database_url, "cli")) == set(ids)

    output = tmp_path / "out.jsonl"
    run = run_callx(
        "extract", str(source), "-o", str(output), "--backend", "fake", tmp_path=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["external_id"] for line in lines] == ids
    assert all(line["status"] == "succeeded" for line in lines)

    results = tmp_path / "results.json"
    run = run_callx(
        "eval", "--dataset", str(source), "--backend", "fake", "--json", str(results),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (result,) = json.loads(results.read_text())["results"]
    assert [p["id"] for p in result["predictions"]] == ids


def test_extract_keeps_the_ids_of_a_csv(tmp_path: Path) -> None:
    source = tmp_path / "calls.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "text", "queue"])
        writer.writerow(["call-7", "Client: ma box Livebox 6 ne marche plus.", "sav"])
        writer.writerow(["call-9", "Customer: I was charged twice.", ""])
    output = tmp_path / "out.jsonl"
    run = run_callx(
        "extract", str(source), "-o", str(output), "--backend", "fake", tmp_path=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["external_id"] for line in lines] == ["call-7", "call-9"]
