"""`callx finetune`: train a LoRA adapter for the local model on labelled calls.

Needs the `finetune` extra (torch, transformers, gguf, accelerate). Importing this package does
not import them: the service never loads torch; `require_extra()` checks they are installed.
Importing it sets OMP_WAIT_POLICY=PASSIVE unless set (see below): import it before torch.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

# Set before torch loads OpenMP. Spinning worker threads waste most of the CPU when the machine
# has more runnable threads than cores (measured on 2 busy cores: a step 3-4x slower); sleeping
# ones cost little when it is idle. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXTRA_MODULES = ("torch", "transformers", "gguf", "accelerate")
INSTALL_HINT = "pip install -e '.[finetune]'"


class FinetuneError(ValueError):
    """A problem with the fine-tuning inputs (data, taxonomy, options, checkpoint)."""


class MissingExtraError(RuntimeError):
    """The optional packages fine-tuning needs are not installed."""


def require_extra() -> None:
    """Raise MissingExtraError naming the missing packages and how to install them."""
    missing = [name for name in EXTRA_MODULES if find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"fine-tuning needs {', '.join(missing)}: install them with {INSTALL_HINT}"
        )
