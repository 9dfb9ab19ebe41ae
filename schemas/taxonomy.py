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
# A definition's language: a primary tag (the frames that read definitions are per language).
DEFINITION_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
MAX_DEFINITION = 300


class Reason(BaseModel):
    """One reason a customer calls for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    label: dict[str, str] | str
    # One text, or one per language ({en: ..., fr: ...}); the first is the one the prompt shows.
    definition: dict[str, str] | str

    @field_validator("definition", mode="before")
    @classmethod
    def _definition_texts(cls, definition: Any) -> Any:
        """One message per mistake, rather than pydantic's against each of the two shapes."""
        if isinstance(definition, str):
            texts = {"": definition}
        elif isinstance(definition, dict):
            texts = definition
        else:
            raise ValueError(
                "a definition is a text, or one text per language ({en: ..., fr: ...}) "
                f"(found {definition!r})"
            )
        if not texts:
            raise ValueError("a definition per language needs at least one language")
        for tag, text in texts.items():
            if tag != "" and not (isinstance(tag, str) and DEFINITION_LANGUAGE.match(tag)):
                raise ValueError(
                    f"{tag!r} is not a language in lower case (en, fr): in YAML, quote a text "
                    "that holds a comma or a colon, and a key such as no"
                )
            where = f"the {tag!r} definition" if tag else "the definition"
            if not isinstance(text, str):
                raise ValueError(f"{where} is not a text (found {text!r})")
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
        """The definition written in the call's language (`fr`, `FR`, `fr-CA` find `fr`),
        else the main one."""
        return self._own_definition(language) or self.main_definition

    def defines(self, language: str) -> bool:
        """Whether the reason has a definition written in the call's language."""
        return self._own_definition(language) is not None

    def _own_definition(self, language: str | None) -> str | None:
        if not isinstance(self.definition, dict) or not language:
            return None
        return self.definition.get(primary_language(language))


def primary_language(language: str) -> str:
    """A language tag's language: `fr-CA` -> `fr`."""
    return language.split("-")[0].lower()


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

    def untranslated(self) -> dict[str, tuple[str, ...]]:
        """Per language that some reasons but not all are defined in, the codes without it."""
        languages = sorted(
            {tag for r in self.reasons if isinstance(r.definition, dict) for tag in r.definition}
        )
        missing = {
            tag: tuple(r.code for r in self.reasons if not r.defines(tag)) for tag in languages
        }
        return {tag: codes for tag, codes in missing.items() if codes}

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
    errors = exc.errors(include_url=False)
    a_reason_failed = any(len(e["loc"]) > 1 and e["loc"][0] == "reasons" for e in errors)
    for error in errors:
        if a_reason_failed and error["loc"] == ("reasons",) and error["type"] == "too_short":
            continue  # the reasons that failed are not counted: the count says nothing more
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
