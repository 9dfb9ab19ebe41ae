"""The API's documentation: /docs and /redoc served with no other host (they work offline), and
an OpenAPI document that describes every field, shows an example of every request body, and
lists the configured taxonomy's codes for `reason`, which the API then enforces."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from schemas.taxonomy import builtin_taxonomy_path, load_taxonomy
from support.fakes import FakeTaskQueue

DEFAULT_CODES = list(load_taxonomy().codes)
INTENTS8 = builtin_taxonomy_path("intents8")

# Whatever a page loads or points at: src="...", href="...", url: '...'.
_REFERENCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")
_ANY_URL = re.compile(r"""https?://[^\s"'<>)]+""")


@pytest.fixture
def docs_client() -> Iterator[TestClient]:
    """The app without its lifespan (no database): the docs and the document need none."""
    app = create_app(Settings(auth={"required": False}), queue=FakeTaskQueue())  # type: ignore[arg-type]
    yield TestClient(app)


def document(**extraction: Any) -> dict[str, Any]:
    settings = Settings(auth={"required": False}, extraction={"backend": "fake", **extraction})
    return create_app(settings, queue=FakeTaskQueue()).openapi()  # type: ignore[arg-type]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_callx_itself(
    docs_client: TestClient, page: str
) -> None:
    response = docs_client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    origin = "http://testserver"
    # No URL of another host anywhere in the page: no CDN, no font service, no validator.
    foreign = [url for url in _ANY_URL.findall(html) if not url.startswith(origin)]
    assert foreign == [], foreign
    references = {a or b for a, b in _REFERENCES.findall(html)}
    assets = {ref for ref in references if not ref.endswith("openapi.json")}
    assert any(ref.endswith(".js") for ref in assets), references
    for reference in sorted(assets):
        url = urljoin(origin + page, reference)
        assert urlsplit(url).netloc == "testserver", url
        asset = docs_client.get(url)
        assert asset.status_code == 200, (url, asset.status_code)
        assert len(asset.content) > 1000, url  # the real file, not an error page
    assert "/openapi.json" in html
    assert docs_client.get("/openapi.json").status_code == 200


def test_swagger_ui_sends_the_document_to_no_validator(docs_client: TestClient) -> None:
    assert '"validatorUrl": null' in docs_client.get("/docs").text


def test_every_field_and_parameter_is_described() -> None:
    spec = document()
    undescribed = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        for field, definition in schema.get("properties", {}).items()
        if not definition.get("description")
    ]
    assert undescribed == []
    parameters = [
        f"{method.upper()} {path} {parameter['name']}"
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        for parameter in operation.get("parameters", [])
        if not parameter.get("description")
    ]
    assert parameters == []


def test_every_request_body_has_an_example_that_the_api_accepts() -> None:
    spec = document()
    bodies = {
        (path, media_type): media
        for path, item in spec["paths"].items()
        for operation in item.values()
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items()
    }
    assert set(bodies) == {
        ("/v1/transcripts", "application/json"),
        ("/v1/batches", "application/json"),
        ("/v1/batches", "application/x-ndjson"),
        ("/v1/batches", "text/csv"),
        ("/v1/transcripts/{transcript_id}/label", "application/json"),
        ("/v1/reextractions", "application/json"),
        ("/v1/models/{adapter_id}/promote", "application/json"),
        ("/v1/models/rollback", "application/json"),
        ("/v1/models", "multipart/form-data"),
    }
    for where, media in bodies.items():
        assert media.get("example") or media.get("examples"), where
    # The single transcript's examples are TranscriptCreate's too.
    examples = bodies[("/v1/transcripts", "application/json")]["examples"]
    assert {"french", "english"} <= set(examples)
    assert spec["components"]["schemas"]["TranscriptCreate"]["examples"]


def test_every_422_is_documented_as_the_problem_body_callx_answers() -> None:
    spec = document()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"detail", "errors"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith("4"):
                    schema = answer["content"]["application/json"]["schema"]
                    refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
                    assert "#/components/schemas/Problem" in refs, (method, path, status)


def reason_parameters(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        path: parameter
        for path, item in spec["paths"].items()
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "reason"
    }


def test_reason_filters_are_an_enum_of_the_configured_taxonomy() -> None:
    default = reason_parameters(document())
    assert set(default) == {"/v1/extractions", "/v1/analytics/products", "/v1/review"}
    for parameter in default.values():
        assert parameter["schema"]["enum"] == DEFAULT_CODES
        assert "`breakdown` (breakdown)" in parameter["description"]
    # Another deployment, another taxonomy: the document follows the configuration.
    intents8 = reason_parameters(document(taxonomy_path=str(INTENTS8)))
    for parameter in intents8.values():
        assert parameter["schema"]["enum"] == list(load_taxonomy(INTENTS8).codes)
    spec = document()
    reason = spec["components"]["schemas"]["ExtractionRead"]["properties"]["reason"]
    assert ", ".join(DEFAULT_CODES) in reason["description"]


def test_the_date_range_rule_is_in_the_document() -> None:
    spec = document()
    for path in ("/v1/extractions", "/v1/analytics/reasons", "/v1/analytics/products"):
        parameters = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert "before it (else a 422)" in parameters["since"]["description"], path
        assert "after it (else a 422)" in parameters["until"]["description"], path


# ---- the codes enforced (real PostgreSQL) --------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/extractions", "/v1/analytics/products"])
def test_a_label_or_unknown_reason_is_a_422_that_names_the_codes(
    open_client: TestClient, path: str
) -> None:
    assert open_client.get(path, params={"reason": "breakdown"}).status_code == 200
    response = open_client.get(path, params={"reason": "panne"})
    assert response.status_code == 422
    body = response.json()
    assert "'panne' is the label of 'breakdown'" in body["detail"]
    assert ", ".join(DEFAULT_CODES) in body["detail"]
    assert body["errors"] == [
        {"loc": ["query", "reason"], "msg": body["detail"], "type": "invalid"}
    ]
    unknown = open_client.get(path, params={"reason": "nonsense"}).json()["detail"]
    assert "not a code of the taxonomy" in unknown and "label" not in unknown
