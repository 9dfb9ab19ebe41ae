"""Fitting a long transcript into the model's context.

Policy: keep the beginning and the end of the call, where the reason and the outcome usually
are, and replace the middle with a marker. Cut on line (turn) boundaries when possible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MARKER = "\n[... middle of the call removed to fit the model's context ...]\n"


@dataclass(frozen=True)
class Fitted:
    text: str
    truncated: bool
    tokens: int


def fit_transcript(
    text: str, budget: int, count_tokens: Callable[[str], int], keep_head_ratio: float = 0.4
) -> Fitted:
    """Return `text` if it fits in `budget` tokens, else its head and tail around a marker."""
    tokens = count_tokens(text)
    if tokens <= budget:
        return Fitted(text, False, tokens)
    room = budget - count_tokens(MARKER)
    if room <= 0:
        raise ValueError(f"the model's context leaves no room for the transcript ({budget} tokens)")
    # Character proportions are a first guess; shrink until the token count fits.
    ratio = room / tokens
    for _ in range(30):
        keep = int(len(text) * ratio)
        head_chars = int(keep * keep_head_ratio)
        tail_chars = keep - head_chars
        head = _cut_to_line(text[:head_chars], from_end=False)
        tail = _cut_to_line(text[len(text) - tail_chars :], from_end=True) if tail_chars else ""
        candidate = head + MARKER + tail
        used = count_tokens(candidate)
        if used <= budget:
            return Fitted(candidate, True, used)
        ratio *= 0.9 * budget / used
    raise ValueError("could not fit the transcript into the model's context")


def _cut_to_line(fragment: str, *, from_end: bool) -> str:
    """Drop a partial turn at the cut, unless that would drop most of the fragment."""
    if from_end:
        cut = fragment.find("\n")
        return fragment[cut + 1 :] if 0 <= cut < len(fragment) // 2 else fragment
    cut = fragment.rfind("\n")
    return fragment[:cut] if cut > len(fragment) // 2 else fragment
