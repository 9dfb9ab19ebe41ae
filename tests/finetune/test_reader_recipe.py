"""The shipped reader's training files (app/finetune/reader_recipe.py): each call of the
training industries in its list as written, in the bilingual list and in the default list, with
callx's train calls sampled; with --more-lists two more lists of each, with --more-calls eight
more industries; no held-out call in any; the lists named as the repository names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.finetune.reader_recipe import (
    CALLX_SAMPLE,
    ROOT,
    dev_list_files,
    main,
    more_call_industries,
    reader_files,
)
from app.finetune.world_recipe import DEV_INDUSTRIES, train_industries
from schemas.taxonomy import load_taxonomy


def test_every_call_is_labelled_in_the_list_it_goes_with_and_none_is_held_out() -> None:
    industries = train_industries()
    files = reader_files(industries)
    assert len(files) == 3 * len(industries) + 1
    _assert_in_their_lists_and_none_held_out(files)
    _assert_in_their_lists_and_none_held_out(
        reader_files(industries, more_lists=True, more_calls=True)
    )
    # A written list and its bilingual one label the same calls with the same codes.
    written, _ = files["automotive-written.jsonl"]
    bilingual, where = files["automotive-bilingual.jsonl"]
    assert written == bilingual and where == "data/world/bilingual/automotive.yaml"


def _assert_in_their_lists_and_none_held_out(files: dict[str, tuple[list[dict], str]]) -> None:
    ids = set()
    for name, (records, taxonomy) in files.items():
        codes = load_taxonomy(taxonomy).codes if taxonomy != "default" else None
        if codes is not None:
            assert not Path(taxonomy).is_absolute()  # the card records it
            assert (ROOT / taxonomy).is_file()
            assert {r["reason"] for r in records} <= set(codes)
        ids |= {r["external_id"] for r in records}
        assert len(records) == (CALLX_SAMPLE if name == "calls-sample.jsonl" else 16)
        assert "heldout_lists" not in taxonomy and "own_taxonomy" not in taxonomy
    assert not any(i.startswith(f"w-{d}-") for i in ids for d in DEV_INDUSTRIES)
    assert not any(i.startswith("o-") for i in ids)  # the customers' own lists


def test_a_fold_holds_its_industries_only_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    main(str(tmp_path), "automotive", "hospitality")
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert names == [
        "automotive-bilingual.jsonl", "automotive-default.jsonl", "automotive-written.jsonl",
        "calls-sample.jsonl", "hospitality-bilingual.jsonl", "hospitality-default.jsonl",
        "hospitality-written.jsonl",
    ]  # fmt: skip
    assert (tmp_path / "hospitality-written.taxonomy").read_text() == (
        "data/world/taxonomies/hospitality.yaml\n"
    )
    refused = subprocess.run(
        [sys.executable, "-m", "app.finetune.reader_recipe", str(tmp_path / "x"), "travel_air"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 2 and not (tmp_path / "x").exists()
    assert refused.stderr.startswith("reader_recipe: not a training industry: travel_air")
    # A flag where the output folder goes is refused, not taken for a folder.
    flag_first = subprocess.run(
        [sys.executable, "-m", "app.finetune.reader_recipe", "--more-calls"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert flag_first.returncode == 2 and list(tmp_path.glob("-*")) == []
    assert "required: output_dir" in flag_first.stderr


def test_more_lists_add_two_lists_of_each_industry_and_the_dev_lists_are_never_trained_on() -> None:
    industries = train_industries()
    files = reader_files(industries, more_lists=True)
    assert len(files) == 5 * len(industries) + 1
    for industry in industries:
        coarse, where = files[f"{industry}-coarse.jsonl"]
        fine, _ = files[f"{industry}-fine.jsonl"]
        assert where == f"data/world/more_lists/{industry}-coarse.yaml"
        # Two other companies' lists of the same trade: other codes, the same calls.
        coarse_codes, fine_codes = (
            set(load_taxonomy(ROOT / f"data/world/more_lists/{industry}-{k}.yaml").codes)
            for k in ("coarse", "fine")
        )
        assert not coarse_codes & fine_codes
        assert {r["reason"] for r in coarse} <= coarse_codes
        assert {r["reason"] for r in fine} <= fine_codes
        assert [r["external_id"] for r in coarse] == [r["external_id"] for r in fine]
    trained = {taxonomy for _, taxonomy in files.values()}
    dev = dev_list_files()
    assert sorted(dev) == sorted(f"{d}.jsonl" for d in DEV_INDUSTRIES)
    for records, taxonomy in dev.values():
        assert taxonomy.startswith("data/world/heldout_lists/") and taxonomy not in trained
        assert {r["reason"] for r in records} <= set(load_taxonomy(ROOT / taxonomy).codes)
        assert len(records) == 20


def test_more_calls_add_eight_industries_each_in_its_own_list_and_the_default_one() -> None:
    extra = more_call_industries()
    assert len(extra) == 8
    files = reader_files(train_industries(), more_calls=True)
    assert len(files) == 3 * len(train_industries()) + 2 * len(extra) + 1
    default_codes = set(load_taxonomy().codes)
    for industry in extra:
        own, where = files[f"{industry}-own.jsonl"]
        calls, taxonomy = files[f"{industry}-default.jsonl"]
        assert where == f"data/world/more_calls/{industry}.yaml" and taxonomy == "default"
        codes = set(load_taxonomy(ROOT / where).codes)
        assert not codes & default_codes  # a company's own codes
        assert {r["reason"] for r in own} == codes  # every reason of the list is used
        # Every default reason, in French and in English.
        for language in ("fr", "en"):
            assert {r["reason"] for r in calls if r["language"] == language} == default_codes
        assert [r["external_id"] for r in own] == [r["external_id"] for r in calls]
        assert len(calls) == 16


def test_the_command_adds_the_more_calls_to_a_fold(tmp_path: Path) -> None:
    main(str(tmp_path), "automotive", "--more-calls")
    names = {p.name for p in tmp_path.glob("*.jsonl")}
    assert {
        "automotive-written.jsonl",
        "video_games-own.jsonl",
        "video_games-default.jsonl",
    } <= names
    assert "hospitality-written.jsonl" not in names
    assert (tmp_path / "video_games-own.taxonomy").read_text() == (
        "data/world/more_calls/video_games.yaml\n"
    )


def test_more_calls_refuse_an_industry_held_out_or_already_trained_on(tmp_path: Path) -> None:
    (tmp_path / "taxonomies").mkdir()
    (tmp_path / "taxonomies" / "automotive.yaml").write_text("")
    (tmp_path / "more_calls").mkdir()
    for name in ("car_rental", "automotive", "airline", "meal_delivery"):
        (tmp_path / "more_calls" / f"{name}.yaml").write_text("")
    (tmp_path / "own_taxonomy").mkdir()
    (tmp_path / "own_taxonomy" / "airline.yaml").write_text("")
    with pytest.raises(ValueError, match=r"\['airline', 'automotive', 'car_rental'\]"):
        more_call_industries(tmp_path)
    for path in (tmp_path / "more_calls").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match="no industry in"):
        more_call_industries(tmp_path)
