"""Guards of the promotion gate without a model: a guard's figures from two results on the same
calls (held up to its allowance exactly), the verdict they give, and a guard's file read and
checked when it is given."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from app.registry.gate import Guard, guard_figures
from schemas.taxonomy import load_taxonomy
from support.factories import gate_comparison, scored_result

DEFAULT = load_taxonomy(None)
CALLS = Path("data/calls/dev.jsonl")


def figures(calls: int, lost: int, max_loss: float = 2.0) -> dict[str, object]:
    """The promoted adapter right on every call, the candidate wrong on `lost` of them."""
    gold = ["billing"] * calls
    ours = ["billing"] * (calls - lost) + ["other"] * lost
    guard = replace(Guard.parse(str(CALLS), DEFAULT), max_loss=max_loss)
    return guard_figures(
        guard, scored_result("candidate", list(ours), gold), scored_result("promoted", gold, gold)
    )


def test_a_guard_holds_up_to_its_allowance_exactly() -> None:
    at_the_limit = figures(100, 2)
    assert (at_the_limit["points_lost"], at_the_limit["held"]) == (2.0, True)
    one_call_too_many = figures(49, 1)  # 2.04 points: a guard under 50 calls loses no call
    assert (one_call_too_many["points_lost"], one_call_too_many["held"]) == (2.04, False)
    assert figures(49, 1, max_loss=2.5)["held"]
    assert figures(85, 0, max_loss=0)["held"]
    counted = figures(85, 3)
    assert (counted["only_baseline_right"], counted["only_candidate_right"]) == (3, 0)
    assert counted["calls"] == 85 and counted["p_value"] == 0.25


def test_the_verdict_reads_the_gate_first_then_the_guards() -> None:
    comparison = gate_comparison(0.6, 0.4)
    assert comparison.verdict == "passes"
    assert replace(comparison, guards=(figures(100, 2),)).verdict == "passes"
    assert replace(comparison, guards=(figures(100, 2), figures(100, 3))).verdict == "forgets"
    worse = replace(comparison, reason_accuracy=0.35, guards=(figures(100, 3),))
    assert worse.verdict == "worse"


def test_a_guard_file_is_read_and_checked_when_given(tmp_path: Path) -> None:
    guard = Guard.parse(f"{CALLS}@default", load_taxonomy(Path("data/flywheel/moving.yaml")))
    assert guard.taxonomy.version == DEFAULT.version and len(guard.records) == 61
    assert Guard.parse(str(CALLS), DEFAULT).taxonomy_ref == "configured"
    odd = tmp_path / "calls@2026.jsonl"  # an @ in a file's own name is not a taxonomy
    shutil.copyfile(CALLS, odd)
    assert Guard.parse(str(odd), DEFAULT).dataset == odd
    with pytest.raises(ValueError, match=r"found 'breakdown_defect'.*give the guard its list"):
        Guard.parse("data/intents8/dev.jsonl", DEFAULT)
    (tmp_path / "empty.jsonl").write_text("", "utf-8")
    with pytest.raises(ValueError, match="holds no labelled call"):
        Guard.parse(str(tmp_path / "empty.jsonl"), DEFAULT)
    with pytest.raises(ValueError, match="neither a file nor a built-in name"):
        Guard.parse(f"{CALLS}@nosuch", DEFAULT)
    with pytest.raises(ValueError, match="no such file: nope.jsonl"):
        Guard.parse("nope.jsonl@default", DEFAULT)
