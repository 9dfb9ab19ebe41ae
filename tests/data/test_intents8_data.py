"""callx's own `intents8` request set (`data/intents8/`): well-formed single customer turns,
labelled with codes of the shipped `intents8` taxonomy, every code in train and dev, and no
training request (train, contrast) shared with dev or close to one."""

from __future__ import annotations

import re
from collections import Counter
from itertools import product
from pathlib import Path

import pytest

from app.records import read_records
from schemas.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "intents8"
# As callx reads them: `id` and `transcript` in the files are `external_id` and `text`.
FIELDS = {"external_id", "domain", "text", "reason", "product"}
TRAINING = ["train", "contrast"]
# The most words a training request may share with a dev request (Jaccard of word sets): the
# closest pairs written so far share 0.57 (two cancelled bookings, hotel and flight).
MAX_OVERLAP = 0.6


def _read(name: str) -> list[dict]:
    """Read as `callx eval` and `callx finetune` read it."""
    return read_records(DATA / f"{name}.jsonl")


@pytest.mark.parametrize("name", ["train", "dev", "contrast"])
def test_every_record_is_one_customer_turn_labelled_in_intents8(name: str) -> None:
    codes = set(load_taxonomy(ROOT / "schemas" / "taxonomies" / "intents8.yaml").codes)
    records = _read(name)
    for r in records:
        where = f"{name}.jsonl {r.get('external_id')}"
        assert set(r) == FIELDS and r["reason"] in codes, where
        assert r["text"].startswith("Customer: ") and "\n" not in r["text"], where
        product = r["product"]
        assert product is None or (isinstance(product, str) and product.strip()), where
    assert len({r["domain"] for r in records}) >= 8


@pytest.mark.parametrize("name", ["train", "dev"])
def test_train_and_dev_have_every_code(name: str) -> None:
    codes = set(load_taxonomy(ROOT / "schemas" / "taxonomies" / "intents8.yaml").codes)
    reasons = Counter(r["reason"] for r in _read(name))
    assert set(reasons) == codes and min(reasons.values()) >= 10


def _words(record: dict) -> set[str]:
    return set(re.findall(r"\w+", record["text"].casefold().removeprefix("customer:")))


def _overlap(a: dict, b: dict) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb)


def test_no_id_is_used_twice() -> None:
    ids = Counter(r["external_id"] for name in [*TRAINING, "dev"] for r in _read(name))
    assert [i for i, n in ids.items() if n > 1] == []


@pytest.mark.parametrize("name", TRAINING)
def test_no_training_request_is_close_to_a_dev_request(name: str) -> None:
    close = [
        (t["external_id"], d["external_id"], round(_overlap(t, d), 2))
        for t, d in product(_read(name), _read("dev"))
        if _overlap(t, d) > MAX_OVERLAP
    ]
    assert close == []
