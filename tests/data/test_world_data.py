"""The calls of twenty more industries (`data/world/`, issue 19): well-formed, every reason in
each language of each industry, the held-out-industry dev split as large as planned, and the
blind second labels in agreement with the first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from app.llm.prompts import reading_language
from schemas.taxonomy import load_taxonomy

WORLD = Path(__file__).resolve().parents[2] / "data" / "world"
FIELDS = ["id", "language", "domain", "style", "transcript", "reason", "product"]
CUSTOMER = {"fr": "Client: ", "en": "Customer: "}
OLD_DOMAINS = {"telecom", "appliances", "energy", "banking", "ecommerce", "insurance"}
HELD_OUT = {
    "travel_air", "public_services", "health_clinic", "education",
    "real_estate", "logistics_b2b", "telecom_business", "car_rental",
}  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def calls() -> dict[str, list[dict]]:
    return {p.stem: _read(p) for p in sorted(WORLD.glob("*.jsonl")) if p.stem != "second_labels"}


def test_every_call_is_well_formed(calls: dict[str, list[dict]]) -> None:
    ids = Counter(r["id"] for records in calls.values() for r in records)
    assert [i for i, n in ids.items() if n > 1] == []
    for domain, records in calls.items():
        _assert_well_formed(domain, records, prefix="w")


def _assert_well_formed(domain: str, records: list[dict], prefix: str) -> None:
    codes = set(load_taxonomy(None).codes)
    for r in records:
        where = f"{domain}.jsonl {r.get('id')}"
        assert list(r) == FIELDS and r["domain"] == domain, where
        assert r["id"].startswith(f"{prefix}-{domain}-{r['language']}-"), where
        assert r["style"] in {"clean", "asr"} and r["reason"] in codes, where
        product = r["product"]
        assert product is None or (isinstance(product, str) and product.strip()), where
        turns = r["transcript"].split("\n")
        assert 4 <= len(turns) <= 60 and turns[0].startswith("Agent: "), where
        assert {t.split(": ", 1)[0] + ": " for t in turns} == {
            "Agent: ",
            CUSTOMER[r["language"]],
        }, where


def test_twenty_new_industries_each_with_every_reason_in_both_languages(
    calls: dict[str, list[dict]],
) -> None:
    codes = set(load_taxonomy(None).codes)
    assert len(calls) == 20 and not set(calls) & OLD_DOMAINS and HELD_OUT <= set(calls)
    for domain, records in calls.items():
        for language in ("fr", "en"):
            reasons = {r["reason"] for r in records if r["language"] == language}
            assert reasons == codes, (domain, language)
        assert any(r["product"] is None for r in records), domain
        assert any(r["style"] == "asr" for r in records), domain
        assert any(len(r["transcript"].split("\n")) >= 20 for r in records), domain
    assert sum(len(calls[d]) for d in HELD_OUT) >= 150
    assert sum(len(r) for r in calls.values()) + 369 >= 600


def test_the_second_labels_cover_every_call_and_agree_on_the_reason(
    calls: dict[str, list[dict]],
) -> None:
    first = {r["id"]: r for records in calls.values() for r in records}
    second = {r["id"]: r for r in _read(WORLD / "second_labels.jsonl")}
    assert set(second) == set(first)
    disagree = [i for i in first if first[i]["reason"] != second[i]["reason"]]
    assert disagree == []  # README: 352 of 352; any new disagreement is settled there first


def test_each_training_industry_has_its_own_taxonomy_and_labels_in_it(
    calls: dict[str, list[dict]],
) -> None:
    default = set(load_taxonomy(None).codes) - {"other"}
    folder = WORLD / "taxonomies"
    taxonomies = sorted(folder.glob("*.yaml"))
    assert len(taxonomies) == 12
    for path in taxonomies:
        taxonomy = load_taxonomy(path)
        assert 7 <= len(taxonomy.codes) <= 8 and not set(taxonomy.codes) & default, path.name
        assert path.stem in calls and path.stem not in HELD_OUT, path.name
        labels = _read(folder / f"{path.stem}.labels.jsonl")
        assert [r["id"] for r in labels] == [r["id"] for r in calls[path.stem]], path.name
        used = Counter(r["reason"] for r in labels)
        assert set(used) == set(taxonomy.codes), path.name


def test_three_held_out_industries_with_lists_of_their_own() -> None:
    """90 calls of three industries outside every training file, each labelled in its own
    taxonomy: the measure of a customer's own taxonomy never trained on."""
    folder = WORLD / "own_taxonomy"
    default = set(load_taxonomy(None).codes) - {"other"}
    second = {r["id"]: r for r in _read(folder / "second_labels.jsonl")}
    seen = []
    for path in sorted(folder.glob("*.yaml")):
        taxonomy = load_taxonomy(path)
        assert 7 <= len(taxonomy.codes) <= 8 and not set(taxonomy.codes) & default, path.name
        records = _read(folder / f"{path.stem}.jsonl")
        assert len(records) == 30, path.name
        for language in ("fr", "en"):
            assert {r["reason"] for r in records if r["language"] == language} == set(
                taxonomy.codes
            ), (path.name, language)
        for r in records:
            assert list(r) == FIELDS and r["domain"] == path.stem, r["id"]
            assert second[r["id"]]["reason"] == r["reason"], r["id"]  # README: settled
        seen += [r["id"] for r in records]
    assert len(seen) == 90 and set(seen) == set(second)


