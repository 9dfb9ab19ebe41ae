"""`callx labels export`: the labelled calls as JSONL split by a stable hash of their id, read
back by `callx eval` (and, with the real model, by `callx finetune`); its errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.review.export import split_of
from support.env import callx_command, process_env

REASONS = ("billing", "breakdown", "delivery", "usage_help", "cancellation", "other")

Store = Callable[..., list[str]]  # the store_calls fixture


def export(settings: Settings, *args: str) -> Any:
    return callx_command(("labels", "export", *args), process_env(settings), timeout=120)


def read_split(folder: Path, split: str) -> list[dict[str, Any]]:
    lines = (folder / f"{split}.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def labelled(client: TestClient, store_calls: Store) -> list[str]:
    """60 calls labelled by a person: the first 20 in the audit sample."""
    texts = [
        f"Client: appel {i}, ma Livebox 6 [reason={REASONS[i % 6]}] [confidence=0.{50 + i}]"
        for i in range(60)
    ]
    ids = store_calls(texts[:20], review={"audit_rate": 1.0})
    ids += store_calls(texts[20:])
    for i, transcript_id in enumerate(ids):
        body = {"reason": REASONS[(i + i // 7) % 6], "product": "Livebox 6" if i % 3 else None}
        response = client.put(f"/v1/transcripts/{transcript_id}/label", json=body)
        assert response.status_code == 200, response.text
    return ids


def test_the_export_splits_by_id_marks_the_audit_and_eval_reads_it(
    labelled: list[str], review_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    result = export(review_settings, "--output", str(out))
    assert result.returncode == 0, result.stderr
    records = {split: read_split(out, split) for split in ("train", "dev", "test", "audit")}
    assert sum(map(len, records.values())) == 60
    # The audit sample alone in audit.jsonl: never trained on.
    assert sorted(r["id"] for r in records["audit"]) == sorted(labelled[:20])
    assert all(r["audit"] for r in records["audit"])
    assert len(records["train"]) > len(records["dev"])  # 80 / 10 / 10 of the other 40
    fields = {"id", "text", "reason", "product", "language", "audit", "provenance"}
    for split, rows in records.items():
        for row in rows:
            if split != "audit":
                assert split_of(uuid.UUID(row["id"])) == split and not row["audit"]
            assert set(row) == fields
            assert row["provenance"]["labelled_by"] == "local"
            assert row["provenance"]["model_confidence"] is not None
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["calls"] == {split: len(rows) for split, rows in records.items()}
    assert "audit.jsonl: 20 calls, the audit sample" in result.stdout
    # Pinned: a change of the hash would move calls between train and test of earlier exports.
    assert [split_of(uuid.UUID(int=n)) for n in (1, 2, 3, 8)] == ["train", "train", "test", "dev"]
    # The same labels, exported again: the same files (a call never changes split).
    again = export(review_settings, "--output", str(out))
    assert again.returncode == 0
    assert {s: read_split(out, s) for s in records} == records
    # callx eval reads a split as it is.
    evaluated = callx_command(
        ("eval", "--dataset", str(out / "train.jsonl"), "--backend", "fake", "--json",
         str(tmp_path / "eval.json")),
        process_env(review_settings),
        timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    saved = json.loads((tmp_path / "eval.json").read_text("utf-8"))
    assert saved["results"][0]["n"] == len(records["train"])


def test_export_errors_are_one_line_and_write_nothing(
    labelled: list[str], review_settings: Settings, tmp_path: Path
) -> None:
    bad_since = export(review_settings, "--output", str(tmp_path / "a"), "--since", "yesterday")
    assert bad_since.returncode == 2
    assert bad_since.stderr.strip() == (
        "callx labels: --since 'yesterday': not an ISO 8601 date or date-time"
    )
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    refused = export(review_settings, "--output", str(a_file))
    assert refused.returncode == 2 and "is a file, not a directory" in refused.stderr
    # Labels of two taxonomy versions: one must be chosen; nothing is written.
    engine = create_engine(review_settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE labels SET taxonomy_version = 'old-1' WHERE version = 1 AND reason = 'other'"
            )
        )
    engine.dispose()
    mixed = export(review_settings, "--output", str(tmp_path / "b"))
    assert mixed.returncode == 2 and "export one with --taxonomy-version" in mixed.stderr
    assert not (tmp_path / "b").exists()
    only_old = export(
        review_settings, "--output", str(tmp_path / "c"), "--taxonomy-version", "old-1"
    )
    assert only_old.returncode == 0, only_old.stderr
    rows = [r for s in ("train", "dev", "test", "audit") for r in read_split(tmp_path / "c", s)]
    assert rows and {r["reason"] for r in rows} == {"other"}
    # --since in the future, --source of nobody: empty files, said so.
    empty = export(review_settings, "--output", str(tmp_path / "d"), "--source", "nobody")
    assert empty.returncode == 0 and "no labelled calls match" in empty.stderr
    later = export(review_settings, "--output", str(tmp_path / "e"), "--since", "2100-01-01")
    assert later.returncode == 0 and "no labelled calls match" in later.stderr
    assert (tmp_path / "e" / "audit.jsonl").read_text() == ""


@pytest.mark.model
@pytest.mark.parametrize("review_settings", ["postgresql"], indirect=True)
def test_callx_finetune_trains_on_the_export_as_it_is(
    labelled: list[str], review_settings: Settings, tmp_path: Path, model_path: Path
) -> None:
    """A tiny run (one step of two examples) on the exported train split."""
    out = tmp_path / "labels"
    assert export(review_settings, "--output", str(out)).returncode == 0
    adapter = tmp_path / "adapter" / "reviewed.gguf"
    trained = callx_command(
        ("finetune", "--train", str(out / "train.jsonl"), "--output", str(adapter), "--base-model", str(model_path), "--batch-size", "2",
         "--max-steps", "1", "--rank", "2", "--alpha", "4"),
        process_env(review_settings),
        timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    card = json.loads(adapter.with_suffix(".json").read_text("utf-8"))
    (source,) = card["training_files"]
    assert source["records"] == len(read_split(out, "train"))
