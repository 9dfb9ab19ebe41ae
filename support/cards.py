"""What the data tests check against the shipped adapter: the recipes that make it and the
training files its card records."""

from __future__ import annotations

import json
from pathlib import Path

from app.llm.model_files import file_sha256

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CARD = ROOT / "app" / "llm" / "adapters" / "callx-default.json"
# The scripts and modules that make the shipped adapter and its candidates.
RECIPES = [ROOT / "app" / "llm" / "adapters" / n for n in ("rebuild.sh", "stage5.sh")] + [
    ROOT / "app" / "finetune" / n for n in ("world_recipe.py", "default_recipe.py")
]


def training_sha256s(node: object) -> set[str]:
    """The sha256 of every training file a card records, its earlier stages' and blended
    parts' included."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "training_files":
                found |= {source["sha256"] for source in value}
            else:
                found |= training_sha256s(value)
    elif isinstance(node, list):
        for value in node:
            found |= training_sha256s(value)
    return found


def shipped_training_sha256s() -> set[str]:
    """The sha256 of every file the shipped default adapter was trained on, all stages."""
    return training_sha256s(json.loads(SHIPPED_CARD.read_text("utf-8")))


def file_sha256s(paths: list[Path]) -> set[str]:
    """The sha256 of each file, as a card records them."""
    return {file_sha256(p) for p in paths}
