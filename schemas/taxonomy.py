"""The taxonomy of call reasons: configuration, loaded from a YAML or JSON file."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CODE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
LANGUAGE_TAG = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$")  # as the API's `language`
MAX_DEFINITION = 300


class Reason(BaseModel):
    """One reason a customer calls for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    label: dict[str, str] | str
    # One text, or one per language ({en: ..., fr: ...}); the first is the one the prompt shows.
    definition: dict[str, str] | str

    @field_validator("definition")
    @classmethod
    def _definition_texts(cls, definition: dict[str, str] | str) -> dict[str, str] | str:
        texts = definition if isinstance(definition, dict) else {"": definition}
        if not texts:
            raise ValueError("a definition per language needs at least one language")
        for tag, text in texts.items():
            where = f"the {tag!r} definition" if tag else "the definition"
            if tag and not LANGUAGE_TAG.match(tag):
                raise ValueError(f"{tag!r} is not a language tag (en, fr, fr-CA)")
            if not text.strip():
                raise ValueError(f"{where} is empty")
            if len(text) > MAX_DEFINITION:
                raise ValueError(
                    f"{where} has {len(text)} characters, at most {MAX_DEFINITION} are read"
                )
        return definition

    def label_in(self, language: str = "en") -> str:
        if isinstance(self.label, str):
            return self.label
        return self.label.get(language) or next(iter(self.label.values()))

    @property
    def main_definition(self) -> str:
        """The definition the prompt shows: the only one, or the first language's."""
        if isinstance(self.definition, str):
            return self.definition
        return next(iter(self.definition.values()))

    def definition_in(self, language: str | None) -> str:
        """The definition written in the language (case aside; `fr-CA` finds `fr`), else the
        main one."""
        return self._own_definition(language) or self.main_definition

    def defines(self, language: str) -> bool:
        """Whether the reason has a definition written in the language."""
        return self._own_definition(language) is not None

    def _own_definition(self, language: str | None) -> str | None:
        if not isinstance(self.definition, dict) or not language:
            return None
        by_tag = {tag.lower(): text for tag, text in self.definition.items()}
        wanted = language.lower()
        return by_tag.get(wanted) or by_tag.get(wanted.split("-")[0])


class Example(BaseModel):
    """A short worked example shown to the model in the prompt (few-shot)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transcript: str = Field(min_length=1, max_length=2000)
    product: str | None
    reason: str


class Taxonomy(BaseModel):
    """A versioned list of reasons; the order is the order shown to the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    reasons: tuple[Reason, ...] = Field(min_length=2)
    examples: tuple[Example, ...] = ()

    @field_validator("reasons")
    @classmethod
    def _unique_codes(cls, reasons: tuple[Reason, ...]) -> tuple[Reason, ...]:
        codes = [r.code for r in reasons]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate reason codes: {', '.join(duplicates)}")
        return reasons

    @field_validator("examples")
    @classmethod
    def _examples_use_codes(cls, examples: tuple[Example, ...], info: Any) -> tuple[Example, ...]:
        codes = {r.code for r in info.data.get("reasons", ())}
        for example in examples:
            if example.reason not in codes:
                raise ValueError(f"example reason {example.reason!r} is not a code of the taxonomy")
        return examples

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def __contains__(self, code: object) -> bool:
        return code in self.codes


class TaxonomyError(ValueError):
    """The taxonomy file is missing or malformed."""


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy file (YAML or JSON); None loads the default one shipped with callx."""
    if path is None:
        text = resources.files("schemas").joinpath("taxonomies/default.yaml").read_text("utf-8")
        source = "default taxonomy"
    else:
        file = Path(path)
        if not file.is_file():
            raise TaxonomyError(f"taxonomy file not found: {file}")
        source = str(file)
        try:
            text = file.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise TaxonomyError(
                f"invalid taxonomy in {source}: not UTF-8 (byte {exc.start})"
            ) from exc
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        raise TaxonomyError(f"invalid taxonomy in {source}: {_problems(exc)}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"invalid taxonomy in {source}: {exc}") from exc


def _problems(exc: ValidationError) -> str:
    """Each problem as `where: what (found ...)`, without pydantic's types and links."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "taxonomy"
        found = error.get("input")
        shown = f" (found {found!r})" if isinstance(found, str | int | float | bool) else ""
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(problems)


def builtin_taxonomy_path(name: str) -> Path:
    """Path of a taxonomy shipped with callx (e.g. 'default', 'intents8')."""
    return Path(str(resources.files("schemas").joinpath(f"taxonomies/{name}.yaml")))


def builtin_taxonomy_names() -> list[str]:
    """Names of the taxonomies shipped with callx (usable as FILE@NAME)."""
    folder = resources.files("schemas").joinpath("taxonomies")
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_taxonomy(ref: str | Path | None) -> Taxonomy:
    """A taxonomy from a built-in name, a file path, or None for the built-in default."""
    if ref is None:
        return load_taxonomy(None)
    text = str(ref)
    if text in builtin_taxonomy_names():
        return load_taxonomy(builtin_taxonomy_path(text))
    if not Path(text).is_file():
        raise TaxonomyError(
            f"taxonomy {text!r} is neither a file nor a built-in name "
            f"({', '.join(builtin_taxonomy_names())})"
        )
    return load_taxonomy(text)


def split_taxonomy_ref(spec: str) -> tuple[Path, str | None]:
    """`FILE` or `FILE@TAXONOMY` (an @ in an existing file's own name is not a taxonomy): the
    file, and the taxonomy reference if one is given."""
    if not Path(spec).is_file() and "@" in spec:
        path_text, ref = spec.rsplit("@", 1)
        return Path(path_text), ref
    return Path(spec), None
