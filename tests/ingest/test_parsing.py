"""parse_batch_body: JSON arrays, NDJSON and CSV bodies, record by record."""

from __future__ import annotations

import json

import pytest

from app.ingest.parsing import BodyError, RawRecord, parse_batch_body

# --- application/json -------------------------------------------------------------------------


def test_json_array_gives_one_record_per_item_in_order() -> None:
    body = json.dumps([{"text": "hello"}, {"text": "bonjour", "external_id": "x1"}]).encode()
    records = parse_batch_body(body, "application/json")
    assert records == [
        RawRecord(index=0, line=None, data={"text": "hello"}),
        RawRecord(index=1, line=None, data={"text": "bonjour", "external_id": "x1"}),
    ]
    assert all(r.error is None for r in records)


def test_json_object_with_items_list_is_unwrapped() -> None:
    body = json.dumps({"items": [{"text": "a"}, {"text": "b"}]}).encode()
    records = parse_batch_body(body, "application/json; charset=utf-8")
    assert [r.data for r in records] == [{"text": "a"}, {"text": "b"}]
    assert [r.index for r in records] == [0, 1]


def test_json_content_type_is_case_insensitive_and_empty_means_json() -> None:
    body = b'[{"text": "a"}]'
    assert parse_batch_body(body, "Application/JSON")[0].data == {"text": "a"}
    assert parse_batch_body(body, "")[0].data == {"text": "a"}


def test_json_body_with_utf8_bom_is_accepted() -> None:
    body = "\ufeff".encode("utf-8") + '[{"text": "é"}]'.encode()
    assert parse_batch_body(body, "application/json")[0].data == {"text": "é"}


def test_json_object_without_items_is_a_body_error() -> None:
    with pytest.raises(BodyError, match="array"):
        parse_batch_body(b'{"text": "a"}', "application/json")


def test_invalid_json_is_a_body_error_with_position() -> None:
    with pytest.raises(BodyError, match=r"invalid JSON at line 2, column \d+"):
        parse_batch_body(b'[{"text": "a"},\n  oops]', "application/json")


def test_non_utf8_json_body_is_a_body_error_naming_the_byte() -> None:
    body = b'[{"text": "caf\xe9"}]'  # latin-1 e-acute, invalid in UTF-8
    offset = body.index(b"\xe9")
    with pytest.raises(BodyError) as info:
        parse_batch_body(body, "application/json")
    message = str(info.value)
    assert "UTF-8" in message
    assert f"byte {offset}" in message


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_a_body_error_not_recursion_error(opener: str) -> None:
    body = (opener * 100_000).encode()
    with pytest.raises(BodyError, match="nested too deeply"):
        parse_batch_body(body, "application/json")


def test_unsupported_content_type_is_a_body_error() -> None:
    with pytest.raises(BodyError, match="unsupported content type 'application/xml'"):
        parse_batch_body(b"<calls/>", "application/xml")


# --- NDJSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/jsonl", "application/ndjson", "application/json-lines"],
)
def test_ndjson_content_types_give_one_record_per_line(content_type: str) -> None:
    body = b'{"text": "a"}\n{"text": "b"}\n'
    records = parse_batch_body(body, content_type)
    assert [(r.index, r.line, r.data, r.error) for r in records] == [
        (0, 1, {"text": "a"}, None),
        (1, 2, {"text": "b"}, None),
    ]


def test_ndjson_broken_line_is_reported_with_its_line_number_others_kept() -> None:
    body = b'{"text": "one"}\n{"text": broken\n{"text": "three"}\n'
    records = parse_batch_body(body, "application/x-ndjson")
    assert len(records) == 3
    good = [r for r in records if r.error is None]
    bad = [r for r in records if r.error is not None]
    assert [(r.line, r.data) for r in good] == [(1, {"text": "one"}), (3, {"text": "three"})]
    assert len(bad) == 1
    assert bad[0].line == 2
    assert bad[0].data is None
    assert "invalid JSON" in bad[0].error
    assert [r.index for r in records] == [0, 1, 2]


def test_ndjson_non_utf8_line_is_reported_others_kept() -> None:
    body = b'{"text": "a"}\n{"text": "caf\xe9"}\n{"text": "b"}'
    records = parse_batch_body(body, "application/x-ndjson")
    assert [r.line for r in records] == [1, 2, 3]
    assert records[0].data == {"text": "a"} and records[2].data == {"text": "b"}
    assert records[1].data is None
    assert "UTF-8" in records[1].error
    offset_in_line = b'{"text": "caf\xe9"}'.index(b"\xe9")
    assert f"byte {offset_in_line}" in records[1].error  # offset inside its own line


def test_ndjson_blank_lines_are_skipped_but_line_numbers_are_physical() -> None:
    body = b'\n{"text": "a"}\n\n   \n\r\n{"text": "b"}\r\n\n'
    records = parse_batch_body(body, "application/x-ndjson")
    assert [(r.index, r.line, r.data) for r in records] == [
        (0, 2, {"text": "a"}),
        (1, 6, {"text": "b"}),
    ]
    assert all(r.error is None for r in records)


def test_ndjson_deeply_nested_line_is_a_record_error_not_recursion_error() -> None:
    body = b'{"text": "a"}\n' + b"[" * 100_000 + b'\n{"text": "b"}'
    records = parse_batch_body(body, "application/x-ndjson")
    assert [r.data for r in records] == [{"text": "a"}, None, {"text": "b"}]
    assert records[1].line == 2
    assert "nested too deeply" in records[1].error


