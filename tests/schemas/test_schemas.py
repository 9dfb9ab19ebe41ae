"""The taxonomy file and the answer model built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.extraction import (
    PRODUCT_MAX_CHARS,
    CallExtractionBase,
    answer_model,
    normalise_product,
    product_key,
)
from schemas.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

DEFAULT_CODES = (
    "breakdown",
    "usage_help",
    "sales_inquiry",
    "billing",
    "delivery",
    "cancellation",
    "other",
)

VALID_YAML = """\
version: test-1
reasons:
  - code: billing
    label: {en: billing, fr: facturation}
    definition: invoices and charges
  - code: other
    label: other
    definition: anything else
examples:
  - transcript: "my invoice is wrong"
    product: null
    reason: billing
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- taxonomy -------------------------------------------------------------------------------


def test_default_taxonomy_has_the_seven_codes_in_order() -> None:
    taxonomy = load_taxonomy()
    assert isinstance(taxonomy, Taxonomy)
    assert taxonomy.codes == DEFAULT_CODES
    assert taxonomy.version
    assert "billing" in taxonomy
    assert "weather" not in taxonomy


def test_default_taxonomy_labels_by_language() -> None:
    taxonomy = load_taxonomy()
    breakdown = taxonomy.reasons[0]
    assert breakdown.label_in("fr") == "panne"
    assert breakdown.label_in("en") == "breakdown"
    assert breakdown.label_in("de") == "breakdown"  # falls back to the first label


def test_valid_yaml_file_loads(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path, "t.yaml", VALID_YAML))
    assert taxonomy.version == "test-1"
    assert taxonomy.codes == ("billing", "other")
    assert taxonomy.examples[0].reason == "billing"
    assert taxonomy.reasons[1].label_in("fr") == "other"


def test_valid_json_file_loads(tmp_path: Path) -> None:
    data = {
        "version": "json-1",
        "reasons": [
            {"code": "a", "label": "A", "definition": "first"},
            {"code": "b", "label": "B", "definition": "second"},
        ],
    }
    taxonomy = load_taxonomy(write(tmp_path, "t.json", json.dumps(data)))
    assert taxonomy.codes == ("a", "b")


def test_duplicate_code_raises_taxonomy_error(tmp_path: Path) -> None:
    text = VALID_YAML.replace("code: other", "code: billing")
    path = write(tmp_path, "dup.yaml", text)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert "duplicate reason codes: billing" in message
    assert str(path) in message


def test_example_with_unknown_reason_raises_taxonomy_error(tmp_path: Path) -> None:
    text = VALID_YAML.replace("    reason: billing", "    reason: refund")
    path = write(tmp_path, "ex.yaml", text)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert "example reason 'refund' is not a code of the taxonomy" in message
    assert str(path) in message


def test_missing_file_raises_taxonomy_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(TaxonomyError, match="taxonomy file not found"):
        load_taxonomy(path)


def test_malformed_yaml_raises_taxonomy_error(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="invalid taxonomy"):
        load_taxonomy(write(tmp_path, "bad.yaml", "version: [unclosed\n"))


def test_invalid_code_pattern_raises_taxonomy_error(tmp_path: Path) -> None:
    text = VALID_YAML.replace("code: other", "code: Other-Stuff")
    with pytest.raises(TaxonomyError, match="invalid taxonomy"):
        load_taxonomy(write(tmp_path, "pattern.yaml", text))


def test_taxonomy_error_is_a_value_error() -> None:
    assert issubclass(TaxonomyError, ValueError)


# --- answer model ---------------------------------------------------------------------------


def _contains_key(node: object, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_contains_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_contains_key(v, key) for v in node)
    return False


def test_answer_schema_has_the_reason_enum_inline() -> None:
    taxonomy = load_taxonomy()
    schema = answer_model(taxonomy).model_json_schema()
    assert not _contains_key(schema, "$ref")
    assert "$defs" not in schema
    assert '"$ref"' not in json.dumps(schema)
    reason = schema["properties"]["reason"]
    assert reason["enum"] == list(DEFAULT_CODES)
    assert "reason" in schema["required"]
    assert set(schema["properties"]) == {"product", "reason"}
    assert schema.get("additionalProperties") is False


def test_answer_schema_for_a_custom_taxonomy(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path, "t.yaml", VALID_YAML))
    schema = answer_model(taxonomy).model_json_schema()
    assert schema["properties"]["reason"]["enum"] == ["billing", "other"]
    assert not _contains_key(schema, "$ref")


def test_answer_model_accepts_a_valid_answer_and_normalises_product() -> None:
    model = answer_model(load_taxonomy())
    answer = model.model_validate({"product": "  Box   5G\n", "reason": "breakdown"})
    assert isinstance(answer, CallExtractionBase)
    assert answer.product == "Box 5G"
    assert answer.reason == "breakdown"
    assert model.model_validate({"product": "none", "reason": "other"}).product is None
    assert model.model_validate({"reason": "other"}).product is None


def test_answer_model_rejects_a_reason_outside_the_codes() -> None:
    model = answer_model(load_taxonomy())
    with pytest.raises(ValidationError) as info:
        model.model_validate({"product": None, "reason": "weather"})
    assert info.value.errors()[0]["loc"] == ("reason",)


