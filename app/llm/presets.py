"""Known OpenAI-compatible providers, so that switching provider is one setting."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings, SettingsError


@dataclass(frozen=True)
class Preset:
    base_url: str | None  # None: the deployment must give it (its own host or resource)
    model: str | None
    mode: str
    context_tokens: int


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "gpt-4o-mini", "TOOLS", 128_000),
    # Azure OpenAI's v1 API: https://<resource>.openai.azure.com/openai/v1/ ; model = deployment.
    "azure": Preset(None, None, "TOOLS", 128_000),
    "mistral": Preset("https://api.mistral.ai/v1", "mistral-small-latest", "TOOLS", 32_000),
    "gemini": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "gemini-2.0-flash",
        "TOOLS",
        1_000_000,
    ),
    "anthropic": Preset(
        "https://api.anthropic.com/v1/", "claude-3-5-haiku-latest", "TOOLS", 200_000
    ),
    "vllm": Preset("http://localhost:8000/v1", None, "JSON_SCHEMA", 8_192),
    "ollama": Preset("http://localhost:11434/v1", "llama3.1", "TOOLS", 8_192),
    "llamacpp": Preset("http://localhost:8080/v1", "local", "TOOLS", 4_096),
}


def endpoint(settings: Settings) -> tuple[str, str]:
    """The openai backend's (base_url, model): the settings, else the preset's. Raises
    SettingsError when neither gives one."""
    section = settings.openai
    preset = PRESETS.get(section.preset or "")
    if section.preset and preset is None:
        raise SettingsError(
            f"CALLX_OPENAI__PRESET: unknown preset {section.preset!r}; "
            f"use one of {', '.join(PRESETS)}"
        )
    base_url = section.base_url or (preset.base_url if preset else None)
    model = section.model or (preset.model if preset else None)
    if not base_url:
        raise SettingsError(
            "CALLX_OPENAI__BASE_URL is required with CALLX_EXTRACTION__BACKEND=openai "
            "(no preset gives one)"
        )
    if not model:
        raise SettingsError(
            "CALLX_OPENAI__MODEL is required with CALLX_EXTRACTION__BACKEND=openai "
            "(no preset gives one)"
        )
    return base_url, model
