"""The OpenAPI document, completed with what FastAPI cannot know: the reason codes of the
taxonomy this deployment is configured with, and the error body every 422 really has."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemas.taxonomy import Taxonomy

# Response fields that hold a reason code. Described with the codes, not restricted to them:
# results extracted with another taxonomy version keep that version's codes.
_REASON_FIELDS = (
    ("ExtractionRead", "reason"),
    ("ReasonBucket", "reason"),
    ("LabelWrite", "reason"),
    ("LabelRead", "reason"),
    ("Answer", "reason"),
)


def complete_openapi(app: FastAPI, taxonomy: Taxonomy) -> None:
    """Every `reason` query parameter an enum of the taxonomy's codes (the API refuses any
    other, deps.reason_filter); the reason fields of results described with them; every 422
    documented as the Problem body that app/api/errors.py answers."""
    build = app.openapi  # FastAPI's: builds the document once and keeps it on the app

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _add_reason_codes(document, taxonomy)
            _problem_for_validation_errors(document)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def reason_codes_text(taxonomy: Taxonomy) -> str:
    """`breakdown` (breakdown), `usage_help` (usage help), ...: the codes with their labels."""
    return ", ".join(f"`{r.code}` ({r.label_in('en')})" for r in taxonomy.reasons)


def _problem_for_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents its own 422 body (HTTPValidationError, `detail` a list) where a route
    does not name one; callx answers every error with a Problem."""
    schemas = document.get("components", {}).get("schemas", {})
    if "Problem" not in schemas:
        return
    fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            content = operation.get("responses", {}).get("422", {}).get("content", {})
            for media in content.values():
                if media.get("schema") == fastapi_422:
                    media["schema"] = {"$ref": "#/components/schemas/Problem"}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _add_reason_codes(document: dict[str, Any], taxonomy: Taxonomy) -> None:
    codes = list(taxonomy.codes)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] == "reason":
                    parameter["schema"] = {"type": "string", "enum": codes, "title": "Reason"}
                    parameter["description"] = (
                        f"Only this reason: a code of the taxonomy {taxonomy.version}, "
                        f"{reason_codes_text(taxonomy)}; another value is a 422."
                    )
                    parameter["example"] = codes[0]
    schemas = document.get("components", {}).get("schemas", {})
    in_use = f" This deployment's taxonomy ({taxonomy.version}): {', '.join(codes)}."
    for name, field in _REASON_FIELDS:
        if name in schemas:
            reason = schemas[name]["properties"][field]
            reason["description"] = reason.get("description", "") + in_use
            reason["examples"] = codes[:1]
    if "ProductCount" in schemas:
        by_reason = schemas["ProductCount"]["properties"]["by_reason"]
        by_reason["description"] = by_reason.get("description", "") + in_use
