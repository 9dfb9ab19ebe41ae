"""Prometheus metrics. The API serves /metrics; a worker serves its own (all its processes)
on CALLX_METRICS__WORKER_PORT, with prometheus_client's multiprocess mode.

Only the definitions live here (the bottom layer): the services that count import them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120)

CALLS = Counter(
    "callx_extractions_total",
    "Extractions stored, by final status and backend",
    ["status", "backend", "model"],
)
FAILURES = Counter(
    "callx_extraction_failures_total", "Failed extractions by kind", ["backend", "kind"]
)
LATENCY = Histogram(
    "callx_extraction_seconds",
    "Time to extract one call, retries included",
    ["backend", "model"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter("callx_tokens_total", "Model tokens", ["backend", "model", "direction"])
RETRIES = Counter(
    "callx_backend_retries_total", "Transport retries (timeouts, 429, 5xx)", ["backend", "kind"]
)
SKIPPED = Counter(
    "callx_tasks_skipped_total", "Tasks that did nothing (finished, or leased elsewhere)", ["why"]
)
SUBMITTED = Counter("callx_transcripts_submitted_total", "Transcripts accepted", ["queue"])
REJECTED = Counter("callx_batch_records_rejected_total", "Batch records rejected")
REQUEUED = Counter("callx_reconciler_requeued_total", "Transcripts re-sent", ["why"])
ADAPTER_SWITCHES = Counter(
    "callx_adapter_switches_total",
    "Workers that switched to a newly promoted adapter between calls",
)
ADAPTER_LOAD_FAILURES = Counter(
    "callx_adapter_load_failures_total",
    "Promoted adapters a worker could not load (it kept the one it had)",
)
