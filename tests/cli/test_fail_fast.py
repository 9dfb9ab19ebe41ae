"""A setting a worker cannot run with stops `callx serve` and `callx worker` at once, in one
line and exit code 2, instead of an API that looks healthy while no call is ever extracted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import app.llm.model_files
from support.env import CACHE_DIR, callx_command


def embedded(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {"CALLX_DATA_DIR": str(tmp_path / "data"), "CALLX_CACHE_DIR": str(CACHE_DIR), **settings}


def one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 3, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    return result.stderr


def test_a_broken_taxonomy_stops_serve_and_worker(tmp_path: Path) -> None:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text("version: acme-1\nreasons:\n  - {code: Repair, label: r, definition: d}\n")
    env = embedded(tmp_path, CALLX_EXTRACTION__TAXONOMY_PATH=str(taxonomy))
    for command in (("serve", "--port", "1"), ("worker",)):
        one_line_error(callx_command(command, env, 60), "CALLX_EXTRACTION__TAXONOMY_PATH", "code")


def test_an_openai_backend_without_an_endpoint_stops_serve_and_worker(tmp_path: Path) -> None:
    env = embedded(tmp_path, CALLX_EXTRACTION__BACKEND="openai")
    for command in (("serve", "--port", "1"), ("worker",)):
        one_line_error(callx_command(command, env, 60), "CALLX_OPENAI__BASE_URL")


def test_a_missing_adapter_or_a_model_that_is_not_one_stops_serve(tmp_path: Path) -> None:
    env = embedded(tmp_path, CALLX_LLAMACPP__LORA_PATH=str(tmp_path / "nowhere.gguf"))
    one_line_error(
        callx_command(("serve", "--port", "1"), env, 60), "CALLX_LLAMACPP__LORA_PATH", "nowhere"
    )
    not_a_model = tmp_path / "model.gguf"
    not_a_model.write_text("hello")
    env = embedded(tmp_path, CALLX_LLAMACPP__MODEL_PATH=str(not_a_model))
    one_line_error(
        callx_command(("worker",), env, 60), "CALLX_LLAMACPP__MODEL_PATH", "not a GGUF file"
    )


def test_a_reader_and_an_answering_adapter_in_each_others_place_stop_the_worker(
    tmp_path: Path,
) -> None:
    shipped = Path(app.llm.model_files.__file__).parent / "adapters"
    cases = [
        ({"CALLX_LLAMACPP__READER_PATH": str(tmp_path / "nowhere.gguf")},
         ("CALLX_LLAMACPP__READER_PATH", "nowhere")),
        ({"CALLX_LLAMACPP__LORA_PATH": str(shipped / "callx-reader.gguf")},
         ("CALLX_LLAMACPP__LORA_PATH", "is a reader", "give it as reader_path")),
        ({"CALLX_LLAMACPP__READER_PATH": str(shipped / "callx-default.gguf")},
         ("CALLX_LLAMACPP__READER_PATH", "is not a reader")),
    ]  # fmt: skip
    for setting, words in cases:
        one_line_error(callx_command(("worker",), embedded(tmp_path, **setting), 60), *words)


def test_serve_stops_when_its_embedded_worker_dies(tmp_path: Path) -> None:
    """A model file that looks like a GGUF file passes the checks, and fails to load in the
    worker: `callx serve` must not go on serving an API nobody works for."""
    fake_model = tmp_path / "model.gguf"
    fake_model.write_bytes(b"GGUF" + b"\x00" * 64)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLX_")}
    env.update(embedded(tmp_path, CALLX_LLAMACPP__MODEL_PATH=str(fake_model)))
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 2, stderr[-2000:]
    assert "the embedded worker exited" in stderr
