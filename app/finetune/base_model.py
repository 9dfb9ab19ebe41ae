"""The base model's GGUF as llama.cpp reads it: its tokenizer and what the adapter must match."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from app.finetune.data import file_sha256
from app.llm.prompt_tokens import PromptTokens


@dataclass(frozen=True)
class BaseModelInfo:
    """Identity and shape of the base GGUF the adapter is trained for."""

    path: Path
    sha256: str
    architecture: str  # GGUF general.architecture, e.g. "gemma3"
    n_blocks: int
    n_vocab: int


def open_base_model(
    model_path: Path, chat_format: str = "gemma"
) -> tuple[PromptTokens, BaseModelInfo]:
    """PromptTokens tokenized by llama.cpp exactly as the backend does, and the model's info.

    Only the vocabulary is loaded (about a second), not the weights.
    """
    from llama_cpp import Llama

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"base model not found: {path}")
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def tokenize(text: str, special: bool, bos: bool) -> list[int]:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special))

    architecture = llm.metadata["general.architecture"]
    info = BaseModelInfo(
        path=path,
        sha256=_sha256(path.resolve(), path.stat().st_mtime_ns, path.stat().st_size),
        architecture=architecture,
        n_blocks=int(llm.metadata[f"{architecture}.block_count"]),
        n_vocab=llm.n_vocab(),
    )
    return PromptTokens(tokenize, chat_format), info


@functools.lru_cache(maxsize=4)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    """Hash a (large) model file once per process while it is unchanged."""
    return file_sha256(path)
