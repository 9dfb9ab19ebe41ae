"""LLM backends behind one small Protocol (base.Backend), built from settings."""

from __future__ import annotations

from app.config import Settings
from app.llm.base import Backend


def build_backend(settings: Settings, name: str | None = None) -> Backend:
    """Build the configured backend. Call once per process, after any fork: never at import."""
    name = name or settings.extraction.backend
    if name == "llamacpp":
        from app.llm.llamacpp import LlamaCppBackend

        return LlamaCppBackend.from_settings(settings)
    if name == "openai":
        from app.llm.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend.from_settings(settings)
    if name == "fake":
        from app.llm.fake import FakeBackend

        return FakeBackend(latency_s=settings.extraction.fake_latency_s)
    raise ValueError(f"unknown backend {name!r}: use llamacpp or openai")
