"""The training files of the shipped reader (`callx-reader.gguf`; reader.sh).

A reader is trained to say, after a call, the definition of its reason, the text the backend
scores when it reads a list the answering adapter was not trained on (`callx finetune
--reads-definitions`). Each call of `data/world/`'s training industries is given three times:
in its industry's list as written (`taxonomies/`), in the same list with its borders spelt out,
in English and French (`bilingual/`), and in the default list; with 64 of callx's train calls
(seeded) in the default list. With `--more-lists`, each call also in the two other lists of its
industry (`more_lists/`: a coarse one and a fine one, in English and French). With
`--more-calls`, the calls of eight more industries (`more_calls/`, written apart), each in its
industry's own list and in the default list. The eight held-out industries (and their lists,
`heldout_lists/`), `data/world/own_taxonomy/` and every test split are in no file.

    python -m app.finetune.reader_recipe OUTPUT_DIR [--more-lists] [--more-calls] [INDUSTRY ...]
    python -m app.finetune.reader_recipe --dev-lists OUTPUT_DIR

`--dev-lists` writes the readers' dev set instead: each held-out industry's calls labelled in
that industry's list (`heldout_lists/<industry>.yaml`), for `callx eval --taxonomy` with it.

Each `X.jsonl` goes with the taxonomy its `.taxonomy` file names (`--train X.jsonl@TAXONOMY`).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from app.finetune.world_recipe import (
    DEV_INDUSTRIES,
    WORLD,
    Records,
    own_labelled,
    train_industries,
)
from app.records import read_records

ROOT = WORLD.parents[1]
CALLS = ROOT / "data" / "calls" / "train.jsonl"
CALLX_SAMPLE = 64
MORE_LISTS = ("coarse", "fine")  # more_lists/<industry>-<kind>.yaml
CUSTOMERS = ("airline", "clinic_network", "property_management")  # own_taxonomy/: never trained on


def reader_files(
    industries: list[str],
    world: Path = WORLD,
    more_lists: bool = False,
    more_calls: bool = False,
) -> dict[str, tuple[Records, str]]:
    """File name -> (records, the taxonomy they are labelled in: a path or a built-in name)."""
    known = train_industries(world)
    unknown = sorted(set(industries) - set(known))
    if unknown:
        raise ValueError(
            f"not a training industry: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    files: dict[str, tuple[Records, str]] = {}
    where = _named(world)
    for industry in industries:
        calls = read_records(world / f"{industry}.jsonl")
        own = _labelled(calls, world / "taxonomies" / f"{industry}.labels.jsonl")
        files[f"{industry}-written.jsonl"] = (own, str(where / "taxonomies" / f"{industry}.yaml"))
        files[f"{industry}-bilingual.jsonl"] = (own, str(where / "bilingual" / f"{industry}.yaml"))
        files[f"{industry}-default.jsonl"] = (calls, "default")
        for kind in MORE_LISTS if more_lists else ():
            name = f"{industry}-{kind}"
            files[f"{name}.jsonl"] = (
                _labelled(calls, world / "more_lists" / f"{name}.labels.jsonl"),
                str(where / "more_lists" / f"{name}.yaml"),
            )
    for industry in more_call_industries(world) if more_calls else ():
        calls = read_records(world / "more_calls" / f"{industry}.jsonl")
        own = _labelled(calls, world / "more_calls" / f"{industry}.labels.jsonl")
        files[f"{industry}-own.jsonl"] = (own, str(where / "more_calls" / f"{industry}.yaml"))
        files[f"{industry}-default.jsonl"] = (calls, "default")
    sample = random.Random("reader").sample(read_records(CALLS), CALLX_SAMPLE)
    files["calls-sample.jsonl"] = (sample, "default")
    return files


def more_call_industries(world: Path = WORLD) -> list[str]:
    """The industries of `more_calls/`: none held out, none among the twelve."""
    names = sorted(p.name.removesuffix(".yaml") for p in (world / "more_calls").glob("*.yaml"))
    clash = set(names) & {*DEV_INDUSTRIES, *CUSTOMERS, *train_industries(world)}
    if clash:
        raise ValueError(f"more_calls/ holds industries that are elsewhere: {sorted(clash)}")
    return names


def dev_list_files(world: Path = WORLD) -> dict[str, tuple[Records, str]]:
    """Each held-out industry's calls in its own held-out list (never trained on)."""
    files: dict[str, tuple[Records, str]] = {}
    where = _named(world)
    for industry in DEV_INDUSTRIES:
        calls = read_records(world / f"{industry}.jsonl")
        files[f"{industry}.jsonl"] = (
            _labelled(calls, world / "heldout_lists" / f"{industry}.labels.jsonl"),
            str(where / "heldout_lists" / f"{industry}.yaml"),
        )
    return files


def _named(world: Path) -> Path:
    """The lists' folder as the repository names it (a reader's card records the lists)."""
    return world.relative_to(ROOT) if world.is_relative_to(ROOT) else world


def _labelled(calls: Records, labels_path: Path) -> Records:
    """The calls with their reason in a list of their industry (`<list>.labels.jsonl`)."""
    labels = [json.loads(line) for line in labels_path.read_text("utf-8").splitlines()]
    return own_labelled(calls, labels)


def main(out: str, *args: str) -> None:
    if out == "--dev-lists":
        _write(args[0], dev_list_files())
        return
    flags = {"--more-lists", "--more-calls"}
    industries = [a for a in args if a not in flags]
    try:
        files = reader_files(
            industries or train_industries(),
            more_lists="--more-lists" in args,
            more_calls="--more-calls" in args,
        )
    except ValueError as exc:
        print(f"reader_recipe: {exc}", file=sys.stderr)
        sys.exit(2)
    _write(out, files)


def _write(out: str, files: dict[str, tuple[Records, str]]) -> None:
    for name, (records, taxonomy) in files.items():
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.with_suffix(".taxonomy").write_text(taxonomy + "\n", "utf-8")
        print(f"{name}: {len(records)} records, taxonomy {taxonomy}")


if __name__ == "__main__":
    main(*sys.argv[1:])
