"""A local GGUF model run in-process with llama.cpp, with the answer's shape enforced by decoding.

The answer is written by callx, not free-sampled as JSON: callx forces `{"product":`, lets the
model choose between `null` and a quoted name (generated greedily up to its closing quote;
`null` wherever the model gives it at least `null_product_at`: it leans toward naming a word
of the call when the call is about nothing),
forces `, "reason": "`, then picks the reason among the taxonomy's codes by the model's own
scores. The answer therefore always parses and the reason is always a code, without a grammar
sampler over the whole vocabulary (costly with Gemma's 262k tokens); the code's normalised
probability is returned as the confidence.

With `prior_correction`, the scores the model gives the codes when the call says nothing (its
prior over the list, measured once per taxonomy) are taken out of each call's (choice.py).

With `read_definitions`, on a list the adapter never learnt the reason is chosen with the
list's definitions as well as its codes: the reader (a second adapter, trained to say a call's
definition; without one, the model without its adapter) scores each definition as the answer
to "what is the main reason for this call?", less the same definition's score after the
content-free calls (domain-conditional PMI, Holtzman et al. 2021), and the code whose
definition scores best is the reason (docs/adapter-experiments.md, variant D: on twelve lists
the adapter never learnt, 70% right where the codes' scores got 38%). A code says little to a
model that never saw it; its definition, in plain words, says what the call must be about.
The reader is put on the model for that reading only, and the answering adapter put back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.config import NULL_PRODUCT_AT, Settings
from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.calibration import (
    card_calibration,
    known_trained_taxonomies,
    measured_taxonomies,
    read_card,
    task_problem,
)
from app.llm.chat_templates import TEMPLATES
from app.llm.choice import (
    Choice,
    Prior,
    TokenTrie,
    branch_distributions,
    choose,
)
from app.llm.errors import BackendError
from app.llm.grounding import CallWords
from app.llm.model_files import adapter_for, default_model_path, file_sha256, reader_for
from app.llm.prompt_tokens import PromptTokens
from app.llm.prompts import (
    DEFAULT_FRAME,
    definitions_in_frame,
    definitions_to_read,
    reading_language,
)
from schemas.extraction import PRODUCT_MAX_CHARS, answer_model, normalise_product
from schemas.taxonomy import Taxonomy

log = logging.getLogger(__name__)

# How many of the model's best tokens are tried for one that keeps the product to the call.
GROUNDING_CANDIDATES = 16

# The calls that say nothing, whose reason scores are the model's prior over a list.
CONTENT_FREE_TRANSCRIPTS = ("N/A", "", "[inaudible]")

# The least prior probability a code's token is given (a guard: softmax scores are never 0).
PRIOR_FLOOR = 1e-12

# Where the prior is taken out: nowhere, on taxonomies the adapter was not trained on, on all.
PRIOR_CORRECTIONS = ("off", "untrained", "all")
# Where the list's definitions are read (and alone choose the reason): the same three.
READ_DEFINITIONS = PRIOR_CORRECTIONS


class LlamaCppBackend:
    name = "llamacpp"
    concurrent = False

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        chat_format: str = "gemma",
        lora_path: Path | None = None,
        max_product_tokens: int = 24,
        product_from_call: bool = False,
        null_product_at: float = NULL_PRODUCT_AT,
        prior_correction: str = "untrained",
        read_definitions: str = "untrained",
        reader_path: Path | None = None,
        verbose: bool = False,
    ) -> None:
        from llama_cpp import Llama

        if not verbose:
            _keep_llama_cpp_quiet()
        if chat_format not in TEMPLATES:
            raise ValueError(
                f"unknown chat format {chat_format!r}: use one of {', '.join(TEMPLATES)}"
            )
        if prior_correction not in PRIOR_CORRECTIONS:
            raise ValueError(
                f"unknown prior_correction {prior_correction!r}: "
                f"use one of {', '.join(PRIOR_CORRECTIONS)}"
            )
        if read_definitions not in READ_DEFINITIONS:
            raise ValueError(
                f"unknown read_definitions {read_definitions!r}: "
                f"use one of {', '.join(READ_DEFINITIONS)}"
            )
        if not 0.0 < null_product_at < 1.0:
            raise ValueError(f"null_product_at must be between 0 and 1, not {null_product_at}")
        if lora_path is not None and not Path(lora_path).is_file():
            raise ValueError(f"LoRA adapter not found: {lora_path}")
        if reader_path is not None and not Path(reader_path).is_file():
            raise ValueError(f"reader not found: {reader_path}")
        self.model = Path(model_path).name + (f"+{Path(lora_path).name}" if lora_path else "")
        self.adapter_sha256 = file_sha256(Path(lora_path)) if lora_path else None
        problem = task_problem(lora_path, reader_path)
        if problem is not None:
            raise ValueError(problem[1])
        card = read_card(lora_path)
        self.calibration = card_calibration(card)
        self.measured_taxonomies = measured_taxonomies(card)
        # None: what the model was trained on is unknown (no card, or an incomplete one).
        self.trained_taxonomies = known_trained_taxonomies(card)
        self.max_product_tokens = max_product_tokens
        self.product_from_call = product_from_call
        self.null_product_at = null_product_at
        self.prior_correction = prior_correction
        self.read_definitions = read_definitions
        threads = n_threads or os.cpu_count() or 1
        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=threads,
            # The prompt too: llama-cpp-python's default is every CPU of the host, whatever
            # n_threads says (oversubscribed when several workers share a host).
            n_threads_batch=threads,
            n_batch=n_batch,
            lora_path=str(lora_path) if lora_path else None,
            logits_all=False,
            verbose=verbose,
        )
        # llama-cpp-python only logs an adapter llama.cpp could not read (its NULL check
        # misses a ctypes NULL pointer): the model would answer without it, silently.
        if lora_path is not None and not getattr(self._llm, "_lora_adapter", None):
            self._llm.close()
            raise ValueError(f"llama.cpp could not load the LoRA adapter {lora_path}")
        # The reader (an adapter trained to read definitions) goes on the model only while a
        # list's definitions are read; llama.cpp frees it with the model.
        self.reader = Path(reader_path).name if reader_path else None
        self.reader_sha256 = file_sha256(Path(reader_path)) if reader_path else None
        self._reader = self._load_reader(Path(reader_path)) if reader_path else None
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self._tries: dict[tuple[str, ...], TokenTrie] = {}
        self._priors: dict[tuple[str, tuple[str, ...]], Prior] = {}
        self._definition_priors: dict[tuple[str, str, tuple[str, ...]], np.ndarray] = {}
        self.tokens = PromptTokens(self._tokenize, chat_format)
        self._kinds = {"null": self.tokens.null_option, "string": self.tokens.string_option}
        # Two options: their cut paths differ in their last token only, the trie's one branch
        # (_null_or_name relies on it).
        self._kind_paths = _decisive(self._kinds)
        self._null_trie = TokenTrie(self._kind_paths)
        self.last_evaluated_tokens = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppBackend:
        section = settings.llamacpp
        return cls(
            section.model_path or default_model_path(settings.cache_dir),
            n_ctx=section.n_ctx,
            n_threads=section.n_threads,
            n_batch=section.n_batch,
            chat_format=section.chat_format,
            lora_path=adapter_for(section.model_path, section.lora_path, section.default_adapter),
            max_product_tokens=section.max_product_tokens,
            product_from_call=section.product_from_call,
            null_product_at=section.null_product_at,
            prior_correction=section.prior_correction,
            read_definitions=section.read_definitions,
            reader_path=reader_for(section.model_path, section.reader_path, section.default_reader),
            verbose=settings.verbose,
        )

    # ---- token accounting --------------------------------------------------------------

    def _tokenize(self, text: str, special: bool, bos: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special))

    def count_tokens(self, text: str) -> int:
        return len(self.tokens.text(text))

    def transcript_budget(self, taxonomy: Taxonomy) -> int:
        overhead = self.tokens.overhead(taxonomy, self.max_product_tokens)
        return self._llm.n_ctx() - overhead - 8

    def _reason_trie(self, taxonomy: Taxonomy) -> TokenTrie:
        if taxonomy.codes not in self._tries:
            self._tries[taxonomy.codes] = TokenTrie(
                _decisive({code: self.tokens.reason_option(code) for code in taxonomy.codes})
            )
        return self._tries[taxonomy.codes]

    # ---- decoding ----------------------------------------------------------------------

    def _eval(self, tokens: list[int]) -> np.ndarray:
        """Evaluate tokens after the current state; return the scores for the next token."""
        self._llm.eval(tokens)
        self.last_evaluated_tokens += len(tokens)
        return np.ctypeslib.as_array(self._llm._ctx.get_logits(), shape=(self._n_vocab,)).copy()

    def _eval_prompt(self, prompt: list[int]) -> np.ndarray:
        """Evaluate a prompt, reusing the longest prefix already in the KV cache."""
        cached = self._llm.input_ids[: self._llm.n_tokens]
        common = 0
        limit = min(len(cached), len(prompt) - 1)  # always evaluate at least the last token
        while common < limit and cached[common] == prompt[common]:
            common += 1
        self._llm.n_tokens = common
        return self._eval(prompt[common:])

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        taxonomy = request.taxonomy
        prompt = self.tokens.prompt(taxonomy, request.transcript)
        if len(prompt) + self.max_product_tokens + 16 > self._llm.n_ctx():
            raise BackendError(f"prompt of {len(prompt)} tokens does not fit n_ctx")
        corrected = self.corrects_prior(taxonomy)
        reads = self.reads_definitions(taxonomy)
        frame = reading_language(taxonomy, request.language) if reads else None
        frame_tokens = len(self.tokens.definition_frame(request.transcript, frame)) if reads else 0
        with self._lock:
            prior = self._reason_prior(taxonomy) if corrected else None
            self.last_evaluated_tokens = 0
            logits = self._eval_prompt(prompt)
            generated = 0

            kind = self._null_or_name(logits)
            # choose() evaluated the tokens before the branch, the same for both options; the
            # rest of the option taken is forced.
            # (Not batched with the reason key after `null`: batching changes llama.cpp's numerics
            # enough to flip a reason now and then.)
            logits = self._eval(self._kinds[kind.label][len(kind.tokens) - 1 :])
            product: str | None = None
            reason_key = self.tokens.reason_key
            # The product's confidence: the probability of null, or of a name and then of each
            # of its tokens (the model's own scores over its whole vocabulary, not calibrated).
            product_confidence = kind.probability
            if kind.label == "string":
                words = CallWords(request.transcript) if self.product_from_call else None
                product, generated, name_probability = self._generate_string(logits, words)
                product_confidence *= name_probability
                reason_key = self.tokens.reason_key_after_string
            if reads:
                reason = self._choose_reading_definitions(taxonomy, request.transcript, frame)
            else:
                logits = self._eval(reason_key)
                reason = choose(self._reason_trie(taxonomy), logits, self._eval, prior)

        raw = json.dumps({"product": product, "reason": reason.label}, ensure_ascii=False)
        confidence, calibrated = reason.probability, False
        # A temperature applies to scores of the kind it was fitted on (prior taken out or not).
        if self.calibration is not None and self.calibration.applies_to(
            taxonomy.version, corrected, reads
        ):
            confidence = self.calibration.scale(reason.probability, taxonomy.version)
            calibrated = True
        answer = answer_model(taxonomy).model_validate(
            {"product": normalise_product(product), "reason": reason.label}
        )
        return BackendAnswer(
            answer=answer,
            raw_answer=raw,
            prompt_tokens=len(prompt) + frame_tokens,
            completion_tokens=len(self._kinds[kind.label])
            + generated
            + len(reason_key)
            + len(self.tokens.reason_option(reason.label)),
            attempts=1,
            confidence=round(confidence, 4),
            confidence_calibrated=calibrated,
            # Four significant digits: a long unlikely name's probability is tiny, not 0.
            product_confidence=float(f"{product_confidence:.4g}"),
        )

    def _null_or_name(self, logits: np.ndarray) -> Choice:
        """No product (`null`) where the model gives it at least `null_product_at` of its
        probability against a name (at 0.5 the likelier wins), else a name.

        The two options branch once (`_kind_paths`), so what one does not get the other does;
        the tokens up to the branch are evaluated by choose() whichever is taken."""
        kind = choose(self._null_trie, logits, self._eval)
        p_null = kind.probability if kind.label == "null" else 1.0 - kind.probability
        label = "null" if p_null >= self.null_product_at else "string"
        if label == kind.label:
            return kind
        probability = p_null if label == "null" else 1.0 - p_null
        return Choice(label, probability, self._kind_paths[label])

    def measured_on(self, taxonomy: Taxonomy) -> bool:
        """Whether the adapter's card says it was trained or evaluated on this taxonomy."""
        return taxonomy.version in self.measured_taxonomies

    def corrects_prior(self, taxonomy: Taxonomy) -> bool:
        """Whether this taxonomy's reason scores have the model's prior taken out."""
        return self._scoring(taxonomy)[0]

    def reads_definitions(self, taxonomy: Taxonomy) -> bool:
        """Whether this taxonomy's reason is chosen by reading its definitions."""
        return self._scoring(taxonomy)[1]

    def reader_sha256_for(self, taxonomy: Taxonomy) -> str | None:
        """The sha256 of the reader that reads this taxonomy's definitions; None where they are
        not read, or read by the base model (no reader)."""
        return self.reader_sha256 if self.reads_definitions(taxonomy) else None

    def _scoring(self, taxonomy: Taxonomy) -> tuple[bool, bool]:
        return reason_scoring(
            self.prior_correction, self.read_definitions, self.trained_taxonomies, taxonomy.version
        )

    def _choose_reading_definitions(
        self, taxonomy: Taxonomy, transcript: str, frame: str | None
    ) -> Choice:
        """The code whose definition scores best, with the softmax of the definitions' scores
        as its probability (the codes' own scores are not used)."""
        scores = self._definition_scores(taxonomy, transcript, frame)
        shares = np.exp(scores - _log_sum_exp(scores, axis=0))
        best = int(np.argmax(shares))
        code = taxonomy.codes[best]
        return Choice(code, float(shares[best]), self.tokens.reason_option(code))

    def _definition_scores(
        self, taxonomy: Taxonomy, transcript: str, frame: str | None
    ) -> np.ndarray:
        """Per code, the log-probability of its definition after the call, in the frame
        (`reading_language`; None: the main definitions in the default one), less its log mean
        probability after the content-free calls (measured once per taxonomy and frame), by
        the reading weights (`_reading_weights`)."""
        definitions = definitions_to_read(taxonomy, frame)
        key = (taxonomy.version, frame or DEFAULT_FRAME, definitions)
        with self._reading_weights():
            if key not in self._definition_priors:
                found = [
                    self._definition_log_probabilities(content_free, definitions, frame)
                    for content_free in CONTENT_FREE_TRANSCRIPTS
                ]
                # The log of the mean probability over the content-free calls.
                self._definition_priors[key] = _log_sum_exp(np.array(found), axis=0) - math.log(
                    len(found)
                )
                whole = definitions_in_frame(taxonomy, frame)
                shortened = [
                    code
                    for code, read, written in zip(taxonomy.codes, definitions, whole, strict=True)
                    if read != written
                ]
                log.info(
                    "taxonomy %s: the reason is read from the list's definitions "
                    "(read_definitions=%s, %s); the sentences that name another code are "
                    "left out of what is read, in %s",
                    taxonomy.version,
                    self.read_definitions,
                    f"those written in {frame}" if frame else "the main ones",
                    ", ".join(shortened) or "none of them",
                    extra={
                        "taxonomy_version": taxonomy.version,
                        "definitions_language": frame,
                        "borders_left_out": shortened,
                    },
                )
            scores = self._definition_log_probabilities(transcript, definitions, frame)
        return scores - self._definition_priors[key]

    def _definition_log_probabilities(
        self, transcript: str, definitions: tuple[str, ...], frame: str | None = None
    ) -> np.ndarray:
        """log p(definition | the call and the question), each definition after the same
        frame (`DEFINITION_FRAMES`; None: the default one), evaluated once from an empty
        cache."""
        self._llm.n_tokens = 0
        last = self._eval(self.tokens.definition_frame(transcript, frame))
        root = self._llm.n_tokens
        found = []
        for definition in definitions:
            option = self.tokens.definition_option(definition)
            total = _log_softmax_at(last, option[0])
            if len(option) > 1:
                self._llm.n_tokens = root
                rows = self._eval_rows(option[:-1])
                picked = rows[np.arange(len(option) - 1), option[1:]]
                total += float(np.sum(picked - _log_sum_exp(rows, axis=1)))
            found.append(total)
        return np.array(found)

    def _eval_rows(self, tokens: list[int]) -> np.ndarray:
        """Evaluate tokens after the current state; the scores after each of them, a row each.
        (Llama.eval keeps the last token's scores only, unless the whole context was made to
        keep them all, which would compute them for every prompt token as well.)"""
        llm = self._llm
        rows = []
        for start in range(0, len(tokens), llm.n_batch):
            batch = tokens[start : start + llm.n_batch]
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
            llm._batch.set_batch(batch=batch, n_past=llm.n_tokens, logits_all=True)
            llm._ctx.decode(llm._batch)
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(batch)] = batch
            llm.n_tokens += len(batch)
            scores = np.ctypeslib.as_array(
                llm._ctx.get_logits(), shape=(len(batch) * self._n_vocab,)
            )
            rows.append(scores.reshape(len(batch), self._n_vocab).copy())
        self.last_evaluated_tokens += len(tokens)
        return np.concatenate(rows)

    @contextmanager
    def _reading_weights(self) -> Iterator[None]:
        """The weights that read a list's definitions while inside: the reader where there is
        one, else the base model's own (the answering adapter taken off); the answering adapter
        put back after. The cache is emptied on both sides, since it holds the other weights'
        states."""
        adapter = getattr(self._llm, "_lora_adapter", None)
        if adapter is None and self._reader is None:
            yield
            return
        self._set_adapter(self._reader)
        try:
            yield
        finally:
            self._set_adapter(adapter)

    def _load_reader(self, path: Path) -> Any:
        import llama_cpp

        reader = llama_cpp.llama_adapter_lora_init(self._llm._model.model, str(path).encode())
        if not reader:  # a NULL pointer
            self._llm.close()
            raise ValueError(f"llama.cpp could not load the reader {path}")
        self._llm._stack.callback(llama_cpp.llama_adapter_lora_free, reader)
        log.info(
            "reader %s: it reads the definitions of lists the adapter was not trained on", path.name
        )
        return reader

    def _set_adapter(self, adapter: Any) -> None:
        """Put `adapter` on the context (None: take every adapter off); the cache emptied."""
        import ctypes

        import llama_cpp

        if adapter is None:
            failed = llama_cpp.llama_set_adapters_lora(self._llm._ctx.ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(self._llm.lora_scale)
            failed = llama_cpp.llama_set_adapters_lora(self._llm._ctx.ctx, adapters, 1, scales)
        if failed:
            raise BackendError("llama.cpp could not switch the LoRA adapter")
        self._llm.n_tokens = 0

    def _reason_prior(self, taxonomy: Taxonomy) -> Prior:
        """The log of the mean distribution the model gives at each branch of the codes after
        the content-free calls, with the product null (measured once per taxonomy)."""
        key = (taxonomy.version, taxonomy.codes)
        if key not in self._priors:
            trie = self._reason_trie(taxonomy)
            found: list[dict[tuple[int, ...], np.ndarray]] = []
            for transcript in CONTENT_FREE_TRANSCRIPTS:
                # From an empty cache: the prior does not depend on the calls before it
                # (llama.cpp's scores move a little with how a prompt is batched).
                self._llm.n_tokens = 0
                self._eval(self.tokens.prompt(taxonomy, transcript))
                self._eval(self.tokens.null_option)
                logits = self._eval(self.tokens.reason_key)
                root = self._llm.n_tokens
                found.append(branch_distributions(trie, logits, partial(self._eval_at, root)))
            # Floored: a prior of 0 would make its code's corrected score infinite.
            self._priors[key] = {
                path: np.log(np.maximum(np.mean([one[path] for one in found], axis=0), PRIOR_FLOOR))
                for path in found[0]
            }
            log.info(
                "taxonomy %s: the model's leaning over its codes (its scores after calls that "
                "say nothing) is taken out of each call's (prior_correction=%s)",
                taxonomy.version,
                self.prior_correction,
                extra={"taxonomy_version": taxonomy.version},
            )
        return self._priors[key]

    def _eval_at(self, root: int, depth: int, tokens: list[int]) -> np.ndarray:
        """Evaluate tokens `depth` tokens after position `root`, dropping what came after."""
        self._llm.n_tokens = root + depth
        return self._eval(tokens)

    def _generate_string(
        self, logits: np.ndarray, words: CallWords | None = None
    ) -> tuple[str, int, float]:
        """Greedy tokens up to the closing quote (or a newline, or the token limit); with
        `words`, the best token that keeps the name to the call's words (grounding.py). Returns
        the name, the tokens generated and the probability the model gave that sequence.

        The token that closes the string is not evaluated: the caller forces its own.
        """
        pieces: list[bytes] = []
        log_probability = 0.0
        for count in range(1, self.max_product_tokens + 1):
            token = self._product_token(logits, pieces, words)
            log_probability += _log_softmax_at(logits, token)
            piece = self._llm.detokenize([token])
            if token == self._llm.token_eos() or b'"' in piece or b"\n" in piece:
                pieces.append(piece.split(b'"')[0].split(b"\n")[0])
                return self._text(pieces), count, math.exp(log_probability)
            pieces.append(piece)
            logits = self._eval([token])
        return self._text(pieces), self.max_product_tokens, math.exp(log_probability)

    def _product_token(
        self, logits: np.ndarray, pieces: list[bytes], words: CallWords | None
    ) -> int:
        best = int(np.argmax(logits))
        if words is None:
            return best
        so_far = b"".join(pieces)
        top = np.argpartition(logits, -GROUNDING_CANDIDATES)[-GROUNDING_CANDIDATES:]
        for token in top[np.argsort(logits[top])[::-1]]:  # best first
            piece = self._llm.detokenize([int(token)])
            ends = int(token) == self._llm.token_eos() or b'"' in piece or b"\n" in piece
            head = piece.split(b'"')[0].split(b"\n")[0] if ends else piece
            name = (so_far + head).decode("utf-8", errors="ignore")
            if words.accepts(name, complete=ends):
                return int(token)
        return best  # no candidate keeps to the call: the model's own choice

    @staticmethod
    def _text(pieces: list[bytes]) -> str:
        """The name, cut to the schema's length (a few long tokens, "AAAAAAAA", can exceed it):
        at the last space that keeps it within, else at the limit."""
        text = b"".join(pieces).decode("utf-8", errors="ignore").replace("\\", "")
        if len(text) <= PRODUCT_MAX_CHARS:
            return text
        head = text[: PRODUCT_MAX_CHARS + 1]
        cut = head.rsplit(" ", 1)[0].rstrip() if " " in head else ""
        return cut or text[:PRODUCT_MAX_CHARS]


def reason_scoring(
    prior_correction: str,
    read_definitions: str,
    trained_taxonomies: set[str] | None,
    taxonomy_version: str,
) -> tuple[bool, bool]:
    """For a taxonomy: whether the codes' scores have the prior taken out, and whether the
    definitions are read (they alone choose then: the codes' scores and prior are not used)."""
    reads = prior_applies(read_definitions, trained_taxonomies, taxonomy_version)
    corrected = prior_applies(prior_correction, trained_taxonomies, taxonomy_version)
    return corrected and not reads, reads


def prior_applies(mode: str, trained_taxonomies: set[str] | None, taxonomy_version: str) -> bool:
    """Whether `prior_correction=mode` takes the prior out of this taxonomy's reason scores.

    `untrained`: where the adapter's card shows it was not trained on the list (a list it was
    trained on has its prior learnt from labels; evaluating it there changes nothing). A model
    without a card (`trained_taxonomies` None: the base model, one fine-tuned elsewhere) may
    have been trained on any list, so it is left as it is."""
    if mode == "untrained":
        return trained_taxonomies is not None and taxonomy_version not in trained_taxonomies
    return mode == "all"


# ggml's log levels (ggml.h). llama-cpp-python's own callback reads them in an older numbering
# (a warning as an error), so every model load printed llama.cpp's warnings ("lora for ...
# cannot use buft 'CPU_REPACK'", ~30 lines) whatever `verbose` said.
_GGML_LOG_LEVEL_ERROR = 4
_llama_cpp_log = logging.getLogger("llama.cpp")
_quiet_callback: object = None  # kept referenced: llama.cpp calls it for the process's life


def _keep_llama_cpp_quiet() -> None:
    """llama.cpp's messages dropped, but its errors, logged as ours (after `import llama_cpp`,
    which installs its own callback)."""
    global _quiet_callback
    if _quiet_callback is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def errors_only(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level == _GGML_LOG_LEVEL_ERROR:
            _llama_cpp_log.error(text.decode("utf-8", errors="replace").rstrip())

    llama_cpp.llama_log_set(errors_only, ctypes.c_void_p(0))
    _quiet_callback = errors_only


def _log_softmax_at(logits: np.ndarray, token: int) -> float:
    """log p(token) under the softmax of the scores over the whole vocabulary."""
    scores = logits.astype(np.float64)
    peak = float(scores.max())
    return float(scores[token]) - peak - math.log(float(np.exp(scores - peak).sum()))


def _log_sum_exp(values: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(values))) along an axis, without overflow (a softmax's normaliser)."""
    peak = np.max(values, axis=axis, keepdims=True)
    total = np.log(np.exp(values - peak).sum(axis=axis, keepdims=True))
    return np.squeeze(peak + total, axis=axis)


def _decisive(options: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each option cut after its first token that no other option starts the same way.

    Past that token the option is forced: the scores there would never be read, and each token
    evaluated is a forward pass (the 262k-logit head included) spent on nothing. choose() stops
    at the cut; its path up to there and its probability are the same as on the whole options.
    """
    cut = {}
    for label, tokens in options.items():
        others = [other for name, other in options.items() if name != label]
        length = 1
        while length < len(tokens) and any(o[:length] == tokens[:length] for o in others):
            length += 1
        cut[label] = list(tokens[:length])
    return cut
