"""`data/banking77-dev.ids`: the BANKING77 train records kept out of every training run, the
dev set the default adapter is chosen on (the records stay in ../shared/datasets)."""

from __future__ import annotations

import re
from pathlib import Path

IDS = Path(__file__).resolve().parents[2] / "data" / "banking77-dev.ids"


def test_the_dev_ids_are_distinct_banking77_train_ids_in_file_order() -> None:
    ids = IDS.read_text(encoding="utf-8").split()
    assert len(ids) == 555
    assert all(re.fullmatch(r"train-\d{5}", i) for i in ids)
    assert ids == sorted(set(ids))
