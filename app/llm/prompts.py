"""The prompt: instructions and taxonomy first (a stable prefix the model caches), then the call."""

from __future__ import annotations

import json

from schemas.taxonomy import Taxonomy

# Bump on any change of wording below: every stored result records it.
PROMPT_VERSION = "p2-2026-12-05"

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


def feedback_message(error: str) -> str:
    """What the model is told after an answer that did not validate."""
    return f"Your answer was not valid: {error}\nAnswer again with one valid JSON object."
