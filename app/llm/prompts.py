"""The prompt: instructions and taxonomy first (a stable prefix the model caches), then the call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.taxonomy import Taxonomy, primary_language

# Bump on any change of wording below, or of the texts read (definitions_to_read): every stored
# result records it. p3: definitions read without their borders; p4: a list's French definitions
# read in a French frame for a call submitted as French.
PROMPT_VERSION = "p4-2026-12-06"

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


@dataclass(frozen=True)
class DefinitionFrame:
    """Reading a list's definitions (llamacpp's `read_definitions`): the call between `opening`
    and `end`, the question, and the model's turn opened with `answer`; each definition is
    scored as what follows it."""

    opening: str
    end: str
    question: str
    answer: str

    def user_turn(self, transcript: str) -> str:
        """What the user says: the call and the question."""
        return self.opening + transcript + self.end + "\n" + self.question


# Per language a list's definitions can be read in. A call in another language, or in none
# given, or on a list without definitions in its language, is read against the main
# definitions in the default frame (docs/adapter-experiments.md, definitions in the call's
# language).
DEFINITION_FRAMES = {
    "en": DefinitionFrame(
        "Transcript of a customer-service phone call:\n",
        TRANSCRIPT_END,
        "What is the main reason for this call?",
        "The main reason for this call:",
    ),
    "fr": DefinitionFrame(
        "Transcription d'un appel au service client :\n",
        "\n(fin de la transcription)",
        "Quel est le motif principal de cet appel ?",
        "Le motif principal de cet appel :",
    ),
}
DEFAULT_FRAME = "en"
# A sentence of a definition ends at `.`, `!` or `?` before a capital or an opening bracket.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Þ(\[«\"'])")


def instructions(taxonomy: Taxonomy) -> str:
    """The part of the prompt that does not depend on the call (reused across calls)."""
    reasons = "\n".join(f"  {r.code}: {r.main_definition}" for r in taxonomy.reasons)
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


def reading_language(taxonomy: Taxonomy, language: str | None) -> str | None:
    """The frame a call's reason is read in: the call's language (its primary tag) where the
    list defines every reason in it and there is a frame for it; None for the main
    definitions, read in the default frame. (A list half in the call's language would favour
    the reasons written in it: those score far higher.)"""
    if not language:
        return None
    tag = primary_language(language)
    if tag in DEFINITION_FRAMES and all(r.defines(tag) for r in taxonomy.reasons):
        return tag
    return None


def partly_defined_frames(taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    """Per language with a frame of its own that some of the list's reasons are defined in but
    not all, the codes without it: its calls are read against the main definitions."""
    return {
        language: codes
        for language, codes in taxonomy.untranslated().items()
        if language in DEFINITION_FRAMES and language != DEFAULT_FRAME
    }


def definitions_in_frame(taxonomy: Taxonomy, frame: str | None = None) -> tuple[str, ...]:
    """Per code, in the list's order, its whole definition as read in the frame
    (`reading_language`): the frame's language's, or the main one (None)."""
    return tuple(reason.definition_in(frame) for reason in taxonomy.reasons)


def definitions_to_read(taxonomy: Taxonomy, frame: str | None = None) -> tuple[str, ...]:
    """Per code, in the list's order, the text scored as the call's reason in the frame: its
    definition without its borders."""
    codes = taxonomy.codes
    return tuple(
        without_borders(definition, [code for code in codes if code != reason.code])
        for reason, definition in zip(
            taxonomy.reasons, definitions_in_frame(taxonomy, frame), strict=True
        )
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
