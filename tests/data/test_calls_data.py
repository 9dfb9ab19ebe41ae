"""callx's own benchmark of calls (`data/calls/`): well-formed, labelled in the default
taxonomy, and split exactly as `data/calls/split.py` splits it, the test split untouched by
calls written after it was fixed."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from schemas.taxonomy import load_taxonomy

CALLS = Path(__file__).resolve().parents[2] / "data" / "calls"
SPLITS = ("train", "dev", "test")
FIELDS = {"id", "language", "domain", "style", "transcript", "reason", "product"}
DOMAINS = {"telecom", "appliances", "energy", "banking", "ecommerce", "insurance"}
CUSTOMER = {"fr": "Client: ", "en": "Customer: "}


def _split_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calls_split", CALLS / "split.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: _read(CALLS / f"{name}.jsonl") for name in SPLITS}


def test_the_split_files_are_what_split_py_makes(splits: dict[str, list[dict]]) -> None:
    assert _split_module().make_splits() == splits


def test_every_call_is_well_formed_and_labelled_in_the_default_taxonomy(
    splits: dict[str, list[dict]],
) -> None:
    codes = set(load_taxonomy(None).codes)
    for name, records in splits.items():
        for r in records:
            where = f"{name}.jsonl {r.get('id')}"
            assert set(r) == FIELDS, where
            assert r["language"] in CUSTOMER and r["domain"] in DOMAINS, where
            assert r["style"] in {"clean", "asr"} and r["reason"] in codes, where
            product = r["product"]
            assert product is None or (isinstance(product, str) and product.strip()), where
            turns = r["transcript"].split("\n")
            assert 4 <= len(turns) <= 60, where
            assert turns[0].startswith("Agent: "), where
            speakers = {t.split(": ", 1)[0] + ": " for t in turns}
            assert speakers == {"Agent: ", CUSTOMER[r["language"]]}, where


def test_ids_are_unique_across_splits_and_later_calls_never_reach_test(
    splits: dict[str, list[dict]],
) -> None:
    ids = Counter(r["id"] for records in splits.values() for r in records)
    assert [i for i, n in ids.items() if n > 1] == []
    module = _split_module()
    later = {
        r["id"]
        for names, shares in module.BATCHES.items()
        if shares["test"] == 0
        for r in module.read(names)
    }
    assert later and later.isdisjoint(r["id"] for r in splits["test"])


def test_the_benchmark_is_what_issue_3_asks_for(splits: dict[str, list[dict]]) -> None:
    """At least 200 calls, at least half French, every domain and reason, both styles, calls
    without a product, and both languages in every split."""
    records = [r for records in splits.values() for r in records]
    assert len(records) >= 200
    assert sum(r["language"] == "fr" for r in records) * 2 >= len(records)
    assert {r["domain"] for r in records} == DOMAINS
    assert {r["reason"] for r in records} == set(load_taxonomy(None).codes)
    assert {r["style"] for r in records} == {"clean", "asr"}
    assert any(r["product"] is None for r in records)
    for name in SPLITS:
        assert {r["language"] for r in splits[name]} == {"fr", "en"}, name
