"""The training files of the shipped reader (`callx-reader.gguf`; reader.sh).

A reader is trained to say, after a call, the definition of its reason, the text the backend
scores when it reads a list the answering adapter was not trained on (`callx finetune
--reads-definitions`). Each call of `data/world/`'s training industries is given three times:
in its industry's list as written (`taxonomies/`), in the same list with its borders spelt out,
in English and French (`bilingual/`), and in the default list; with 64 of callx's train calls
(seeded) in the default list. The eight held-out industries, `data/world/own_taxonomy/` and
every test split are in no file.

    python -m app.finetune.reader_recipe OUTPUT_DIR [INDUSTRY ...]   # default: all twelve

Each `X.jsonl` goes with the taxonomy its `.taxonomy` file names (`--train X.jsonl@TAXONOMY`).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from app.finetune.world_recipe import WORLD, Records, own_labelled, train_industries
from app.records import read_records

ROOT = WORLD.parents[1]
CALLS = ROOT / "data" / "calls" / "train.jsonl"
CALLX_SAMPLE = 64


def reader_files(industries: list[str], world: Path = WORLD) -> dict[str, tuple[Records, str]]:
    """File name -> (records, the taxonomy they are labelled in: a path or a built-in name)."""
    known = train_industries(world)
    unknown = sorted(set(industries) - set(known))
    if unknown:
        raise ValueError(
            f"not a training industry: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    files: dict[str, tuple[Records, str]] = {}
    # The lists as the repository names them (the reader's card records them).
    where = world.relative_to(ROOT) if world.is_relative_to(ROOT) else world
    for industry in industries:
        calls = read_records(world / f"{industry}.jsonl")
        labels_path = world / "taxonomies" / f"{industry}.labels.jsonl"
        labels = [json.loads(line) for line in labels_path.read_text("utf-8").splitlines()]
        own = own_labelled(calls, labels)
        files[f"{industry}-written.jsonl"] = (own, str(where / "taxonomies" / f"{industry}.yaml"))
        files[f"{industry}-bilingual.jsonl"] = (own, str(where / "bilingual" / f"{industry}.yaml"))
        files[f"{industry}-default.jsonl"] = (calls, "default")
    sample = random.Random("reader").sample(read_records(CALLS), CALLX_SAMPLE)
    files["calls-sample.jsonl"] = (sample, "default")
    return files


def main(out: str, *industries: str) -> None:
    try:
        files = reader_files(list(industries) or train_industries())
    except ValueError as exc:
        print(f"reader_recipe: {exc}", file=sys.stderr)
        sys.exit(2)
    for name, (records, taxonomy) in files.items():
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.with_suffix(".taxonomy").write_text(taxonomy + "\n", "utf-8")
        print(f"{name}: {len(records)} records, taxonomy {taxonomy}")


if __name__ == "__main__":
    main(*sys.argv[1:])
