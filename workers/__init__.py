"""Celery workers: the app, its per-process runtime, and thin tasks."""
