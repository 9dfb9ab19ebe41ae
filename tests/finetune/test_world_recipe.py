"""Stage 5's training files (app/finetune/world_recipe.py) hold the training industries only,
each call in the default taxonomy and in its industry's own list, and no held-out call."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.finetune.world_recipe import (
    DEV_INDUSTRIES,
    WORLD,
    own_labelled,
    reordered,
    train_industries,
    world_files,
)
from schemas.taxonomy import Taxonomy


def test_no_held_out_call_is_in_a_training_file() -> None:
    files = world_files()
    ids = {
        r["external_id"]
        for name, content in files.items()
        if name.endswith(".jsonl")
        for r in content
    }
    assert not any(i.startswith(f"w-{d}-") for i in ids for d in DEV_INDUSTRIES)
    assert not any(i.startswith("o-") for i in ids)  # the own-taxonomy held-out industries
    assert len(files["world-train.jsonl"]) == 16 * len(train_industries())


def test_each_own_file_is_labelled_in_its_own_list_in_both_orders() -> None:
    files = world_files()
    for industry in train_industries():
        taxonomy = Taxonomy.model_validate(files[f"own-{industry}.yaml"])
        shuffled = Taxonomy.model_validate(files[f"own-{industry}-r.yaml"])
        assert set(taxonomy.codes) == set(shuffled.codes) and taxonomy.codes != shuffled.codes
        assert shuffled.version != taxonomy.version
        records = files[f"own-{industry}.jsonl"]
        assert {r["reason"] for r in records} <= set(taxonomy.codes)
        assert len(records) == 16


def test_labels_must_cover_the_industrys_calls_exactly() -> None:
    calls = [{"external_id": "a", "text": "x"}, {"external_id": "b", "text": "y"}]
    with pytest.raises(ValueError, match="cover exactly"):
        own_labelled(calls, [{"id": "a", "reason": "r"}])
    assert (
        own_labelled(calls, [{"id": "a", "reason": "r"}, {"id": "b", "reason": "s"}])[1]["reason"]
        == "s"
    )


def test_a_held_out_industry_with_a_training_taxonomy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taxonomies").mkdir()
    (tmp_path / "taxonomies" / "education.yaml").write_text("version: x\n")
    with pytest.raises(ValueError, match="education"):
        train_industries(tmp_path)
    assert reordered({"version": "v", "reasons": [1, 2, 3]}, "r")["version"] == "v-r"
    assert WORLD.is_dir()
