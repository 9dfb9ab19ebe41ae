"""The texts a list's definitions are read as (llamacpp's `read_definitions`): each definition
without its borders, the sentences that name another code of the list."""

from __future__ import annotations

from app.llm.prompts import (
    definitions_to_read,
    instructions,
    partly_defined_frames,
    reading_language,
    without_borders,
)
from schemas.taxonomy import Reason, Taxonomy


def test_a_sentence_that_names_another_code_is_a_border_and_is_left_out() -> None:
    others = ["baggage_damaged", "flight_disruption"]
    assert (
        without_borders(
            "a checked bag that did not arrive. Not a bag that arrived damaged "
            "(baggage_damaged). Covers interim expenses!",
            others,
        )
        == "a checked bag that did not arrive. Covers interim expenses!"
    )
    # Named bare or in a clause, the code still makes its sentence a border.
    assert (
        without_borders(
            "a refund asked. Unlike flight_disruption, the customer chose it? Yes.", others
        )
        == "a refund asked. Yes."
    )
    # A longer code that contains another is not that code; nor is a word that is not a code.
    assert without_borders("Ends. See baggage_damaged_extra.", others) == (
        "Ends. See baggage_damaged_extra."
    )
    assert without_borders("Ends. Not a disruption.", others) == "Ends. Not a disruption."


def test_a_code_that_is_a_plain_word_is_named_only_as_a_reference() -> None:
    # `other` and `delivery` are words too: "or other pet gadget" draws no border.
    others = ["other", "delivery", "billing"]
    text = "a feeder or other gadget failed. Not a late parcel (delivery). Covers delivery fees."
    assert without_borders(text, others) == "a feeder or other gadget failed. Covers delivery fees."
    assert without_borders("a fault. Not a fee (billing, other).", others) == "a fault."
    assert without_borders("a fault. Not a fee (billing or other).", others) == "a fault."
    assert without_borders("a fault. See `other`.", others) == "a fault."
    assert without_borders("a fault. Not [billing].", others) == "a fault."
    # In brackets but not as a code: kept.
    assert without_borders("a fault. Covers gadgets (and other devices).", others) == (
        "a fault. Covers gadgets (and other devices)."
    )


def test_a_full_stop_without_a_capital_after_it_does_not_end_the_sentence() -> None:
    text = "fees, e.g. the change fee. Not a disruption (flight_disruption)."
    assert without_borders(text, ["flight_disruption"]) == "fees, e.g. the change fee."
    assert without_borders("À la carte. Éviter (x).", ["x"]) == "À la carte."


def test_a_definition_that_is_all_borders_is_kept_whole() -> None:
    text = "Not a damaged bag (baggage_damaged). Not a delay (flight_disruption)."
    assert without_borders(text, ["baggage_damaged", "flight_disruption"]) == text


def test_each_code_is_read_without_the_borders_it_draws_with_the_others() -> None:
    taxonomy = Taxonomy.model_validate(
        {
            "version": "t-1",
            "reasons": [
                {"code": "late_bag", "label": "late bag",
                 "definition": "a bag still missing. Not a damaged bag (broken_bag)."},
                {"code": "broken_bag", "label": "broken bag",
                 "definition": "a bag that arrived broken. Covers a late_bag too? No."},
                {"code": "other", "label": "other", "definition": "anything else."},
            ],
        }
    )  # fmt: skip
    assert definitions_to_read(taxonomy) == (
        "a bag still missing.",
        "a bag that arrived broken. No.",
        "anything else.",
    )


def test_a_call_reads_the_definitions_of_its_language_and_the_prompt_shows_the_main_ones() -> None:
    taxonomy = Taxonomy.model_validate(
        {
            "version": "t-2",
            "reasons": [
                {"code": "late_bag", "label": "late bag",
                 "definition": {"en": "a bag still missing. Not a damaged bag (broken_bag).",
                                "fr": "un bagage toujours manquant. Pas un bagage abîmé (broken_bag)."}},
                {"code": "broken_bag", "label": "broken bag", "definition": "a bag that arrived broken."},
            ],
        }
    )  # fmt: skip
    english = ("a bag still missing.", "a bag that arrived broken.")
    # Only one of its reasons is defined in French: French calls read the English ones.
    # (A warning names the reason without: partly_defined_frames.)
    assert reading_language(taxonomy, "fr") is None
    assert definitions_to_read(taxonomy, None) == english
    assert partly_defined_frames(taxonomy) == {"fr": ("broken_bag",)}
    broken = Reason(
        code="broken_bag",
        label="broken bag",
        definition={"en": "a bag that arrived broken.", "fr": "un bagage arrivé cassé."},
    )
    taxonomy = taxonomy.model_copy(update={"reasons": (taxonomy.reasons[0], broken)})
    assert reading_language(taxonomy, "fr-CA") == "fr" and partly_defined_frames(taxonomy) == {}
    assert definitions_to_read(taxonomy, "fr") == (
        "un bagage toujours manquant.",
        "un bagage arrivé cassé.",
    )
    assert definitions_to_read(taxonomy, "en") == definitions_to_read(taxonomy) == english
    assert reading_language(taxonomy, "en") == "en" and reading_language(taxonomy, None) is None
    # A language without a frame to read it in reads the main definitions, in English's.
    german = taxonomy.model_copy(
        update={"reasons": tuple(
            Reason(code=r.code, label="x", definition={"en": r.main_definition, "de": "spät"})
            for r in taxonomy.reasons
        )}
    )  # fmt: skip
    assert reading_language(german, "de") is None and partly_defined_frames(german) == {}
    # The adapter's prompt is the same for every call: the main (first) definitions.
    prompt = instructions(taxonomy)
    assert "late_bag: a bag still missing. Not a damaged bag (broken_bag)." in prompt
    assert "manquant" not in prompt
