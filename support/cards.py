"""What the tests read from adapter cards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
    return training_sha256s(json.loads(SHIPPED_CARD.read_text("utf-8")))


def file_sha256s(paths: list[Path]) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
