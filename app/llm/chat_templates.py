"""Chat templates as (before, after) the user turn, with the model's turn opened.

The template's markers are tokenized as special tokens; the user's content never is, so a
transcript that contains "<start_of_turn>" cannot open a turn of its own.
"""

from __future__ import annotations

TEMPLATES: dict[str, tuple[str, str]] = {
    "gemma": ("<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n"),
    "chatml": ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
    "llama-3": (
        "<|start_header_id|>user<|end_header_id|>\n\n",
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "raw": ("", "\n\nAnswer:\n"),
}
