"""What an adapter's card says about its confidence: the calibration fitted for it, and the
taxonomies it was trained or measured on.

A local model's confidence is the probability it gives the reason it chose, which a fine-tuned
model puts near 1 whether it is right or not. `callx calibrate` fits a temperature per taxonomy
version on dev sets (on the confidence's log-odds: `sigmoid(logit(p) / T)`, which keeps the
order of the calls and moves them toward or away from 0.5) and writes them into the adapter's
card. The backend applies a taxonomy's temperature to its calls: on a taxonomy without one the
confidence is the model's raw probability, marked uncalibrated. (A model is far surer of
itself, wrongly, on long calls of an unseen industry than on short banking queries it was
trained on: one temperature for both would be wrong for both.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Probabilities are clipped to [EPS, 1 - EPS] before the log-odds: a rounded 1.0 stays finite.
EPS = 5e-5


def scaled(probability: float, temperature: float) -> float:
    """`sigmoid(logit(p) / temperature)`; temperature 1 leaves p (clipped) as it is."""
    p = min(max(probability, EPS), 1.0 - EPS)
    return 1.0 / (1.0 + math.exp(-math.log(p / (1.0 - p)) / temperature))


@dataclass(frozen=True)
class Calibration:
    """A temperature per taxonomy version it was fitted on, and the versions whose fit was on
    scores with the model's prior taken out (`prior_correction`), or with the list's
    definitions read (`read_definitions`): a temperature applies only to scores of the kind it
    was fitted on."""

    temperatures: tuple[tuple[str, float], ...]
    prior_corrected: frozenset[str] = frozenset()
    definitions_read: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        temperatures: dict[str, float],
        prior_corrected: set[str] | frozenset[str] = frozenset(),
        definitions_read: set[str] | frozenset[str] = frozenset(),
    ) -> Calibration:
        return cls(
            tuple(sorted(temperatures.items())),
            frozenset(prior_corrected),
            frozenset(definitions_read),
        )

    @property
    def taxonomies(self) -> frozenset[str]:
        return frozenset(version for version, _ in self.temperatures)

    def temperature(self, taxonomy_version: str) -> float | None:
        return dict(self.temperatures).get(taxonomy_version)

    def applies_to(
        self, taxonomy_version: str, prior_corrected: bool = False, definitions_read: bool = False
    ) -> bool:
        """Whether a temperature was fitted for this taxonomy on scores of this kind."""
        return (
            taxonomy_version in self.taxonomies
            and (taxonomy_version in self.prior_corrected) == prior_corrected
            and (taxonomy_version in self.definitions_read) == definitions_read
        )

    def scale(self, probability: float, taxonomy_version: str) -> float:
        """The calibrated probability (`probability` as it is on a taxonomy without one)."""
        temperature = self.temperature(taxonomy_version)
        return probability if temperature is None else scaled(probability, temperature)


def card_path(adapter: Path) -> Path:
    """ADAPTER.gguf -> ADAPTER.json, the adapter's card."""
    return Path(adapter).with_suffix(".json")


def read_card(adapter: Path | None) -> dict[str, Any] | None:
    """The adapter's card, or None where there is no adapter or it has no card."""
    if adapter is None or not card_path(adapter).is_file():
        return None
    card = json.loads(card_path(adapter).read_text(encoding="utf-8"))
    return card if isinstance(card, dict) else None


# What an adapter was trained to do (its card's `task`; cards written before it say nothing:
# they answer). A reader is put on the model only while it reads a list's definitions.
ANSWER_TASK = "answer"
READ_DEFINITIONS_TASK = "read_definitions"


def card_task(card: dict[str, Any] | None) -> str:
    """The task an adapter's card says it was trained for (ANSWER_TASK without a card)."""
    task = (card or {}).get("task", ANSWER_TASK)
    return task if isinstance(task, str) else ANSWER_TASK


