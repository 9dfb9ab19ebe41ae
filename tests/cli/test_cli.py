"""`callx extract`: the pipeline without a server, JSONL and CSV in, one line per record out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from app.llm.model_files import DEFAULT_ADAPTER, file_sha256
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
    # Each line keeps its record's id, as the API's `external_id` (a number as its string).
    assert [line["external_id"] for line in lines] == [str(r["id"]) for r in records]
    for line in lines:
        assert {"external_id", "product", "reason"} <= set(line)
    assert lines[1]["status"] == "failed" and lines[1]["reason"] is None
    assert lines[1]["error"] == "text is empty"
    assert all(line["reason"] in CODES for i, line in enumerate(lines) if i != 1)
    # Which adapter answered, by its sha256; on the default list, which it learnt, no reader.
    assert lines[0]["adapter_sha256"] == file_sha256(DEFAULT_ADAPTER)
    assert lines[0]["reader_sha256"] is None


def test_extract_exits_1_when_every_record_failed(tmp_path: Path, model_path: Path) -> None:
    # Some failed: exit 0, each said on its line (above). Every one: a batch job must see it.
    source = tmp_path / "calls.jsonl"
    source.write_text('{"id": "a", "text": " "}\n{"id": "b", "text": ""}\n')
    output = tmp_path / "out.jsonl"
    result = run_callx("extract", str(source), "-o", str(output), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "2 records" in result.stderr and "(2 failed)" in result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(line["external_id"], line["status"]) for line in lines] == [
        ("a", "failed"),
        ("b", "failed"),
    ]


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
    assert [line["external_id"] for line in lines] == [c["external_id"] for c in CALLS[:2]]
    assert all(line["reason"] in CODES for line in lines)


def test_extract_is_quiet_unless_verbose(tmp_path: Path, model_path: Path) -> None:
    """llama.cpp's own messages (its warnings on loading the adapter, ~30 lines) only with
    `callx --verbose`; by default stderr holds the summary line alone."""
    source = tmp_path / "calls.jsonl"
    source.write_text(json.dumps({"id": "c1", "text": CALLS[0]["text"]}, ensure_ascii=False))
    output = tmp_path / "out.jsonl"
    quiet = run_callx("extract", str(source), "-o", str(output), tmp_path=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stderr.strip().splitlines() == [f"1 records -> {output} (0 failed)"]
    verbose = run_callx("--verbose", "extract", str(source), "-o", str(output), tmp_path=tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "llama" in verbose.stderr and len(verbose.stderr.splitlines()) > 20
