"""Alembic migrations; run them with `callx migrate` (or alembic -c migrations/alembic.ini)."""
