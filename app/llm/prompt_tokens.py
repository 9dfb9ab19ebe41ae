"""The exact token sequences of the local model's prompt and answer.

One definition for inference (llamacpp backend) and for fine-tuning (`callx finetune`), so an
adapter is trained on precisely the tokens it will see. Template markers are tokenized as special
tokens; the transcript never is (it cannot open a turn of its own).
"""

from __future__ import annotations

from collections.abc import Callable

from app.llm.chat_templates import TEMPLATES
from app.llm.prompts import DEFAULT_FRAME, DEFINITION_FRAMES, TRANSCRIPT_END, instructions
from schemas.taxonomy import Taxonomy

# tokenize(text, special, bos) -> token ids
Tokenize = Callable[[str, bool, bool], list[int]]

ANSWER_START = '{"product":'
NULL_OPTION = " null"
STRING_OPTION = ' "'
REASON_KEY = ', "reason": "'


class PromptTokens:
    def __init__(self, tokenize: Tokenize, chat_format: str = "gemma") -> None:
        if chat_format not in TEMPLATES:
            raise ValueError(
                f"unknown chat format {chat_format!r}: use one of {', '.join(TEMPLATES)}"
            )
        self._tokenize = tokenize
        self._template = TEMPLATES[chat_format]
        self._prefixes: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self.answer_start = self.text(ANSWER_START)
        self.null_option = self.text(NULL_OPTION)
        self.string_option = self.text(STRING_OPTION)
        self.reason_key = self.text(REASON_KEY)
        self.reason_key_after_string = self.text('"' + REASON_KEY)
        self.suffix = self.text(TRANSCRIPT_END) + self._tokenize(self._template[1], True, False)

    def text(self, text: str) -> list[int]:
        """Plain text, never special tokens."""
        return self._tokenize(text, False, False)

    def prefix(self, taxonomy: Taxonomy) -> list[int]:
        """BOS, the template's opening and the instructions: the same for every call."""
        key = (taxonomy.version, taxonomy.codes)
        if key not in self._prefixes:
            self._prefixes[key] = self._tokenize(self._template[0], True, True) + self.text(
                instructions(taxonomy)
            )
        return self._prefixes[key]

    def prompt(self, taxonomy: Taxonomy, transcript: str) -> list[int]:
        """Everything the model reads before it answers, up to `{"product":`."""
        return self.prefix(taxonomy) + self.text(transcript) + self.suffix + self.answer_start

    def definition_frame(self, transcript: str, frame: str | None = None) -> list[int]:
        """The call and the question, up to the model's `The main reason for this call:`, in
        the frame of that name (`DEFINITION_FRAMES`; None: the default one)."""
        words = DEFINITION_FRAMES[frame or DEFAULT_FRAME]
        return (
            self._tokenize(self._template[0], True, True)
            + self.text(words.user_turn(transcript))
            + self._tokenize(self._template[1], True, False)
            + self.text(words.answer)
        )

    def definition_option(self, definition: str) -> list[int]:
        """A definition as the model's words after the frame."""
        return self.text(" " + definition)

    def reason_option(self, code: str) -> list[int]:
        return self.text(code + '"')

    def answer(self, product: str | None, reason: str) -> list[int]:
        """The answer's tokens after the prompt, as the backend's decoding produces them."""
        if product is None:
            return self.null_option + self.reason_key + self.reason_option(reason)
        return (
            self.string_option
            + self.text(product)
            + self.reason_key_after_string
            + self.reason_option(reason)
        )

    def overhead(self, taxonomy: Taxonomy, max_product_tokens: int) -> int:
        """Tokens of a prompt and its longest answer, the transcript aside."""
        longest_code = max(len(self.reason_option(code)) for code in taxonomy.codes)
        answer = (
            len(self.string_option)
            + max_product_tokens
            + len(self.reason_key_after_string)
            + longest_code
        )
        return len(self.prefix(taxonomy)) + len(self.suffix) + len(self.answer_start) + answer