def test_ndjson_line_with_two_values_is_an_error_of_that_line() -> None:
    # Joined into one array, "1, 2" would pass for two records: it is one bad line.
    body = b'{"text": "a"}\n{"text": "b"}, {"text": "c"}\n{"text": "d"}'
    records = parse_batch_body(body, "application/x-ndjson")
    assert [(r.line, r.data) for r in records] == [
        (1, {"text": "a"}),
        (2, None),
        (3, {"text": "d"}),
    ]
    assert "Extra data" in (records[1].error or "")


def test_ndjson_well_formed_body_parses_as_line_by_line() -> None:
    from app.ingest.parsing import _parse_ndjson_at_once

    lines = [json.dumps({"text": f"appel {i} é", "n": i}) for i in range(50)]
    body = ("\ufeff" + "\n\n".join(lines) + "\r\n").encode()
    fast = _parse_ndjson_at_once(body)
    assert fast is not None and fast == parse_batch_body(body + b"\n[", "application/x-ndjson")[:50]
    assert [r.line for r in fast] == list(range(1, 100, 2))


def test_ndjson_first_line_may_start_with_a_bom() -> None:
    body = "\ufeff".encode() + b'{"text": "a"}\n{"text": "b"}'
    records = parse_batch_body(body, "application/x-ndjson")
    assert [r.data for r in records] == [{"text": "a"}, {"text": "b"}]


def test_ndjson_empty_body_gives_no_records() -> None:
    assert parse_batch_body(b"", "application/x-ndjson") == []
    assert parse_batch_body(b"\n\n", "application/x-ndjson") == []


# --- CSV ------------------------------------------------------------------------------------


def test_csv_known_columns_are_fields_extra_columns_go_to_metadata() -> None:
    body = (
        b"text,external_id,language,agent,site\n"
        b"my box is broken,c-1,en,alice,lyon\n"
        b'"bonjour, ma facture",c-2,fr,bob,\n'
    )
    records = parse_batch_body(body, "text/csv")
    assert [r.error for r in records] == [None, None]
    assert records[0].data == {
        "text": "my box is broken",
        "external_id": "c-1",
        "language": "en",
        "metadata": {"agent": "alice", "site": "lyon"},
    }
    # empty cells are dropped, quoted commas kept in the field
    assert records[1].data == {
        "text": "bonjour, ma facture",
        "external_id": "c-2",
        "language": "fr",
        "metadata": {"agent": "bob"},
    }
    assert [r.line for r in records] == [2, 3]


def test_csv_without_extra_columns_has_no_metadata() -> None:
    records = parse_batch_body(b"text,source\nhello,phone\n", "application/csv")
    assert records[0].data == {"text": "hello", "source": "phone"}


def test_csv_header_is_stripped() -> None:
    records = parse_batch_body(b" text , external_id \nhello,1\n", "text/csv")
    assert records[0].data == {"text": "hello", "external_id": "1"}


def test_csv_header_without_text_column_is_a_body_error() -> None:
    with pytest.raises(BodyError, match="'text' column"):
        parse_batch_body(b"body,external_id\nhello,1\n", "text/csv")


def test_csv_takes_the_other_spellings_of_text_and_external_id() -> None:
    """`transcript` and `id` are fields (TranscriptCreate renames them), not metadata."""
    records = parse_batch_body(b"id,transcript,reason\nc1,hello,billing\n", "text/csv")
    assert records[0].data == {"id": "c1", "transcript": "hello", "metadata": {"reason": "billing"}}


def test_csv_wrong_field_count_is_reported_by_line_others_kept() -> None:
    body = b"text,external_id\nfirst,1\nsecond\nthird,3,extra\nfourth,4\n"
    records = parse_batch_body(body, "text/csv")
    assert [r.line for r in records] == [2, 3, 4, 5]
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert records[0].data == {"text": "first", "external_id": "1"}
    assert records[1].data is None
    assert records[1].error == "expected 2 fields, found 1"
    assert records[2].data is None
    assert records[2].error == "expected 2 fields, found 3"
    assert records[3].data == {"text": "fourth", "external_id": "4"}


def test_csv_blank_rows_are_skipped() -> None:
    body = b"text,external_id\n\nhello,1\n,\n"
    records = parse_batch_body(body, "text/csv")
    assert len(records) == 1
    assert records[0].data == {"text": "hello", "external_id": "1"}


def test_csv_empty_body_gives_no_records() -> None:
    assert parse_batch_body(b"", "text/csv") == []


def test_csv_non_utf8_body_is_a_body_error_naming_the_byte() -> None:
    body = b"text\ncaf\xe9\n"
    offset = body.index(b"\xe9")
    with pytest.raises(BodyError, match=f"byte {offset}"):
        parse_batch_body(body, "text/csv")


def test_csv_quote_left_open_is_an_error_on_its_record_not_the_rest_read_as_its_text() -> None:
    body = b'external_id,text\nm0,"a call\non two lines"\nm1,"unterminated quote\nm2,hello\n'
    records = parse_batch_body(body, "text/csv")
    assert records[0].data == {"external_id": "m0", "text": "a call\non two lines"}
    assert len(records) == 2 and records[1].data is None and records[1].line == 4
    assert records[1].error == "invalid CSV: the quoted field opened on line 4 is never closed"


def test_csv_text_after_a_closing_quote_is_an_error_the_next_rows_kept() -> None:
    records = parse_batch_body(b'text\n"hi" there\nnext\n', "text/csv")
    assert records[0].error is not None and "text after a closing quote" in records[0].error
    assert records[1].data == {"text": "next"}
