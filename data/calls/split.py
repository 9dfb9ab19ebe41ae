"""Split callx's own calls into train / dev / test, stratified by language and reason.

Deterministic (by a hash of the id), so re-running gives the same files:
    python data/calls/split.py
The test split is never used for tuning prompts or training adapters.

The second batch of calls (`raw_*_2.jsonl`) was written after the test split was fixed: it
goes to train and dev only, so the test split and every figure measured on it stay as they were.
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
BATCHES = {  # raw files -> the share of each stratum for test and dev; the rest is train
    ("raw_fr.jsonl", "raw_en.jsonl"): {"test": 0.35, "dev": 0.15},
    ("raw_fr_2.jsonl", "raw_en_2.jsonl"): {"test": 0.0, "dev": 0.25},
}


def main() -> None:
    for name, members in make_splits().items():
        with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for record in members:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(name, len(members))


def make_splits() -> dict[str, list[dict]]:
    """train, dev and test, each sorted by id."""
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for names, shares in BATCHES.items():
        split_batch(read(names), shares, splits)
    for members in splits.values():
        members.sort(key=lambda r: r["id"])
    return splits


def read(names: tuple[str, ...]) -> list[dict]:
    return [
        json.loads(line)
        for name in names
        for line in (HERE / name).read_text("utf-8").splitlines()
        if line.strip()
    ]


def split_batch(
    records: list[dict], shares: dict[str, float], splits: dict[str, list[dict]]
) -> None:
    """Each (language, reason) stratum, in hash order: test first, then dev, the rest train."""
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        strata[(record["language"], record["reason"])].append(record)
    for members in strata.values():
        members.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        n_test = round(len(members) * shares["test"])
        n_dev = round(len(members) * shares["dev"])
        splits["test"] += members[:n_test]
        splits["dev"] += members[n_test : n_test + n_dev]
        splits["train"] += members[n_test + n_dev :]


if __name__ == "__main__":
    main()
