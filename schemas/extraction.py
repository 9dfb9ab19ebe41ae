"""The answer the model must give, built from the taxonomy: the reason is always a code of it."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from schemas.taxonomy import Taxonomy

PRODUCT_MAX_CHARS = 120
_NULL_WORDS = {"", "none", "null", "n/a", "na", "aucun", "aucune", "nothing", "rien", "unknown"}


def normalise_product(value: str | None) -> str | None:
    """Whitespace-normalise a product name; empty or 'none'-like answers become None."""
    if value is None:
        return None
    text = re.sub(r"\s+", " ", value).strip().strip("\"'`.,;:").strip()
    if text.lower() in _NULL_WORDS:
        return None
    return text


class CallExtractionBase(BaseModel):
    """Shared behaviour of every taxonomy's answer model."""

    model_config = ConfigDict(extra="forbid")

    product: str | None = Field(
        default=None,
        max_length=PRODUCT_MAX_CHARS,
        description="The product or service the call is about, as named in the call; "
        "null when the call is about no product.",
    )
    reason: str

    @field_validator("product", mode="before")
    @classmethod
    def _normalise_product(cls, value: object) -> object:
        return normalise_product(value) if isinstance(value, str) else value


def answer_model(taxonomy: Taxonomy) -> type[CallExtractionBase]:
    """The pydantic model of a valid answer for this taxonomy.

    The reason is a Literal, which pydantic renders as an inline `enum` in the JSON schema:
    llama.cpp's schema-to-grammar does not follow enums reached through `$ref`.
    """
    return _answer_model_for(taxonomy.codes)


@lru_cache(maxsize=32)
def _answer_model_for(codes: tuple[str, ...]) -> type[CallExtractionBase]:
    reason_type = Literal[codes]  # type: ignore[valid-type]
    return create_model(
        "CallExtraction",
        __base__=CallExtractionBase,
        reason=(reason_type, Field(description="The main reason for the call: one code.")),
    )


def product_key(product: str | None) -> str | None:
    """Grouping key for a product name: case-, accent- and whitespace-insensitive."""
    if product is None:
        return None
    decomposed = unicodedata.normalize("NFKD", product.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", stripped).strip()[:200] or None
