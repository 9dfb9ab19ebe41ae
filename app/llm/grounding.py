"""Keeping a generated product name to the words of the call (`product_from_call`).

While the local model writes the product, each token it proposes is taken only if every word of
the name so far is a word of the transcript (case and accents folded), the last one possibly
still being written; otherwise the model's next best token is tried. A name can still join
words from different places of the call (a brand said once, a model said later), but it can no
longer hold a word the call never says: a misheard spelling, an invented model number.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+")


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class CallWords:
    """The words of one transcript, and every beginning of them."""

    def __init__(self, transcript: str) -> None:
        self.words = set(_WORD.findall(fold(transcript)))
        self.prefixes = {word[:i] for word in self.words for i in range(1, len(word) + 1)}

    def accepts(self, name: str, complete: bool) -> bool:
        """Whether `name` keeps to the call's words; the last word may be unfinished unless
        `complete` (the name ends here) or a non-word character follows it."""
        folded = fold(name)
        words = _WORD.findall(folded)
        if not words:
            return True
        *done, last = words
        if any(word not in self.words for word in done):
            return False
        last_finished = complete or not folded[-1:].isalnum() and folded[-1:] != "_"
        return last in (self.words if last_finished else self.prefixes)
