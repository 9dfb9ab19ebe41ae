"""`callx serve` with no configuration at all: SQLite, the local broker, a worker, the local model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.calls import CALLS
from support.env import CACHE_DIR
from support.services import free_port, wait_for

pytestmark = pytest.mark.model


def test_one_transcript_through_the_embedded_service(tmp_path: Path, model_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLX_")}
    # No CALLX_ setting: only where files go (a fresh home), and the model cache we already have.
    env.update({"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(CACHE_DIR.parent)})
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, 90, "callx serve"
        )
        created = httpx.post(url + "/v1/transcripts", json=CALLS[1], timeout=10)
        assert created.status_code == 202, created.text
        transcript_url = f"{url}/v1/transcripts/{created.json()['id']}"
        wait_for(
            lambda: httpx.get(transcript_url, timeout=5).json()["status"] == "succeeded",
            120,
            "the embedded worker",
            interval=0.5,
        )
        extraction = httpx.get(transcript_url, timeout=5).json()["extraction"]
        assert extraction["backend"] == "llamacpp"
        assert extraction["reason"] in {
            "breakdown",
            "usage_help",
            "sales_inquiry",
            "billing",
            "delivery",
            "cancellation",
            "other",
        }
        assert (tmp_path / "data" / "callx" / "callx.sqlite3").exists()
    finally:
        process.terminate()  # SIGTERM to `callx serve` alone: it must stop its worker too
        process.wait(timeout=60)
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
    assert not processes_using(str(tmp_path / "data")), "the embedded worker outlived callx serve"


def processes_using(marker: str) -> list[int]:
    """Pids of processes whose environment mentions `marker` (our XDG_DATA_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
