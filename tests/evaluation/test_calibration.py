"""Calibration: the error and coverage figures `callx eval` reports, the temperature
`callx calibrate` fits, and how the card records it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.evaluation.calibration import Evaluated, calibrate_card, fit_temperature
from app.evaluation.metrics import accuracy_at_coverage, calibration_error, product_in_call
from app.evaluation.runner import BackendResult, Prediction
from app.llm.calibration import (
    card_calibration,
    known_trained_taxonomies,
    measured_taxonomies,
    scaled,
)
from app.llm.llamacpp import prior_applies, reason_scoring


def test_calibration_error_is_the_weighted_gap_between_confidence_and_accuracy() -> None:
    # Bin 0.9-1.0: 4 calls at 0.95, 2 right (gap 0.45); bin 0.5-0.6: 2 calls at 0.5, 1 right.
    confidences = [0.95, 0.95, 0.95, 0.95, 0.5, 0.5]
    right = [True, True, False, False, True, False]
    assert calibration_error(confidences, right) == pytest.approx(4 / 6 * 0.45)
    assert calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)
    assert calibration_error([], []) == 0.0


def test_accuracy_at_coverage_keeps_the_most_confident_calls() -> None:
    confidences = [0.99, 0.2, 0.9, 0.5, 0.8]
    right = [True, False, True, False, False]
    assert accuracy_at_coverage(confidences, right, 0.4) == 1.0  # 0.99 and 0.9
    assert accuracy_at_coverage(confidences, right, 0.6) == pytest.approx(2 / 3)
    assert accuracy_at_coverage(confidences, right, 1.0) == pytest.approx(2 / 5)
    assert accuracy_at_coverage([], [], 0.8) is None


def test_a_product_is_in_the_call_only_when_every_word_of_it_is() -> None:
    text = "Agent: Bonjour. Client: ma Freebox Révolution ne s'allume plus depuis hier."
    assert product_in_call("Freebox Revolution", text)  # accents and case folded
    assert product_in_call("la Freebox", text)  # words of 1-2 letters are not checked
    assert not product_in_call("Freebox Delta", text)
    assert not product_in_call("box", text)  # a whole word, not a piece of one


def test_the_fitted_temperature_recovers_the_one_that_made_the_data() -> None:
    # Calls whose real chance of being right is p, reported overconfident: scaled(p, 1/3).
    rng = random.Random(0)
    true_p = [rng.uniform(0.3, 0.999) for _ in range(4000)]
    right = [rng.random() < p for p in true_p]
    reported = [scaled(p, 1 / 3) for p in true_p]
    temperature = fit_temperature(reported, right)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert calibration_error([scaled(c, temperature) for c in reported], right) < 0.02
    assert calibration_error(reported, right) > 0.1
    # Scaling keeps the order: the accuracy of the most confident calls is unchanged.
    after = [scaled(c, temperature) for c in reported]
    assert accuracy_at_coverage(after, right, 0.8) == accuracy_at_coverage(reported, right, 0.8)


def test_no_temperature_is_fitted_on_calls_all_right() -> None:
    with pytest.raises(ValueError, match="all right or all wrong"):
        fit_temperature([0.9, 0.8], [True, True])
    with pytest.raises(ValueError, match="no call"):
        fit_temperature([], [])


def _result(
    model: str,
    confidences: list[float],
    right: list[bool],
    calibrated: bool,
    prior_corrected: bool | None = None,
    definitions_read: bool | None = None,
) -> BackendResult:
    predictions = [
        Prediction(
            id=str(i),
            reason="billing" if ok else "other",
            product=None,
            expected_reason="billing",
            expected_product=None,
            status="succeeded",
            confidence=c,
            latency_ms=1,
            prompt_tokens=1,
            completion_tokens=1,
            error=None,
            error_kind=None,
            confidence_calibrated=calibrated,
        )
        for i, (c, ok) in enumerate(zip(confidences, right, strict=True))
    ]
    n = len(predictions)
    return BackendResult(
        label="candidate", backend="llamacpp", model=model, n=n,
        reason_accuracy=sum(right) / n, reason_accuracy_ci95=(0.0, 1.0), reason_macro_f1=0.0,
        product_match_rate=1.0, invalid_rate=0.0, failed=0, latency_p50_ms=1.0,
        latency_p95_ms=1.0, prompt_tokens=n, completion_tokens=n, cost=0.0, per_class={},
        confusion=[], prior_corrected=prior_corrected, definitions_read=definitions_read,
        predictions=predictions,
    )  # fmt: skip


def test_the_card_records_the_temperature_and_the_taxonomies_it_covers() -> None:
    rng = random.Random(1)
    true_p = [rng.uniform(0.4, 0.999) for _ in range(600)]
    right = [rng.random() < p for p in true_p]
    raw = [scaled(p, 0.5) for p in true_p]
    card = {
        "adapter": "a.gguf",
        "training_files": [{"taxonomy_version": "default-1"}],
        "evaluations": [{"dataset": "dev.jsonl", "taxonomy_version": "default-1", "n": 1}],
    }
    model = "base.gguf+a.gguf"
    dev = Evaluated(
        "dev.json",
        _result(model, raw, right, False),
        {"dataset": "dev.jsonl", "taxonomy_version": "default-1"},
    )
    own = Evaluated("own.json", _result(model, raw[:50], right[:50], False), {"dataset": "own.jsonl", "taxonomy_version": "airline-1"})  # fmt: skip

    updated = calibrate_card(card, "a.gguf", [dev], [own])

    calibration = card_calibration(updated)
    assert calibration is not None and calibration.taxonomies == {"default-1"}
    temperature = calibration.temperature("default-1")
    assert temperature == pytest.approx(2.0, rel=0.15)
    section = updated["calibration"]["taxonomies"]["default-1"]
    assert section["calibration_error"] < section["calibration_error_raw"]
    # The evaluation of dev.jsonl is replaced, not repeated; the measured one carries no
    # calibrated figure: the temperature was not fitted on its taxonomy.
    datasets = [e["dataset"] for e in updated["evaluations"]]
    assert datasets == ["dev.jsonl", "own.jsonl"]
    assert "calibration_error" not in updated["evaluations"][1]
    assert measured_taxonomies(updated) == {"default-1", "airline-1"}

    # Refitted on confidences already calibrated by that temperature: the same temperature
    # (the stored one is undone first), not one compounded on top of it.
    already = [calibration.scale(c, "default-1") for c in raw]
    again = Evaluated("dev.json", _result(model, already, right, True), dev.meta)
    refitted = card_calibration(calibrate_card(updated, "a.gguf", [again], []))
    assert refitted is not None
    assert refitted.temperature("default-1") == pytest.approx(temperature, rel=0.02)

    # Another taxonomy fitted on its own dev set: its own temperature, the first one kept.
    sure = [scaled(p, 1.0) for p in true_p]
    other = Evaluated("b77.json", _result(model, sure, right, False), {"dataset": "b77.jsonl", "taxonomy_version": "intents8-1"})  # fmt: skip
    both = card_calibration(calibrate_card(updated, "a.gguf", [other], []))
    assert both is not None and both.taxonomies == {"default-1", "intents8-1"}
    assert both.temperature("default-1") == temperature
    assert both.temperature("intents8-1") == pytest.approx(1.0, rel=0.15)


def test_a_card_of_the_first_format_gives_each_taxonomy_its_temperature() -> None:
    card = {"calibration": {"temperature": 3.0, "taxonomies": ["a-1", "b-1"]}}
    calibration = card_calibration(card)
    assert calibration is not None
    assert calibration.temperature("a-1") == calibration.temperature("b-1") == 3.0
    assert calibration.scale(0.9, "c-1") == 0.9  # no temperature for it: unchanged


def test_a_temperature_applies_only_to_scores_of_the_kind_it_was_fitted_on() -> None:
    rng = random.Random(2)
    true_p = [rng.uniform(0.3, 0.99) for _ in range(300)]
    right = [rng.random() < p for p in true_p]
    model, meta = "base.gguf+a.gguf", {"dataset": "own.jsonl", "taxonomy_version": "own-1"}
    corrected = Evaluated("own.json", _result(model, [scaled(p, 0.5) for p in true_p], right, False, True), meta)  # fmt: skip
    card = calibrate_card({"adapter": "a.gguf"}, "a.gguf", [corrected], [])
    assert card["calibration"]["taxonomies"]["own-1"]["prior_corrected"] is True
    assert card["evaluations"][0]["prior_corrected"] is True
    calibration = card_calibration(card)
    assert calibration is not None
    # Fitted on scores with the prior taken out: not for raw ones (nor the reverse).
    assert calibration.applies_to("own-1", prior_corrected=True)
    assert not calibration.applies_to("own-1", prior_corrected=False)
    raw_fit = card_calibration(
        calibrate_card(
            {"adapter": "a.gguf"},
            "a.gguf",
            [
                Evaluated(
                    "raw.json",
                    _result(model, [0.9] * 3 + [0.5] * 3, [True] * 4 + [False] * 2, False, False),
                    meta,
                )
            ],
            [],
        )  # fmt: skip
    )
    assert raw_fit is not None and raw_fit.applies_to("own-1")
    assert not raw_fit.applies_to("own-1", prior_corrected=True)
    # A card written before the field: its temperatures were fitted on raw scores.
    old = card_calibration({"calibration": {"taxonomies": {"own-1": {"temperature": 2.0}}}})
    assert old is not None and old.applies_to("own-1") and not old.applies_to("own-1", True)


def test_a_temperature_fitted_with_the_definitions_read_applies_only_to_such_scores() -> None:
    rng = random.Random(3)
    true_p = [rng.uniform(0.3, 0.99) for _ in range(300)]
    right = [rng.random() < p for p in true_p]
    model, meta = "base.gguf+a.gguf", {"dataset": "own.jsonl", "taxonomy_version": "own-1"}
    read = Evaluated("read.json", _result(model, [scaled(p, 0.5) for p in true_p], right, False, True, True), meta)  # fmt: skip
    card = calibrate_card({"adapter": "a.gguf"}, "a.gguf", [read], [])
    assert card["calibration"]["taxonomies"]["own-1"]["definitions_read"] is True
    assert card["evaluations"][0]["definitions_read"] is True
    calibration = card_calibration(card)
    assert calibration is not None
    assert calibration.applies_to("own-1", prior_corrected=True, definitions_read=True)
    # Not to the codes' scores alone, with or without the prior.
    assert not calibration.applies_to("own-1", prior_corrected=True)
    assert not calibration.applies_to("own-1")
    # Nor fitted together with results of another kind.
    codes = Evaluated("codes.json", _result(model, [0.9, 0.6], [True, False], False, True), meta)  # fmt: skip
    with pytest.raises(ValueError, match=r"read\.json \(prior taken out, definitions read\), codes\.json \(prior taken out\)"):  # fmt: skip
        calibrate_card({"adapter": "a.gguf"}, "a.gguf", [read, codes], [])


def test_results_with_and_without_the_prior_taken_out_are_not_fitted_together() -> None:
    model, meta = "base.gguf+a.gguf", {"dataset": "own.jsonl", "taxonomy_version": "own-1"}
    one = Evaluated("corrected.json", _result(model, [0.9, 0.6], [True, False], False, True), meta)  # fmt: skip
    two = Evaluated("raw.json", _result(model, [0.9, 0.6], [True, False], False, False), meta)  # fmt: skip
    with pytest.raises(ValueError, match=r"own-1: the results mix .*corrected\.json \(prior taken out\), raw\.json \(raw\)"):  # fmt: skip
        calibrate_card({"adapter": "a.gguf"}, "a.gguf", [one, two], [])


def test_what_an_adapter_was_trained_on_is_known_only_from_complete_cards() -> None:
    stage = {"training_files": [{"taxonomy_version": "default-1"}]}
    later = {"training_files": [{"taxonomy_version": "own-1"}], "init_adapter": {"card": stage}}
    assert known_trained_taxonomies(later) == {"default-1", "own-1"}
    blend = {"blend_of": [{"card": later}, {"card": {"training_files": [{"taxonomy_version": "b-1"}]}}]}  # fmt: skip
    assert known_trained_taxonomies(blend) == {"default-1", "own-1", "b-1"}
    # No card, no list of training files, a file without its taxonomy, a parent without a card.
    assert known_trained_taxonomies(None) is None
    assert known_trained_taxonomies({"adapter": "uploaded.gguf"}) is None
    assert known_trained_taxonomies({"training_files": [{"file": "x.jsonl"}]}) is None
    assert known_trained_taxonomies({**stage, "init_adapter": {"card": None}}) is None
    assert known_trained_taxonomies({"blend_of": [{"card": later}, {"card": None}]}) is None


def test_where_the_prior_is_taken_out() -> None:
    trained = {"default-1"}
    assert prior_applies("untrained", trained, "own-1")
    assert not prior_applies("untrained", trained, "default-1")
    assert not prior_applies("untrained", None, "own-1")  # unknown: left as it is
    assert prior_applies("all", trained, "default-1") and prior_applies("all", None, "own-1")
    assert not prior_applies("off", trained, "own-1")


def test_results_of_another_adapter_are_refused() -> None:
    other = Evaluated("x.json", _result("base.gguf+b.gguf", [0.9, 0.6], [True, False], False), {"dataset": "d", "taxonomy_version": "t"})  # fmt: skip
    with pytest.raises(ValueError, match=r"x\.json: results of base\.gguf\+b\.gguf"):
        calibrate_card({"adapter": "a.gguf"}, "a.gguf", [other], [])


def test_the_report_plots_coverage_against_accuracy_and_tabulates_thresholds(
    tmp_path: Path,
) -> None:
    from app.evaluation.report import threshold_rows, write_report

    # 10 calls: the 6 most confident right, then 2 wrong, 1 right, 1 wrong.
    confidences = [0.99, 0.98, 0.97, 0.96, 0.92, 0.91, 0.88, 0.75, 0.6, 0.3]
    right = [True] * 6 + [False, False, True, False]
    result = _result("base.gguf+a.gguf", confidences, right, True)
    result.calibration_error = 0.1
    rows = threshold_rows([result])
    header, values = rows[0], dict(zip(rows[0], rows[1], strict=True))
    assert header[0] == "configuration" and values["configuration"] == "candidate"
    assert values["≥ 0.9"] == "60%: 100.0%"
    assert values["≥ 0.85"] == "70%: 85.7%"
    assert values["≥ 0.5"] == "90%: 77.8%"
    assert values["≥ 0.99"] == "10%: 100.0%"
    report = write_report(tmp_path, [result], ["billing", "other"], {"dataset": "d"})
    markdown = report.read_text()
    assert "![coverage-accuracy curve](coverage.svg)" in markdown and "| ≥ 0.9 |" in markdown
    svg = (tmp_path / "coverage.svg").read_text()
    assert svg.count("<polyline") == 1 and "candidate" in svg


def test_where_the_definitions_are_read_and_the_codes_prior_then_left_out() -> None:
    trained = {"default-1"}
    # (prior taken out, definitions read): on a list the adapter never learnt, the
    # definitions alone choose, so the codes' prior is not used.
    assert reason_scoring("untrained", "untrained", trained, "own-1") == (False, True)
    assert reason_scoring("untrained", "off", trained, "own-1") == (True, False)
    assert reason_scoring("untrained", "untrained", trained, "default-1") == (False, False)
    assert reason_scoring("off", "all", trained, "default-1") == (False, True)
    assert reason_scoring("untrained", "untrained", None, "own-1") == (False, False)