def test_answer_model_rejects_an_extra_field() -> None:
    model = answer_model(load_taxonomy())
    with pytest.raises(ValidationError) as info:
        model.model_validate_json('{"product": null, "reason": "billing", "mood": "angry"}')
    errors = info.value.errors()
    assert errors[0]["type"] == "extra_forbidden"
    assert errors[0]["loc"] == ("mood",)


def test_answer_model_rejects_missing_reason_and_overlong_product() -> None:
    model = answer_model(load_taxonomy())
    with pytest.raises(ValidationError):
        model.model_validate({"product": "Box"})
    with pytest.raises(ValidationError):
        model.model_validate({"product": "x" * (PRODUCT_MAX_CHARS + 1), "reason": "billing"})


def test_answer_model_is_cached_per_code_tuple() -> None:
    taxonomy = load_taxonomy()
    assert answer_model(taxonomy) is answer_model(load_taxonomy())


# --- product helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Livebox   4 \n Pro ", "Livebox 4 Pro"),
        ("Box\t5G", "Box 5G"),
        ('"Freebox Delta".', "Freebox Delta"),
        ("", None),
        ("   ", None),
        ("none", None),
        ("None", None),
        ("aucun", None),
        ("AUCUN", None),
        ("aucune", None),
        ("n/a", None),
        (None, None),
    ],
)
def test_normalise_product(raw: str | None, expected: str | None) -> None:
    assert normalise_product(raw) == expected


def test_product_key_is_case_and_accent_insensitive() -> None:
    assert product_key("Télévision  Écran") == product_key("television ecran")
    assert product_key("TÉLÉVISION") == "television"
    assert product_key("Straße") == product_key("STRASSE")
    assert product_key("Box 5G") != product_key("Box 4G")


def test_product_key_of_nothing_is_none() -> None:
    assert product_key(None) is None
    assert product_key("   ") is None


def test_a_taxonomy_file_that_is_not_utf8_is_a_taxonomy_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: caf\xe9\n")
    with pytest.raises(TaxonomyError, match="not UTF-8"):
        load_taxonomy(path)


def test_the_shipped_adapter_is_used_only_with_the_default_model(tmp_path: Path) -> None:
    from app.llm.model_files import DEFAULT_ADAPTER, adapter_for

    assert DEFAULT_ADAPTER.is_file() and DEFAULT_ADAPTER.with_suffix(".json").is_file()
    assert adapter_for(None, None, True) == DEFAULT_ADAPTER
    assert adapter_for(None, None, False) is None
    # Another model: the default adapter (trained for Gemma 3 270M) never applies to it.
    assert adapter_for(tmp_path / "other.gguf", None, True) is None
    mine = tmp_path / "mine.gguf"
    assert adapter_for(tmp_path / "other.gguf", mine, True) == mine


BILINGUAL_YAML = """\
version: bilingual-1
reasons:
  - code: billing
    label: {en: billing, fr: facturation}
    definition:
      en: invoices and charges
      fr: factures et prélèvements
  - code: other
    label: other
    definition: anything else
"""


def test_a_definition_may_be_written_per_language(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(write(tmp_path, "two.yaml", BILINGUAL_YAML))
    billing, other = taxonomy.reasons
    # The first language's is the main one (what the prompt shows); a call's language finds
    # its own, case aside and by its primary tag, else the main one.
    assert billing.main_definition == "invoices and charges"
    assert (
        billing.definition_in("fr") == billing.definition_in("FR-ca") == "factures et prélèvements"
    )
    assert billing.definition_in("de") == billing.definition_in(None) == "invoices and charges"
    assert other.definition_in("fr") == other.main_definition == "anything else"


@pytest.mark.parametrize(
    ("definition", "said"),
    [
        ("{en: invoices, english: invoices}", "'english' is not a language in lower case (en, fr)"),
        ("{en: invoices, fr-CA: factures}", "'fr-CA' is not a language in lower case (en, fr)"),
        ("{en: invoices, no: faktura}", "False is not a language in lower case (en, fr)"),
        ("{en: invoices, fr: }", "the 'fr' definition is not a text (found None)"),
        (
            "null",
            "a definition is a text, or one text per language ({en: ..., fr: ...}) (found None)",
        ),
        ("{en: invoices, fr: ''}", "the 'fr' definition is empty"),
        ("'   '", "the definition is empty"),
        ("{}", "a definition per language needs at least one language"),
        (
            "{en: invoices, fr: " + "x" * 301 + "}",
            "the 'fr' definition has 301 characters, at most 300",
        ),
    ],
)
def test_a_wrong_definition_is_refused_saying_which_and_why(
    tmp_path: Path, definition: str, said: str
) -> None:
    text = BILINGUAL_YAML.replace(
        "    definition:\n      en: invoices and charges\n      fr: factures et prélèvements\n",
        f"    definition: {definition}\n",
    )
    path = write(tmp_path, "wrong.yaml", text)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert f"{path}: reasons.0.definition: {said}" in message
    # One problem for the one mistake: no shape's type names, no count of the reasons left.
    assert message.count("; ") == 0 and "dict[" not in message
