"""`callx labels export`: the labelled calls as JSONL that `callx eval` and `callx finetune`
read as they are: the audit sample's calls (drawn at random: an unbiased test set) in
audit.jsonl, the others split into train, dev and test by a stable hash of the call's id."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db import labels as labels_db
from app.db.labels import LabelledCall
from app.results.service import utc_iso

SPLITS = ("train", "dev", "test", "audit")
# A call's split from its id alone: the same call is in the same split in every export, so a
# model trained on one export's train split never sees a later export's test calls. The audit
# sample's calls (a hash of the id too: routing.in_audit_sample) are never trained on.
SPLIT_RULE = (
    "calls of the audit sample: audit; the others: sha256('callx-split:' + the call's id) read "
    "as a fraction of 2^64: below 0.8 train, below 0.9 dev, else test"
)


class ExportError(ValueError):
    """The export cannot be written as asked; the message says why."""


def split_of(transcript_id: uuid.UUID) -> str:
    digest = hashlib.sha256(b"callx-split:" + transcript_id.bytes).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if share < 0.8 else "dev" if share < 0.9 else "test"


def record_of(call: LabelledCall) -> dict[str, Any]:
    """One exported record: the fields eval and finetune read, then where it came from."""
    label, transcript, extraction = call.label, call.transcript, call.extraction
    return {
        "id": str(transcript.id),
        "text": transcript.text,
        "reason": label.reason,
        "product": label.product,
        "language": transcript.language,
        "audit": bool(extraction is not None and extraction.in_audit),
        "provenance": {
            "source": transcript.source,
            "external_id": transcript.external_id,
            "occurred_at": _iso(transcript.occurred_at),
            "taxonomy_version": label.taxonomy_version,
            "label_version": label.version,
            "labelled_by": label.labelled_by,
            "labelled_at": _iso(label.created_at),
            "note": label.note,
            "review_cause": None if extraction is None else extraction.review_cause,
            "model": None if extraction is None else extraction.model,
            "model_reason": label.machine_reason,
            "model_product": label.machine_product,
            "model_confidence": label.machine_confidence,
        },
    }


@dataclass
class ExportSummary:
    output: Path
    taxonomy_version: str | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def export_labels(
    session: Session,
    output: Path,
    *,
    since: datetime | None = None,
    source: str | None = None,
    taxonomy_version: str | None = None,
) -> ExportSummary:
    """Write OUTPUT/{train,dev,test,audit}.jsonl and OUTPUT/manifest.json. All files are written
    aside and renamed into place at the end: an export that fails leaves the previous one.

    ExportError: labels of several taxonomy versions and none chosen (a file mixes no two
    taxonomies), or an output that is a file."""
    if output.exists() and not output.is_dir():
        raise ExportError(f"--output {output}: is a file, not a directory")
    calls = [
        c
        for c in labels_db.labelled_calls(session, since, source)
        if taxonomy_version is None or c.label.taxonomy_version == taxonomy_version
    ]
    versions = Counter(c.label.taxonomy_version for c in calls)
    if len(versions) > 1:
        found = ", ".join(f"{v} ({n} calls)" for v, n in sorted(versions.items()))
        raise ExportError(
            f"the labels are of {len(versions)} taxonomy versions: {found}; "
            "export one with --taxonomy-version"
        )
    output.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(output, taxonomy_version or next(iter(versions), None))
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for call in calls:
        record = record_of(call)
        records["audit" if record["audit"] else split_of(call.transcript.id)].append(record)
    pending: list[tuple[Path, Path]] = []
    for split, rows in records.items():
        target = output / f"{split}.jsonl"
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        pending.append((_write_aside(target, text), target))
        summary.counts[split] = len(rows)
    manifest = {
        "exported_at": _iso(datetime.now(UTC)),
        "taxonomy_version": summary.taxonomy_version,
        "filters": {"since": _iso(since), "source": source},
        "split_rule": SPLIT_RULE,
        "calls": summary.counts,
        "audit_note": "audit.jsonl: calls drawn at random whatever the model's confidence, "
        "then labelled: an unbiased test set, never to be trained on. train, dev and test: "
        "mostly calls reviewed because the model was unsure (hard calls), and the calls drawn "
        "at random among the sure ones where exploring is on (provenance.review_cause "
        "explore): a biased sample.",
    }
    target = output / "manifest.json"
    pending.append((_write_aside(target, json.dumps(manifest, indent=2) + "\n"), target))
    for aside, target in pending:
        os.replace(aside, target)
    return summary


def _write_aside(target: Path, text: str) -> Path:
    aside = target.with_name(f".{target.name}.partial")
    aside.write_text(text, encoding="utf-8")
    return aside


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc_iso(value)
