"""Training examples: labelled call records turned into the exact token ids of inference.

Each example is the prompt the llamacpp backend builds (`PromptTokens.prompt`) followed by the
answer its decoding produces (`PromptTokens.answer`), tokenized by llama.cpp itself, so the
adapter is trained on precisely the tokens it will read and write. The loss is on the answer
tokens the model chooses; the tokens the backend forces (`, "reason": "`) are not scored.

A reader (`reads_definitions`) is trained on what the backend scores when it reads a list's
definitions instead: the call in the reading frame of its language, then the text read for its
reason (`prompts.reading_language`, `prompts.definitions_to_read`); the loss is on that text.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.extraction.truncation import Fitted, fit_transcript
from app.finetune import FinetuneError
from app.llm.prompt_tokens import PromptTokens
from app.llm.prompts import definitions_to_read, reading_language
from app.records import RecordFileError, read_records, record_language, record_text
from schemas import taxonomy as schemas_taxonomy
from schemas.extraction import normalise_product
from schemas.taxonomy import Taxonomy, TaxonomyError

DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class TrainSource:
    """One training file and the taxonomy its reasons belong to."""

    path: Path
    taxonomy: Taxonomy
    taxonomy_ref: str  # as the user named it: a built-in name or a path


@dataclass(frozen=True)
class Example:
    """Token ids of prompt + answer; `scored` are the indices of the tokens the loss predicts.

    `head` counts the leading ids that are the same for every example of its taxonomy (the
    instructions and the taxonomy before the transcript): training computes them once for a
    micro-batch that shares them.
    """

    ids: tuple[int, ...]
    scored: tuple[int, ...]
    source: int  # index of the TrainSource
    head: int = 0


@dataclass
class SourceSummary:
    """What one training file contributed (for the model card)."""

    path: str
    sha256: str
    taxonomy: str
    taxonomy_version: str
    records: int
    examples: int = 0
    truncated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def resolve_taxonomy(ref: str | Path | None) -> Taxonomy:
    """A taxonomy from a built-in name, a file path, or None for the built-in default."""
    try:
        return schemas_taxonomy.resolve_taxonomy(ref)
    except TaxonomyError as exc:
        raise FinetuneError(str(exc)) from exc


def parse_train_arg(arg: str, default_taxonomy: str | Path | None) -> TrainSource:
    """`FILE` (with the default taxonomy) or `FILE@TAXONOMY` (a path or a built-in name)."""
    path, taxonomy_ref = schemas_taxonomy.split_taxonomy_ref(arg)
    if not path.is_file():
        raise FinetuneError(f"training file not found: {path}")
    ref = taxonomy_ref if taxonomy_ref is not None else default_taxonomy
    return TrainSource(path, resolve_taxonomy(ref), str(ref) if ref is not None else "default")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_examples(
    sources: Sequence[TrainSource],
    tokens: PromptTokens,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    limit_per_file: int | None = None,
    seed: int = 0,
    reads_definitions: bool = False,
) -> tuple[list[Example], list[SourceSummary]]:
    """Examples of all sources, shuffled together (seeded), and a summary per source; a
    reader's examples with `reads_definitions` (`make_reading_example`).

    Every record must have a transcript and a reason that is a code of its file's taxonomy;
    otherwise FinetuneError names the file and line. Transcripts are fitted to `max_tokens`
    (prompt and answer included) the way the pipeline fits them to the model's context.
    """
    examples: list[Example] = []
    summaries: list[SourceSummary] = []
    for index, source in enumerate(sources):
        records = _checked_records(source)
        summary = SourceSummary(
            path=str(source.path),
            sha256=file_sha256(source.path),
            taxonomy=source.taxonomy_ref,
            taxonomy_version=source.taxonomy.version,
            records=len(records),
        )
        if limit_per_file is not None:
            records = file_sample(records, limit_per_file, seed=seed, index=index)
        make = make_reading_example if reads_definitions else make_example
        for record in records:
            example, truncated = make(tokens, source.taxonomy, record, max_tokens, index)
            examples.append(example)
            summary.truncated += truncated
        summary.examples = len(records)
        summary.reasons = dict(sorted(Counter(r["reason"] for r in records).items()))
        summaries.append(summary)
    if not examples:
        raise FinetuneError("no training examples: the training files hold no records")
    random.Random(seed).shuffle(examples)
    return examples, summaries


def make_example(
    tokens: PromptTokens,
    taxonomy: Taxonomy,
    record: dict[str, Any],
    max_tokens: int,
    source: int = 0,
) -> tuple[Example, bool]:
    """One record as an example, and whether its transcript had to be shortened."""
    product = normalise_product(record.get("product") or None)
    reason = record["reason"]
    answer = tokens.answer(product, reason)
    empty = tokens.prompt(taxonomy, "")
    fitted = _fitted(tokens, taxonomy, record, max_tokens - len(empty) - len(answer), max_tokens)
    prompt = tokens.prompt(taxonomy, fitted.text)
    ids = prompt + answer
    forced = _forced_span(tokens, product)
    scored = tuple(len(prompt) + i for i in range(len(answer)) if not forced[0] <= i < forced[1])
    head = common_prefix_length((empty, prompt))
    return Example(tuple(ids), scored, source, head), fitted.truncated


def make_reading_example(
    tokens: PromptTokens,
    taxonomy: Taxonomy,
    record: dict[str, Any],
    max_tokens: int,
    source: int = 0,
) -> tuple[Example, bool]:
    """One record as a reader's example: the call in the reading frame of its language, then
    the text read for its reason, as the backend scores it; whether the call was shortened."""
    frame = reading_language(taxonomy, record_language(record))
    definition = definitions_to_read(taxonomy, frame)[taxonomy.codes.index(record["reason"])]
    option = tokens.definition_option(definition)
    empty = tokens.definition_frame("", frame)
    fitted = _fitted(tokens, taxonomy, record, max_tokens - len(empty) - len(option), max_tokens)
    prompt = tokens.definition_frame(fitted.text, frame)
    scored = tuple(range(len(prompt), len(prompt) + len(option)))
    head = common_prefix_length((empty, prompt))
    return Example(tuple(prompt + option), scored, source, head), fitted.truncated


def _fitted(
    tokens: PromptTokens, taxonomy: Taxonomy, record: dict[str, Any], budget: int, max_tokens: int
) -> Fitted:
    """The record's transcript fitted to `budget` tokens (FinetuneError: no room at all)."""
    try:
        return fit_transcript(record_text(record) or "", budget, lambda t: len(tokens.text(t)))
    except ValueError as exc:
        raise FinetuneError(
            f"--max-tokens {max_tokens} leaves no room for a transcript with taxonomy "
            f"{taxonomy.version} ({exc})"
        ) from exc


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading items all the sequences share."""
    first, *rest = sequences
    length = min(len(s) for s in sequences)
    for index in range(length):
        if any(s[index] != first[index] for s in rest):
            return index
    return length


def _forced_span(tokens: PromptTokens, product: str | None) -> tuple[int, int]:
    """Answer positions [start, end) that the backend forces instead of asking the model.

    After ` null` it forces all of `, "reason": "`. After a product it stops generating at the
    first token holding a quote, which the model must predict, and forces the rest.
    """
    if product is None:
        start = len(tokens.null_option)
        return start, start + len(tokens.reason_key)
    start = len(tokens.string_option) + len(tokens.text(product)) + 1
    return start, start + len(tokens.reason_key_after_string) - 1


def file_sample(
    records: list[dict[str, Any]], limit: int, *, seed: int, index: int
) -> list[dict[str, Any]]:
    """The records that `--limit-per-file` keeps of the `index`-th training file of a run with
    this seed: the same sample on every run, so a later run can replay records an earlier one
    trained on (and no others)."""
    return stratified_sample(records, limit, random.Random(f"{seed}/{index}"))


def stratified_sample(
    records: list[dict[str, Any]], limit: int, rng: random.Random
) -> list[dict[str, Any]]:
    """At most `limit` records, each reason keeping its share (largest remainders).

    The sample keeps the file's order.
    """
    if limit >= len(records):
        return records
    by_reason: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_reason[record["reason"]].append(position)
    shares = {reason: limit * len(p) / len(records) for reason, p in by_reason.items()}
    quotas = {reason: int(share) for reason, share in shares.items()}
    leftover = limit - sum(quotas.values())
    for reason in sorted(shares, key=lambda r: (quotas[r] - shares[r], r))[:leftover]:
        quotas[reason] += 1
    chosen: list[int] = []
    for reason in sorted(by_reason):
        chosen.extend(rng.sample(by_reason[reason], quotas[reason]))
    return [records[position] for position in sorted(chosen)]


def per_group_sample(
    records: list[dict[str, Any]],
    per_group: int,
    rng: random.Random,
    key: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """At most `per_group` records of each group (`key(record)`), groups drawn in sorted order:
    an even replay of a set whose groups are uneven. The sample keeps the file's order."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_group[key(record)].append(position)
    chosen: list[int] = []
    for group in sorted(by_group):
        chosen.extend(rng.sample(by_group[group], min(per_group, len(by_group[group]))))
    return [records[position] for position in sorted(chosen)]


