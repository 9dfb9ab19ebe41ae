"""The derived training files of the shipped default adapter's later stages (rebuild.sh).

Stage 1 trained on `--limit-per-file 9000` of BANKING77 train (its first file, seed 0); the
BANKING77 dev set (`data/banking77-dev.ids`) lies outside that sample and must stay unseen.
Stage 3 replays 300 of stage 1's records; stage 4 trains on the records no sample held (dev
excepted) and 12 of each intent replayed, with stage 3's 300 NatCS dev records.

    python -m app.finetune.default_recipe BANKING77_TRAIN NATCS_DEV OUTPUT_DIR
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from app.finetune.data import file_sample, per_group_sample, stratified_sample
from app.records import read_records

STAGE1_LIMIT = 9000
DEV_IDS = Path(__file__).resolve().parents[2] / "data" / "banking77-dev.ids"

Records = list[dict[str, Any]]


def derived_files(b77: Records, natcs: Records, dev_ids: set[str]) -> dict[str, Records]:
    """File name -> records, for stages 3 and 4; no BANKING77 dev record in any of them."""
    stage1 = file_sample(b77, STAGE1_LIMIT, seed=0, index=0)
    seen = {r["external_id"] for r in stage1}
    if not dev_ids.isdisjoint(seen):
        raise ValueError("stage 1's sample holds BANKING77 dev records")
    excluded = seen | dev_ids
    fresh = {r["external_id"] for r in b77 if r["external_id"] not in excluded}
    even = per_group_sample(
        stage1, 12, random.Random("stage4"), lambda r: r["source_labels"]["category"]
    )
    stage4 = fresh | {r["external_id"] for r in even}
    return {
        "b77-replay.jsonl": stratified_sample(stage1, 300, random.Random("replay")),
        "b77-stage4.jsonl": [r for r in b77 if r["external_id"] in stage4],
        "natcs-300.jsonl": file_sample(natcs, 300, seed=0, index=4),  # stage 3's NatCS file
    }


def main(b77_path: str, natcs_path: str, out: str) -> None:
    dev_ids = set(DEV_IDS.read_text(encoding="utf-8").split())
    files = derived_files(read_records(Path(b77_path)), read_records(Path(natcs_path)), dev_ids)
    for name, records in files.items():
        with open(Path(out) / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        print(f"{name}: {len(records)} records")


if __name__ == "__main__":
    main(*sys.argv[1:])
