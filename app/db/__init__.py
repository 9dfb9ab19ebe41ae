"""Storage: SQLAlchemy models, sessions, and one repository module per domain (transcripts,
batches, leases, results, rollups, analytics, keys). Every query callx makes lives here;
nothing here commits but session_scope() and the worker's GroupCommitter."""
