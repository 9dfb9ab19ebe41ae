"""How an answer is scored against a person's, offline (`callx eval`) and in production
(GET /v1/quality): the lenient product match, and the Wilson interval of a proportion."""

from __future__ import annotations

import math
import re
import unicodedata

PRODUCT_RULE = (
    "lenient: both texts are case-folded, accents and punctuation removed, whitespace collapsed; "
    "a prediction matches when both are null, or when one contains the other as whole words, "
    "or when their word sets overlap by at least half of the shorter one (words of 1-2 letters "
    "ignored)"
)


def normal_text(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", stripped)).strip()


def product_in_call(product: str, text: str) -> bool:
    """Every word of the product (3 letters or more, folded as for the match) is a word of the
    call: false for an answer that names something the call never says."""
    words = {w for w in normal_text(product).split() if len(w) > 2}
    return words <= set(normal_text(text).split())


def product_matches(predicted: str | None, expected: str | None) -> bool:
    """The lenient product rule (PRODUCT_RULE)."""
    if expected is None or predicted is None:
        return expected is None and predicted is None
    a, b = normal_text(predicted), normal_text(expected)
    if not a or not b:
        return a == b
    if _contains_words(a, b) or _contains_words(b, a):
        return True
    words_a = {w for w in a.split() if len(w) > 2}
    words_b = {w for w in b.split() if len(w) > 2}
    if not words_a or not words_b:
        return False
    return len(words_a & words_b) >= 0.5 * min(len(words_a), len(words_b))


def _contains_words(inner: str, outer: str) -> bool:
    """`inner` appears in `outer` as whole words ("box" is not in "freebox")."""
    return re.search(rf"(?<!\w){re.escape(inner)}(?!\w)", outer) is not None


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (z = 1.96) Wilson score interval of a proportion: sound near 0 and 1 and on small n,
    where the normal approximation is not."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n correct a bound is exactly 0 or 1: rounding made it 0.9999999999999999.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high
