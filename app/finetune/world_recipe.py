"""The derived training files of the default adapter's stage 5 (issue 19; stage5.sh).

Stage 5 continues stage 4 on `data/world/`'s twelve training industries, each call twice: in
the default taxonomy and in its industry's own list (`data/world/taxonomies/`), so that the
model learns to read the definitions it is given rather than two lists. The own lists are given
once more with their reasons in another order (seeded), since a customer's list comes in any
order. The eight held-out industries (`DEV_INDUSTRIES`) and `data/world/own_taxonomy/` are in no
file. Replay keeps what the earlier stages learnt: 150 of stage 3's BANKING77 records and 150 of
its NatCS records (their files come from `app.finetune.default_recipe`).

    python -m app.finetune.world_recipe BANKING77_TRAIN NATCS_DEV OUTPUT_DIR
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import yaml

from app.finetune.data import stratified_sample
from app.finetune.default_recipe import DEV_IDS, derived_files
from app.records import read_records

WORLD = Path(__file__).resolve().parents[2] / "data" / "world"
DEV_INDUSTRIES = (
    "travel_air", "public_services", "health_clinic", "education",
    "real_estate", "logistics_b2b", "telecom_business", "car_rental",
)  # fmt: skip
REPLAY = 150

Records = list[dict[str, Any]]


def train_industries(world: Path = WORLD) -> list[str]:
    """The industries with a taxonomy of their own in `taxonomies/`: the training ones."""
    names = sorted(p.name.removesuffix(".yaml") for p in (world / "taxonomies").glob("*.yaml"))
    held_out = set(names) & set(DEV_INDUSTRIES)
    if held_out:
        raise ValueError(f"held-out industries have a training taxonomy: {sorted(held_out)}")
    return names


def own_labelled(calls: Records, labels: Records) -> Records:
    """The calls with their reason in the industry's own list (every call labelled once)."""
    by_id = {label["id"]: label["reason"] for label in labels}
    if set(by_id) != {c["external_id"] for c in calls}:
        raise ValueError("the own-taxonomy labels do not cover exactly the industry's calls")
    return [{**c, "reason": by_id[c["external_id"]]} for c in calls]


def reordered(taxonomy: dict[str, Any], seed: str) -> dict[str, Any]:
    """The same list, reasons in another (seeded) order, under its own version."""
    reasons = list(taxonomy["reasons"])
    random.Random(seed).shuffle(reasons)
    return {**taxonomy, "version": f"{taxonomy['version']}-{seed}", "reasons": reasons}


def world_files(world: Path = WORLD) -> dict[str, Records | dict[str, Any]]:
    """File name -> records (.jsonl) or taxonomy (.yaml): `own-X.jsonl@own-X.yaml` go together."""
    files: dict[str, Records | dict[str, Any]] = {}
    default: Records = []
    for industry in train_industries(world):
        calls = read_records(world / f"{industry}.jsonl")
        default += calls
        labels_path = world / "taxonomies" / f"{industry}.labels.jsonl"
        labels = [json.loads(line) for line in labels_path.read_text("utf-8").splitlines()]
        own = own_labelled(calls, labels)
        taxonomy = yaml.safe_load((world / "taxonomies" / f"{industry}.yaml").read_text("utf-8"))
        files[f"own-{industry}.jsonl"] = own
        files[f"own-{industry}.yaml"] = taxonomy
        files[f"own-{industry}-r.jsonl"] = own
        files[f"own-{industry}-r.yaml"] = reordered(taxonomy, "r")
    files["world-train.jsonl"] = default
    return files


def main(b77_path: str, natcs_path: str, out: str) -> None:
    dev_ids = set(DEV_IDS.read_text(encoding="utf-8").split())
    earlier = derived_files(read_records(Path(b77_path)), read_records(Path(natcs_path)), dev_ids)
    files = world_files()
    files["b77-replay-150.jsonl"] = stratified_sample(
        earlier["b77-replay.jsonl"], REPLAY, random.Random("stage5")
    )
    files["natcs-150.jsonl"] = stratified_sample(
        earlier["natcs-300.jsonl"], REPLAY, random.Random("stage5")
    )
    for name, content in files.items():
        path = Path(out) / name
        if isinstance(content, dict):
            path.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False), "utf-8")
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in content)
        print(f"{name}: {len(content)} records")


if __name__ == "__main__":
    main(*sys.argv[1:])
