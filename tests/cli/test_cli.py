"""`callx extract`: the pipeline without a server, JSONL and CSV in, one line per record out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from support.calls import CALLS
from support.env import run_callx

pytestmark = pytest.mark.model
CODES = {"breakdown", "usage_help", "sales_inquiry", "billing", "delivery", "cancellation", "other"}


def test_extract_jsonl_keeps_order_and_reports_every_record(
    tmp_path: Path, model_path: Path
) -> None:
    source = tmp_path / "calls.jsonl"
    records = [{"id": c["external_id"], "transcript": c["text"]} for c in CALLS[:3]]
    records.insert(1, {"id": "no-text", "transcript": "  "})
    records.append({"id": 42, "text": CALLS[3]["text"]})
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    output = tmp_path / "out.jsonl"

    result = run_callx("extract", str(source), "--output", str(output), tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in records]
    for line in lines:
        assert {"id", "product", "reason"} <= set(line)
    assert lines[1]["status"] == "failed" and lines[1]["reason"] is None
    assert all(line["reason"] in CODES for i, line in enumerate(lines) if i != 1)


def test_extract_reads_csv(tmp_path: Path, model_path: Path) -> None:
    source = tmp_path / "calls.csv"
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text"])
        writer.writeheader()
        for call in CALLS[:2]:
            writer.writerow({"id": call["external_id"], "text": call["text"]})
    output = tmp_path / "out.jsonl"
    result = run_callx("extract", str(source), "-o", str(output), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == [c["external_id"] for c in CALLS[:2]]
    assert all(line["reason"] in CODES for line in lines)
