"""What the tests and the benchmarks share: private PostgreSQL and Redis servers, callx
processes, a scripted OpenAI-compatible server, sample calls, test doubles and row factories.

Never imported by app/, workers/ or schemas/ (the import contract in pyproject.toml)."""
