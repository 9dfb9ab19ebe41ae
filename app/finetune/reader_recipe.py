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

import argparse
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
    """The industries of `more_calls/`; ValueError where there is none, or where one is held
    out (a dev industry or a customer's of `own_taxonomy/`) or already among the twelve."""
    names = sorted(p.stem for p in (world / "more_calls").glob("*.yaml"))
    if not names:
        raise ValueError(f"no industry in {world / 'more_calls'}")
    customers = {p.stem for p in (world / "own_taxonomy").glob("*.yaml")}
    clash = set(names) & {*DEV_INDUSTRIES, *customers, *train_industries(world)}
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


def main(*argv: str) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.finetune.reader_recipe",
        allow_abbrev=False,
        description="Write a reader's training files (or, with --dev-lists, the readers' dev set).",
    )
    parser.add_argument("output_dir")
    parser.add_argument("industries", nargs="*", metavar="INDUSTRY", help="default: the twelve")
    parser.add_argument("--more-lists", action="store_true", help="each call in 2 more lists")
    parser.add_argument("--more-calls", action="store_true", help="more_calls/'s industries too")
    parser.add_argument("--dev-lists", action="store_true", help="write the dev set instead")
    args = parser.parse_intermixed_args(argv)
    if args.dev_lists:
        _write(args.output_dir, dev_list_files())
        return
    try:
        files = reader_files(
            args.industries or train_industries(),
            more_lists=args.more_lists,
            more_calls=args.more_calls,
        )
    except ValueError as exc:
        print(f"reader_recipe: {exc}", file=sys.stderr)
        sys.exit(2)
    _write(args.output_dir, files)


def _write(out: str, files: dict[str, tuple[Records, str]]) -> None:
    for name, (records, taxonomy) in files.items():
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.with_suffix(".taxonomy").write_text(taxonomy + "\n", "utf-8")
        print(f"{name}: {len(records)} records, taxonomy {taxonomy}")
    print(f"{sum(len(r) for r, _ in files.values())} records in {len(files)} files: {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
