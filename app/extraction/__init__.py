"""The extraction pipeline: prompt, backend call, validation. No FastAPI, Celery or Session here."""
