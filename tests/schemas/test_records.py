"""One call record, two spellings: TranscriptCreate (the API) reads callx's labelled files as
they are, and app.records (the CLI) reads the API's records, through schemas.records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.records import RecordFileError, read_records
from schemas.api import TranscriptCreate
from schemas.records import canonical_record

CALL = "Client: ma box ne marche plus."


def test_both_spellings_give_the_same_transcript() -> None:
    api = TranscriptCreate.model_validate({"external_id": "c1", "text": CALL})
    callx = TranscriptCreate.model_validate({"id": "c1", "transcript": CALL})
    assert api == callx and (api.external_id, api.text, api.metadata) == ("c1", CALL, {})


def test_a_labelled_record_keeps_its_other_fields_in_metadata() -> None:
    record = {"id": 42, "transcript": CALL, "language": "fr", "reason": "breakdown",
              "product": None, "metadata": {"queue": "sav"}}  # fmt: skip
    data = TranscriptCreate.model_validate(record)
    assert (data.external_id, data.language) == ("42", "fr")
    assert data.metadata == {"queue": "sav", "reason": "breakdown", "product": None}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "external_id": "b", "text": CALL}, "`external_id` and `id`"),
        ({"text": CALL, "transcript": "other"}, "`text` and `transcript`"),
        ({"text": CALL, "extrenal_id": "x"}, "extrenal_id\n  Extra inputs are not permitted"),
        ({"text": CALL, "Language": "fr"}, "Language\n  Extra inputs are not permitted"),
        ({"text": CALL, "queue": "a", "metadata": {"queue": "b"}}, "'queue' is both"),
    ],
)
def test_ambiguous_records_are_refused(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TranscriptCreate.model_validate(record)


def test_the_same_value_under_both_spellings_is_one_field() -> None:
    assert canonical_record({"id": 7, "external_id": "7", "text": CALL}) == {
        "external_id": "7",
        "text": CALL,
    }


def test_record_files_read_either_spelling(tmp_path: Path) -> None:
    jsonl = tmp_path / "calls.jsonl"
    jsonl.write_text(
        json.dumps({"id": "c1", "transcript": CALL, "reason": "breakdown"})
        + "\n\n"
        + json.dumps({"external_id": "c2", "text": CALL})
        + "\n"
    )
    assert read_records(jsonl) == [
        {"external_id": "c1", "text": CALL, "reason": "breakdown"},
        {"external_id": "c2", "text": CALL},
    ]
    csv = tmp_path / "calls.csv"
    csv.write_text(f"id,transcript,product\nc1,{CALL},\nc2,,Livebox\n")
    assert read_records(csv) == [
        {"external_id": "c1", "text": CALL},
        {"external_id": "c2", "text": "", "product": "Livebox"},
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "external_id,body\nc1,hi\n", "a.csv: no `text` column (or `transcript`)"),
        ("b.csv", "text,id\nhi,1,extra\n", "b.csv:2: 3 fields where the header has 2"),
        ("c.jsonl", '{"text": "hi"}\n[1]\n', "c.jsonl:2: expected a JSON object"),
        ("d.jsonl", '{"id": 1, "body": "hi"}\n', "d.jsonl:1: no `text` field"),
        ("e.json", '{"text": "hi"}', "e.json: a .json file must hold an array"),
        ("f.jsonl", '{"id": 1, "external_id": "2", "text": "hi"}', "f.jsonl:1: `external_id`"),
        # A quote left open would read the rest of the file into one transcript.
        (
            "g.csv",
            'id,text\nc0,ok\n\nc1,"Customer: hello\nc2,second call\n',
            "g.csv:4: invalid CSV: the quoted field opened on line 4 is never closed",
        ),
        ("h.csv", 'id,text\nc1,"hi" there\n', "h.csv:2: invalid CSV: text after a closing quote"),
    ],
)
def test_bad_record_files_say_where(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RecordFileError) as info:
        read_records(path)
    assert str(info.value).startswith(str(tmp_path / message.split(":")[0]))
    assert message in str(info.value)


def test_a_file_that_is_not_utf8_is_said_so(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(RecordFileError, match="latin1.jsonl: not UTF-8 text"):
        read_records(path)
