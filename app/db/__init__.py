"""Storage: SQLAlchemy models, the repository of queries, sessions."""
