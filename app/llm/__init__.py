"""LLM backends behind one small Protocol (base.Backend), built from settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import Settings, SettingsError
from app.llm.base import Backend
from app.llm.calibration import task_problem
from app.llm.model_files import DEFAULT_MODEL_FILE, adapter_for, reader_for


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


@dataclass(frozen=True)
class BackendInfo:
    """What a worker of these settings runs, found without loading a model."""

    name: str
    model: str


def check_backend(settings: Settings) -> BackendInfo:
    """The configured backend checked as far as it can be without loading a model or calling
    an endpoint (files exist, an endpoint and model are named). Raises SettingsError."""
    name = settings.extraction.backend
    if name == "llamacpp":
        section = settings.llamacpp
        if section.model_path is not None:
            _check_gguf("CALLX_LLAMACPP__MODEL_PATH", section.model_path)
            model_file = section.model_path.name
        else:
            model_file = DEFAULT_MODEL_FILE
        adapter = adapter_for(section.model_path, section.lora_path, section.default_adapter)
        if adapter is not None:
            _check_gguf("CALLX_LLAMACPP__LORA_PATH", adapter)
        reader = reader_for(section.model_path, section.reader_path, section.default_reader)
        if reader is not None:
            _check_gguf("CALLX_LLAMACPP__READER_PATH", reader)
        problem = task_problem(adapter, reader)
        if problem is not None:
            raise SettingsError(f"CALLX_LLAMACPP__{problem[0].upper()}: {problem[1]}")
        return BackendInfo(name, model_file + (f"+{adapter.name}" if adapter else ""))
    if name == "openai":
        from app.llm.presets import PRESETS, endpoint

        preset = PRESETS.get(settings.openai.preset or "")
        mode = settings.openai.mode or (preset.mode if preset else "TOOLS")
        if settings.openai.logprobs and mode == "TOOLS":
            raise SettingsError(
                "CALLX_OPENAI__LOGPROBS=true needs CALLX_OPENAI__MODE JSON, JSON_SCHEMA or "
                "MD_JSON: providers give no log-probabilities for tool calls (the mode is TOOLS)"
            )
        return BackendInfo(name, endpoint(settings)[1])
    if name == "fake":
        from app.llm.fake import FakeBackend

        return BackendInfo(name, FakeBackend.MODEL)
    raise SettingsError(f"CALLX_EXTRACTION__BACKEND: unknown backend {name!r}")


def _check_gguf(variable: str, path: Path) -> None:
    """The file exists and starts as a GGUF file does (a wrong path, not a model: said here,
    not by llama.cpp in a worker process)."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise SettingsError(f"{variable}: {path} is not a GGUF file")
