"""callx's own `intents8` request set (`data/intents8/`): well-formed single customer turns,
labelled with codes of the shipped `intents8` taxonomy, every code in each split, and no
request shared between train and dev."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app.records import read_records
from schemas.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "intents8"
FIELDS = {"id", "domain", "transcript", "reason", "product"}


def _read(name: str) -> list[dict]:
    """Read as `callx eval` and `callx finetune` read it."""
    return read_records(DATA / f"{name}.jsonl")


@pytest.mark.parametrize("name", ["train", "dev"])
def test_every_record_is_one_customer_turn_labelled_in_intents8(name: str) -> None:
    codes = set(load_taxonomy(ROOT / "schemas" / "taxonomies" / "intents8.yaml").codes)
    records = _read(name)
    for r in records:
        where = f"{name}.jsonl {r.get('id')}"
        assert set(r) == FIELDS and r["reason"] in codes, where
        assert r["transcript"].startswith("Customer: ") and "\n" not in r["transcript"], where
        product = r["product"]
        assert product is None or (isinstance(product, str) and product.strip()), where
    reasons = Counter(r["reason"] for r in records)
    assert set(reasons) == codes and min(reasons.values()) >= 10
    assert len({r["domain"] for r in records}) >= 8


def test_train_and_dev_share_no_id_and_no_request() -> None:
    train, dev = _read("train"), _read("dev")
    ids = Counter(r["id"] for r in train + dev)
    assert [i for i, n in ids.items() if n > 1] == []
    assert {r["transcript"].casefold() for r in train}.isdisjoint(
        r["transcript"].casefold() for r in dev
    )
