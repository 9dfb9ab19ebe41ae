"""FakeBackend: keyword rules giving validated answers within the taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.fake import FakeBackend
from schemas.extraction import CallExtractionBase, answer_model
from schemas.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()


def ask(text: str, taxonomy=TAXONOMY) -> BackendAnswer:
    return FakeBackend().extract(ExtractionRequest(transcript=text, taxonomy=taxonomy))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Bonjour, ma box est en panne depuis hier.", "breakdown"),
        ("Hello, my router stopped working this morning.", "breakdown"),
        ("Comment configurer mon décodeur ?", "usage_help"),
        ("How do I set up the new modem?", "usage_help"),
        ("Quel est le prix de l'offre fibre ?", "sales_inquiry"),
        ("What is the price of the premium plan?", "sales_inquiry"),
        ("Ma facture est trop élevée ce mois-ci.", "billing"),
        ("I was charged twice on my invoice.", "billing"),
        ("Ma livraison n'est jamais arrivée.", "delivery"),
        ("Where is my parcel? It was shipped last week.", "delivery"),
        ("Je veux résilier mon abonnement.", "cancellation"),
        ("I want to cancel my subscription.", "cancellation"),
        ("Bonjour, je voulais juste dire merci.", "other"),
        ("Hi, just calling to say thanks.", "other"),
    ],
)
def test_keyword_examples_give_the_expected_reason(text: str, reason: str) -> None:
    result = ask(text)
    assert isinstance(result.answer, CallExtractionBase)
    assert result.answer.reason == reason
    assert result.answer.reason in TAXONOMY.codes
    # the answer validates against the taxonomy's answer model, and raw_answer is its JSON
    model = answer_model(TAXONOMY)
    assert model.model_validate_json(result.raw_answer) == result.answer
    assert json.loads(result.raw_answer)["reason"] == reason
    assert result.attempts == 1
    assert result.prompt_tokens == max(1, len(text) // 4)
    assert result.completion_tokens is not None and result.completion_tokens >= 0


def test_product_is_extracted_after_a_possessive() -> None:
    assert ask("My Livebox is broken").answer.product == "Livebox"
    assert ask("Hi, just calling to say thanks.").answer.product is None


def test_unknown_code_falls_back_to_last_code_without_other(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "version: v1\n"
        "reasons:\n"
        "  - {code: billing, label: billing, definition: invoices}\n"
        "  - {code: misc, label: misc, definition: anything else}\n",
        encoding="utf-8",
    )
    taxonomy = load_taxonomy(path)
    assert ask("my invoice is wrong", taxonomy).answer.reason == "billing"
    # a breakdown keyword, but breakdown is not in this taxonomy
    assert ask("my phone is broken", taxonomy).answer.reason == "misc"


def test_backend_identity_and_budget() -> None:
    backend = FakeBackend()
    assert backend.name == "fake"
    assert backend.model
    assert backend.transcript_budget(TAXONOMY) > 0
    assert backend.count_tokens("") == 1
    assert backend.count_tokens("x" * 400) == 100
