"""Split callx's own calls into train / dev / test, stratified by language and reason.

Deterministic (by a hash of the id), so re-running gives the same files:
    python data/calls/split.py
The test split is never used for tuning prompts or training adapters.
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
SHARES = {"test": 0.35, "dev": 0.15}  # the rest is train


def main() -> None:
    records = [
        json.loads(line)
        for name in ("raw_fr.jsonl", "raw_en.jsonl")
        for line in (HERE / name).read_text("utf-8").splitlines()
        if line.strip()
    ]
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        strata[(record["language"], record["reason"])].append(record)
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for members in strata.values():
        members.sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        n_test = round(len(members) * SHARES["test"])
        n_dev = round(len(members) * SHARES["dev"])
        splits["test"] += members[:n_test]
        splits["dev"] += members[n_test : n_test + n_dev]
        splits["train"] += members[n_test + n_dev :]
    for name, members in splits.items():
        members.sort(key=lambda r: r["id"])
        with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for record in members:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(name, len(members))


if __name__ == "__main__":
    main()
