"""The flywheel's domain (data/flywheel/, issue 22): well formed, labelled in its own taxonomy,
split by the rule its README states, checked blind, and in no default adapter's training."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

from app.scoring import product_matches
from schemas.taxonomy import load_taxonomy
from support.cards import RECIPES, file_sha256s, shipped_training_sha256s

ROOT = Path(__file__).resolve().parents[2]
FLYWHEEL = ROOT / "data" / "flywheel"


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (FLYWHEEL / name).read_text("utf-8").splitlines()]


TRAIN, TEST = _read("moving-train.jsonl"), _read("moving-test.jsonl")
TAXONOMY = load_taxonomy(FLYWHEEL / "moving.yaml")


def test_every_call_is_labelled_in_the_companys_own_taxonomy() -> None:
    # Its own list: two names in common with the default's (defined for this trade), no other.
    assert set(TAXONOMY.codes) & set(load_taxonomy().codes) == {"billing", "cancellation"}
    assert len(TAXONOMY.codes) == 8 and "other" not in TAXONOMY.codes
    for record in TRAIN + TEST:
        assert record["language"] in {"fr", "en"} and record["domain"] == "moving", record["id"]
        assert record["transcript"].count("\n") >= 3, record["id"]
        assert record["reason"] in TAXONOMY.codes, record["id"]
        assert record["product"] is None or record["product"].strip(), record["id"]
    assert len({r["id"] for r in TRAIN + TEST}) == len(TRAIN) + len(TEST) == 200


def test_the_test_split_is_one_call_per_writer_language_and_reason_by_its_ids_hash() -> None:
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for record in TRAIN + TEST:
        writer = record["id"].split("-")[1]
        groups[(writer, record["language"], record["reason"])].append(record["id"])
    first = {
        min(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest()) for ids in groups.values()
    }
    assert first == {r["id"] for r in TEST}
    assert Counter(r["reason"] for r in TEST) == dict.fromkeys(TAXONOMY.codes, 8)
    assert Counter(r["language"] for r in TEST) == {"fr": 32, "en": 32}
    assert (len(TRAIN), len(TEST)) == (136, 64)


def test_a_second_labeller_who_never_saw_the_labels_agrees() -> None:
    second = {r["id"]: r for r in _read("moving-second-labels.jsonl")}
    calls = TRAIN + TEST
    assert set(second) == {r["id"] for r in calls}
    assert all(second[r["id"]]["reason"] == r["reason"] for r in calls)
    agreed = sum(product_matches(second[r["id"]]["product"], r["product"]) for r in calls)
    assert agreed >= 185  # 187 of 200 when written (the README lists the differences)


def test_no_default_adapter_was_trained_on_it() -> None:
    for recipe in RECIPES:
        assert "flywheel" not in recipe.read_text("utf-8"), recipe
    trained = shipped_training_sha256s()
    assert trained and not file_sha256s(sorted(FLYWHEEL.glob("*.jsonl"))) & trained