def test_the_bordered_lists_are_the_twelve_lists_with_longer_definitions() -> None:
    """`bordered/`: the twelve training lists rewritten with their borders spelt out, the same
    codes and labels in the same order, so that their calls keep their labels."""
    bordered = sorted((WORLD / "bordered").glob("*.yaml"))
    assert [p.name for p in bordered] == sorted(
        p.name for p in (WORLD / "taxonomies").glob("*.yaml")
    )
    naming, lengths = 0, []
    for path in bordered:
        rewritten, written = load_taxonomy(path), load_taxonomy(WORLD / "taxonomies" / path.name)
        assert rewritten.version == written.version + "-bordered", path.name
        assert [(r.code, r.label) for r in rewritten.reasons] == [
            (r.code, r.label) for r in written.reasons
        ], path.name
        for reason in rewritten.reasons:
            lengths.append(len(reason.definition))
            naming += any(
                f"({c})" in reason.definition for c in rewritten.codes if c != reason.code
            )
    assert naming >= 50  # about two thirds of the 93 name a neighbour
    assert sum(lengths) / len(lengths) > 180  # the twelve lists as written: 135


@pytest.mark.parametrize(
    ("folder", "source"),
    [("bilingual", "bordered"), ("own_taxonomy/bilingual", "own_taxonomy")],
)
def test_the_bilingual_lists_add_a_french_definition_with_the_same_borders(
    folder: str, source: str
) -> None:
    """`bilingual/` and `own_taxonomy/bilingual/`: the bordered dev lists and the customers'
    lists, their English definitions as written and a French one for each reason that names
    the same neighbours."""
    paths = sorted((WORLD / folder).glob("*.yaml"))
    assert [p.name for p in paths] == sorted(p.name for p in (WORLD / source).glob("*.yaml"))
    for path in paths:
        both, written = load_taxonomy(path), load_taxonomy(WORLD / source / path.name)
        assert both.version == written.version + "-bilingual", path.name
        assert [(r.code, r.label, r.definition_in("en")) for r in both.reasons] == [
            (r.code, r.label, r.definition) for r in written.reasons
        ], path.name
        assert reading_language(both, "fr") == "fr", path.name
        for reason in both.reasons:
            english, french = reason.definition_in("en"), reason.definition_in("fr")
            assert french != english and reason.main_definition == english
            named = [
                sorted(c for c in both.codes if c != reason.code and f"({c}" in text)
                for text in (english, french)
            ]
            assert named[0] == named[1], (path.name, reason.code)


def test_eight_more_industries_for_the_reader_each_with_its_own_list() -> None:
    """`more_calls/`: 16 calls of each of eight more industries (every default reason in each
    language), each labelled in its industry's own list (every reason of it used, none a
    default code), and labelled again blind: the reasons and own reasons agree."""
    folder = WORLD / "more_calls"
    lists = sorted(folder.glob("*.yaml"))
    assert len(lists) == 8
    first: dict[str, dict] = {}
    for path in lists:
        industry = path.stem
        assert industry not in HELD_OUT | OLD_DOMAINS and not (WORLD / f"{industry}.jsonl").exists()
        records = _read(folder / f"{industry}.jsonl")
        _assert_well_formed(industry, records, prefix="m")
        for language in ("fr", "en"):
            in_language = [r for r in records if r["language"] == language]
            assert len(in_language) == 8, (industry, language)
            assert {r["reason"] for r in in_language} == set(load_taxonomy(None).codes)
        taxonomy = load_taxonomy(path)
        assert 7 <= len(taxonomy.codes) <= 9 and not set(taxonomy.codes) & set(
            load_taxonomy(None).codes
        ), industry
        for reason in taxonomy.reasons:
            assert all(len(reason.definition_in(lang)) <= 300 for lang in ("en", "fr"))
        labels = _read(folder / f"{industry}.labels.jsonl")
        assert [r["id"] for r in labels] == [r["id"] for r in records], industry
        assert {r["reason"] for r in labels} == set(taxonomy.codes), industry
        own = {r["id"]: r["reason"] for r in labels}
        first |= {r["id"]: {**r, "own_reason": own[r["id"]]} for r in records}
    second = {r["id"]: r for r in _read(folder / "second_labels.jsonl")}
    assert set(second) == set(first)
    # README: reason 127 of 128 (settled for the second), own list 128 of 128.
    for key in ("reason", "own_reason"):
        assert [i for i in first if first[i][key] != second[i][key]] == [], key
