"""Known OpenAI-compatible providers, so that switching provider is one setting."""

from __future__ import annotations

from dataclasses import dataclass


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
