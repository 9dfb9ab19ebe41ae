"""Extraction: the pipeline (pipeline.py, pure: fit the transcript, ask the backend, retry,
validate; no FastAPI, Celery or Session) and the service that runs it for stored calls
(service.py, with store.py: claims and results, group-committed). The same pipeline serves the
worker, `callx extract` and `callx eval`."""
