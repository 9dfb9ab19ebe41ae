"""A call's language, from the files and `callx eval` to the backend, and the warning for a
list whose reasons are defined in a language only in part."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from app.cli.files import _extract_line
from app.evaluation.runner import BackendConfig, evaluate
from app.extraction.extractor import Extractor, warn_if_partly_translated
from app.extraction.retry import RetryPolicy
from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.fake import FakeBackend
from app.records import RecordFileError, read_records
from schemas.taxonomy import Taxonomy, load_taxonomy


class LanguageRecorder(FakeBackend):
    """The keyword fake, noting the language of each call it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.languages: list[str | None] = []

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        self.languages.append(request.language)
        return super().extract(request)


def _records(tmp_path: Path, *languages: Any) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"c{i}", "text": "my router is broken", "reason": "breakdown"}
                       | ({} if language is None else {"language": language}))
            for i, language in enumerate(languages)
        )
    )  # fmt: skip
    return path


def test_callx_eval_and_extract_ask_each_call_in_its_own_language(tmp_path: Path) -> None:
    records = read_records(_records(tmp_path, "fr", None, "en-GB"))
    backend = LanguageRecorder()
    extractor = Extractor(backend=backend, taxonomy=load_taxonomy(), retry=RetryPolicy())
    result = evaluate(extractor, BackendConfig.parse("fake"), records, on_record=lambda: None)
    assert result.n == 3 and backend.languages == ["fr", None, "en-GB"]
    backend.languages.clear()
    for record in records:
        assert _extract_line(extractor, record)["reason"] == "breakdown"
    assert backend.languages == ["fr", None, "en-GB"]


@pytest.mark.parametrize("language", ["fr_CA", "", "français", 33])
def test_a_record_whose_language_is_no_tag_is_refused_saying_where(
    tmp_path: Path, language: Any
) -> None:
    path = _records(tmp_path, "fr", language)
    with pytest.raises(RecordFileError) as info:
        read_records(path)
    assert str(info.value) == (
        f"{path}:2: `language` {language!r} is not a language tag (fr, en, fr-CA)"
    )


def test_a_list_defined_in_french_for_some_reasons_only_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def reason(code: str, definition: Any) -> dict[str, Any]:
        return {"code": code, "label": code, "definition": definition}

    partly = Taxonomy.model_validate(
        {
            "version": "partly-1",
            "reasons": [
                reason("late_bag", {"en": "a bag still missing", "fr": "un bagage manquant"}),
                reason("broken_bag", {"en": "a bag arrived broken"}),
                reason("other", "anything else"),
            ],
        }
    )
    caplog.set_level(logging.WARNING, logger="app.extraction.extractor")
    assert partly.untranslated() == {"en": ("other",), "fr": ("broken_bag", "other")}
    # English is the default frame's: a list with English definitions in part reads the
    # same texts either way, so only French is warned about.
    assert warn_if_partly_translated(partly)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0] == (
        "taxonomy partly-1 defines some reasons in fr but not broken_bag, other: calls in fr "
        "are read against the main definitions until every reason has one"
    )
    caplog.clear()
    assert not warn_if_partly_translated(load_taxonomy()) and not caplog.records