def task_problem(lora_path: Path | None, reader_path: Path | None) -> tuple[str, str] | None:
    """(setting, what is wrong) where a reader is given as the answering adapter, or an
    answering adapter as the reader: each would answer or read with weights trained for the
    other task. None where both are right (or absent)."""
    if lora_path is not None and card_task(read_card(lora_path)) == READ_DEFINITIONS_TASK:
        return "lora_path", (
            f"{lora_path} is a reader (its card's task is {READ_DEFINITIONS_TASK}): give it as "
            "reader_path, not lora_path"
        )
    if reader_path is not None and card_task(read_card(reader_path)) != READ_DEFINITIONS_TASK:
        return "reader_path", (
            f"{reader_path} is not a reader: its model card ({card_path(reader_path).name}) "
            f"must say task {READ_DEFINITIONS_TASK!r} (callx finetune --reads-definitions)"
        )
    return None


def card_calibration(card: dict[str, Any] | None) -> Calibration | None:
    """The card's temperatures: `calibration.taxonomies` maps each version to its own; a card
    of the first format (one `temperature` for a list of versions) gives each that one."""
    section = (card or {}).get("calibration")
    if not isinstance(section, dict):
        return None
    taxonomies = section.get("taxonomies", ())
    if isinstance(taxonomies, dict):
        return Calibration.of(
            {v: float(fit["temperature"]) for v, fit in taxonomies.items()},
            {v for v, fit in taxonomies.items() if fit.get("prior_corrected")},
            {v for v, fit in taxonomies.items() if fit.get("definitions_read")},
        )
    return Calibration.of({version: float(section["temperature"]) for version in taxonomies})


def _cards(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The card and those of the adapters it was trained from or blended of, newest first."""
    yield card
    earlier = [(card.get("init_adapter") or {}).get("card")]
    earlier += [part.get("card") for part in card.get("blend_of") or ()]
    for parent in earlier:
        if isinstance(parent, dict):
            yield from _cards(parent)


def trained_taxonomies(card: dict[str, Any] | None) -> set[str]:
    """The taxonomy versions of every training file, the earlier stages' included."""
    return {
        source["taxonomy_version"]
        for stage in (_cards(card) if card else ())
        for source in stage.get("training_files", ())
        if source.get("taxonomy_version")
    }


def known_trained_taxonomies(card: dict[str, Any] | None) -> set[str] | None:
    """The taxonomy versions the adapter was trained on, or None where its cards do not say:
    no card, a card with no list of training files (or a file without its taxonomy), an
    adapter continued from or blended of one without a card. (The prior correction trusts
    only a complete answer: a list the model learnt is better left as it is.)"""
    return trained_taxonomies(card) if _complete(card) else None


def _complete(stage: Any) -> bool:
    """Whether a card, and every card it was continued from or blended of, lists its training
    files with their taxonomies."""
    if not isinstance(stage, dict):
        return False
    if stage.get("blend_of"):
        return all(_complete(part.get("card")) for part in stage["blend_of"])
    files = stage.get("training_files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and f.get("taxonomy_version") for f in files
    ):
        return False
    init = stage.get("init_adapter")
    return init is None or _complete((init or {}).get("card"))


def taxonomies_summary(card: dict[str, Any]) -> dict[str, list[str]]:
    """The card's `taxonomies` field: the versions trained on, evaluated on, calibrated for."""
    calibration = card_calibration(card)
    return {
        "trained": sorted(trained_taxonomies(card)),
        "evaluated": sorted({e["taxonomy_version"] for e in card.get("evaluations", ())}),
        "calibrated": sorted(calibration.taxonomies) if calibration else [],
    }


def measured_taxonomies(card: dict[str, Any] | None) -> set[str]:
    """The taxonomy versions the adapter was trained or evaluated on (its card says which)."""
    evaluated = {e["taxonomy_version"] for e in (card or {}).get("evaluations", ())}
    return trained_taxonomies(card) | evaluated


def write_card(adapter: Path, card: dict[str, Any]) -> Path:
    """Write the card next to the adapter, whole or not at all; returns its path."""
    target = card_path(adapter)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target
