"""Each stored extraction says which files answered it: the adapter and, on a list whose
definitions a reader reads, the reader, by their sha256; through the worker's service code,
the database, the API and the call page, on PostgreSQL and SQLite."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.llm.fake import FakeBackend
from schemas.taxonomy import Taxonomy
from support.factories import extract_stored

ADAPTER, READER = "a" * 64, "b" * 64


class FakeReadingBackend(FakeBackend):
    """The fake model with an adapter, and a reader for the lists it `reads`."""

    adapter_sha256 = ADAPTER

    def __init__(self, reads: bool) -> None:
        super().__init__()
        self.reads = reads

    def reader_sha256_for(self, taxonomy: Taxonomy) -> str | None:
        return READER if self.reads else None


def test_the_adapter_and_the_reader_are_recorded_where_the_list_is_read(
    client: TestClient, review_settings: Settings
) -> None:
    made = client.post(
        "/v1/batches", json=[{"text": f"Client: ma box {n} ne marche plus"} for n in range(3)]
    )
    assert made.status_code == 202, made.text
    first, second, third = (str(i) for i in made.json()["transcript_ids"])
    # Where the list is read by the adapter alone (its own list) no reader is stored; where a
    # reader reads it (a customer's list), its sha256 is stored beside the adapter's.
    alone, reading = FakeReadingBackend(reads=False), FakeReadingBackend(reads=True)
    assert extract_stored(review_settings, [first], backend=alone) == ["succeeded"]
    assert extract_stored(review_settings, [second], backend=reading) == ["succeeded"]
    on_default = client.get(f"/v1/transcripts/{first}").json()["extraction"]
    on_shop = client.get(f"/v1/transcripts/{second}").json()["extraction"]
    assert (on_default["adapter_sha256"], on_default["reader_sha256"]) == (ADAPTER, None)
    assert (on_shop["adapter_sha256"], on_shop["reader_sha256"]) == (ADAPTER, READER)
    # The call page's attempts name the reader where one read the list.
    assert f"definitions read by reader {READER[:12]}" in client.get(f"/ui/calls/{second}").text
    assert "definitions read by reader" not in client.get(f"/ui/calls/{first}").text
    # A backend without a reader (the OpenAI-compatible one, the plain fake) records none.
    assert extract_stored(review_settings, [third], backend=FakeBackend()) == ["succeeded"]
    plain = client.get(f"/v1/transcripts/{third}").json()
    assert plain["extraction"]["reader_sha256"] is None
    assert plain["extraction"]["adapter_sha256"] is None
