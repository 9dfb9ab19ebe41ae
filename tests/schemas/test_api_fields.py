"""The rules of TranscriptCreate's fields that every way in shares (single, batch JSON, NDJSON,
CSV, lookups): a source's normalisation and ISO 8601 dates only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.api import TranscriptCreate, normalize_source


@pytest.mark.parametrize(
    "spelling",
    [
        "crm",
        "CRM",
        " crm\u00a0",  # no-break space
        "crm\u200b",  # zero-width space
        "\u200dc\u200cr\u2060m\ufeff",  # joiners, word joiner, BOM
        "cr\u00adm",  # soft hyphen
        "\uff43\uff52\uff4d",  # full-width
        "\u202ecrm\u202c",  # bidi override
        "crm\ufe0f",  # variation selector
    ],
)
def test_spellings_of_one_source_normalise_to_it(spelling: str) -> None:
    assert normalize_source(spelling) == "crm"
    assert TranscriptCreate(text="x", source=spelling).source == "crm"


def test_normalisation_keeps_what_tells_sources_apart() -> None:
    assert normalize_source("Zendesk FR") == "zendesk fr"
    assert normalize_source("Straße") == "strasse"  # case-folded, as NFKC_Casefold does
    assert normalize_source("центр") == "центр"  # one script, not Latin: a source of its own
    assert normalize_source("ｸﾚｼﾞｯﾄ") == "クレジット"  # half-width katakana: NFKC


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("\u0441rm", "mixes Cyrillic and Latin letters"),  # Cyrillic es
        ("\u03bfrder", "mixes Greek and Latin letters"),  # Greek omicron
        ("\u200b\u200b", "empty once invisible characters and spaces are removed"),
        (" \u3000 ", "empty"),  # ideographic space
        ("\ufdfa" * 6, "characters once normalised; at most 100"),  # one character, 18 in NFKC
    ],
)
def test_a_source_that_cannot_be_told_from_another_is_refused(spelling: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_source(spelling)
    with pytest.raises(ValidationError, match=message):
        TranscriptCreate(text="x", source=spelling)


def test_the_default_source_is_already_normal() -> None:
    assert TranscriptCreate(text="x").source == "default" == normalize_source("default")


@pytest.mark.parametrize(
    "value", [1e11, 1_764_411_120, -1, "1764411120", "1e11", "11/29/2026", "", True, [2026]]
)
def test_occurred_at_is_an_iso_8601_string_never_a_number(value: object) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        TranscriptCreate.model_validate({"text": "x", "occurred_at": value})


def test_occurred_at_in_iso_8601_is_read_as_utc() -> None:
    def read(value: str) -> str:
        parsed = TranscriptCreate.model_validate({"text": "x", "occurred_at": value}).occurred_at
        assert parsed is not None
        return parsed.isoformat()

    assert read("2026-11-29T10:12:00Z") == "2026-11-29T10:12:00+00:00"
    assert read("2026-11-29T11:12:00+01:00") == "2026-11-29T10:12:00+00:00"
    assert read("2026-11-29 10:12") == "2026-11-29T10:12:00+00:00"  # no offset: UTC
    assert read("2026-11-29") == "2026-11-29T00:00:00+00:00"
