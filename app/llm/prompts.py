"""The prompt: instructions and taxonomy first (a stable prefix the model caches), then the call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from schemas.taxonomy import Taxonomy

# Bump on any change of wording below, or of the texts read (definitions_to_read): every stored
# result records it. p3: definitions read without their borders.
PROMPT_VERSION = "p3-2026-12-06"

_INSTRUCTIONS = """You read the transcript of a customer-service phone call (in French or English) \
and fill in two fields.
- product: the product or service the call is about, in the call's words, with the brand and \
model when the call names them (the plan with its brand, not the plan's name alone). If several \
are mentioned, the one the call is about, not one named in passing nor a feature of it. null if \
the call is about no product or service.
- reason: the main reason for the call, exactly one of these codes:
{reasons}
Answer with one JSON object: {{"product": ..., "reason": ...}}
{examples}
Transcript:
"""

TRANSCRIPT_END = "\n(end of transcript)"

# Reading a list's definitions (llamacpp's `read_definitions`): the call, this question, and the
# model's turn opened with DEFINITION_ANSWER; each definition is scored as what follows it.
DEFINITION_QUESTION = "What is the main reason for this call?"
DEFINITION_ANSWER = "The main reason for this call:"
# A sentence of a definition ends at `.`, `!` or `?` before a capital or an opening bracket.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Þ(\[«\"'])")


def instructions(taxonomy: Taxonomy) -> str:
    """The part of the prompt that does not depend on the call (reused across calls)."""
    reasons = "\n".join(f"  {r.code}: {r.definition}" for r in taxonomy.reasons)
    return _INSTRUCTIONS.format(reasons=reasons, examples=_examples(taxonomy))


def _examples(taxonomy: Taxonomy) -> str:
    if not taxonomy.examples:
        return ""
    shown = [
        f"\nExample transcript:\n{e.transcript}\nAnswer: "
        + json.dumps({"product": e.product, "reason": e.reason}, ensure_ascii=False)
        for e in taxonomy.examples
    ]
    return "".join(shown) + "\n"


def user_message(taxonomy: Taxonomy, transcript: str) -> str:
    """The whole user turn: instructions, taxonomy and the transcript."""
    return instructions(taxonomy) + transcript + TRANSCRIPT_END


def definition_question(transcript: str) -> str:
    """The user turn that asks for the reason in words (no list, no codes)."""
    return (
        "Transcript of a customer-service phone call:\n"
        + transcript
        + TRANSCRIPT_END
        + "\n"
        + DEFINITION_QUESTION
    )


def definitions_to_read(taxonomy: Taxonomy) -> tuple[str, ...]:
    """Per code, in the list's order, the text scored as the call's reason: its definition
    without its borders."""
    codes = taxonomy.codes
    return tuple(
        without_borders(reason.definition, [code for code in codes if code != reason.code])
        for reason in taxonomy.reasons
    )


def without_borders(definition: str, others: Iterable[str]) -> str:
    """A definition less its borders, the sentences that name another code of its list ("Not
    a bag that arrived damaged (baggage_damaged)."): read as the call's reason, a border scores
    the neighbour's words for this code (docs/adapter-experiments.md, definitions without their
    borders). A definition that is all borders is kept whole."""
    sentences = _SENTENCE_BREAK.split(definition.strip())
    kept = [s for s in sentences if not any(_names(s, code) for code in others)]
    return " ".join(kept) if kept else definition


def _names(sentence: str, code: str) -> bool:
    """Whether a sentence names a code: an identifier (`baggage_damaged`) wherever it stands as
    a word; a code that is a plain word (`other`, `billing`) only as a reference, alone or in
    a list of codes in brackets or backquotes ("(billing)", "(billing, other)", "`other`"), not
    as the word ("or other fees")."""
    if re.search(r"[_\d]", code):
        return re.search(rf"(?<!\w){re.escape(code)}(?!\w)", sentence) is not None
    for group in re.findall(r"\(([^()]*)\)|\[([^\[\]]*)\]|`([^`]*)`", sentence):
        items = re.split(r",|/|;|\b(?:or|and|ou|et)\b", "".join(group))
        if code in (item.strip() for item in items):
            return True
    return False


def feedback_message(error: str) -> str:
    """What the model is told after an answer that did not validate."""
    return f"Your answer was not valid: {error}\nAnswer again with one valid JSON object."