def _checked_records(source: TrainSource) -> list[dict[str, Any]]:
    try:
        records = read_records(source.path)  # `text` or `transcript`, as everywhere
    except RecordFileError as exc:  # it names the file and line
        raise FinetuneError(str(exc)) from exc
    locations = _record_locations(source.path, len(records))
    codes = source.taxonomy.codes
    for record, where in zip(records, locations, strict=True):
        if record_text(record) is None:
            raise FinetuneError(f"{where}: the text is empty")
        if record.get("reason") not in codes:
            raise FinetuneError(
                f"{where}: reason {record.get('reason')!r} is not a code of taxonomy "
                f"{source.taxonomy.version} ({', '.join(codes)})"
            )
        product = record.get("product")
        if product is not None and not isinstance(product, str):
            raise FinetuneError(f"{where}: product must be a string or null")
    return records


def _record_locations(path: Path, count: int) -> list[str]:
    """`FILE:LINE` of each record of a JSONL file; `FILE record N` for other formats."""
    if path.suffix.lower() not in (".json", ".csv"):
        with path.open(encoding="utf-8") as handle:
            lines = [n for n, line in enumerate(handle, start=1) if line.strip()]
        if len(lines) == count:
            return [f"{path}:{n}" for n in lines]
    return [f"{path} record {n}" for n in range(1, count + 1)]
