"""Paired comparison of two configurations scored on the same records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.evaluation.metrics import wilson_interval
from app.evaluation.paired import compare, compare_all
from app.evaluation.report import comparison_rows, load_results, write_json
from support.factories import scored_result as result

GOLD = ["a"] * 10


def test_compare_counts_the_records_record_by_record() -> None:
    local = result("local", ["a"] * 8 + ["b", None], GOLD)
    api = result("api", ["a"] * 2 + ["b"] * 6 + ["a", "a"], GOLD)
    c = compare(local, api)
    assert (c.reference, c.other, c.n) == ("local", "api", 10)
    # both right: r0-r1; only local: r2-r7; only api: r8-r9; both wrong: none.
    assert (c.both_right, c.only_reference_right, c.only_other_right, c.both_wrong) == (2, 6, 2, 0)
    assert c.p_value == pytest.approx(0.2890625)  # 2 * (1 + 8 + 28) / 256
    assert not c.significant
    assert comparison_rows([c])[1][-1] == "not separable"


def test_a_clear_difference_is_significant_and_named() -> None:
    gold = ["a"] * 40
    good = result("fine-tuned", ["a"] * 38 + ["b"] * 2, gold)
    weak = result("base", ["a"] * 20 + ["b"] * 20, gold)
    (c,) = compare_all([weak, good])
    assert (c.only_reference_right, c.only_other_right) == (0, 18)
    assert c.significant and c.p_value < 1e-4
    assert comparison_rows([c])[1][-1] == "fine-tuned better (p < 0.05)"


def test_every_pair_in_order_and_only_on_the_same_records() -> None:
    a, b, c = (result(x, ["a"] * 10, GOLD) for x in "abc")
    assert [(p.reference, p.other) for p in compare_all([a, b, c])] == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    assert compare_all([a]) == []
    shorter = result("short", ["a"] * 9, ["a"] * 9)
    with pytest.raises(ValueError, match="same records"):
        compare(a, shorter)


def test_results_written_as_json_read_back_the_same(tmp_path: Path) -> None:
    local = result("local", ["a"] * 8 + ["b", None], GOLD)
    path = tmp_path / "results.json"
    write_json(path, [local], {"dataset": "calls.jsonl"})
    (loaded,), meta = load_results(path)
    assert loaded == local and meta["dataset"] == "calls.jsonl"
    # A file written before the interval was reported gets it from its predictions.
    data = json.loads(path.read_text())
    del data["results"][0]["reason_accuracy_ci95"]
    path.write_text(json.dumps(data))
    (old,), _ = load_results(path)
    assert old.reason_accuracy_ci95 == pytest.approx(wilson_interval(8, 10))
    path.write_text('{"results": [{"label": "x"}]}')
    with pytest.raises(ValueError, match="not a `callx eval --json` results file"):
        load_results(path)
