"""The CLI's expected errors: `callx COMMAND: what: where` in a line (or a few), exit code 2,
no traceback unless `--debug`, nothing written, and no model loaded first."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.env import CACHE_DIR, callx_command, run_callx
from support.services import free_port

CALL = "Client: ma box Livebox 6 ne marche plus depuis ce matin."


def said(run: subprocess.CompletedProcess[str], command: str, *parts: str, lines: int = 1) -> str:
    """The error message, checked: exit 2, at most `lines` lines, no traceback, `parts` in it."""
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    message = run.stderr.strip().splitlines()
    assert 1 <= len(message) <= lines, run.stderr
    assert message[0].startswith(f"callx {command}: "), run.stderr
    for part in parts:
        assert part in run.stderr, (part, run.stderr)
    return run.stderr


def env_for(tmp_path: Path, **settings: str) -> dict[str, str]:
    # A model file that does not exist: an error that came after loading it would say so.
    return {
        "CALLX_DATA_DIR": str(tmp_path / "data"),
        "CALLX_CACHE_DIR": str(CACHE_DIR),
        "CALLX_LLAMACPP__MODEL_PATH": str(tmp_path / "absent-model.gguf"),
        **settings,
    }


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps({"id": "c1", "transcript": CALL, "reason": "breakdown"}) + "\n")
    return path


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    missing, output = tmp_path / "nope.jsonl", tmp_path / "out.jsonl"
    run = callx_command(("extract", str(missing), "-o", str(output)), env_for(tmp_path))
    said(run, "extract", f"{missing}: no such file")
    assert not output.exists()
    run = callx_command(("eval", "--dataset", str(missing)), env_for(tmp_path))
    said(run, "eval", f"{missing}: no such file")


def test_a_csv_without_a_text_column_stops_before_the_model_and_the_server(
    tmp_path: Path,
) -> None:
    source, output = tmp_path / "calls.csv", tmp_path / "out.jsonl"
    source.write_text(f"external_id,body\nc1,{CALL}\n")
    run = callx_command(("extract", str(source), "-o", str(output)), env_for(tmp_path))
    said(run, "extract", str(source), "no `text` column", "external_id, body")
    assert not output.exists()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: never reached
    run = callx_command(("submit", str(source), "--url", url), env_for(tmp_path))
    said(run, "submit", str(source), "no `text` column")


def test_bad_records_name_the_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "calls.jsonl"
    both = {"id": "c1", "external_id": "c2", "text": CALL}
    source.write_text(json.dumps({"id": "c0", "text": CALL}) + "\n" + json.dumps(both) + "\n")
    run = callx_command(("extract", str(source), "-o", str(tmp_path / "o")), env_for(tmp_path))
    said(run, "extract", f"{source}:2:", "`external_id` and `id`")
    source.write_text(json.dumps({"id": "c0", "text": CALL}) + "\n{not json\n")
    run = callx_command(("extract", str(source), "-o", str(tmp_path / "o")), env_for(tmp_path))
    said(run, "extract", f"{source}:2: invalid JSON")
    source.write_text(json.dumps({"id": "c0", "body": CALL}) + "\n")
    run = callx_command(("eval", "--dataset", str(source)), env_for(tmp_path))
    said(run, "eval", f"{source}:1: no `text` field")


def test_a_taxonomy_mistake_is_its_own_message(tmp_path: Path, calls: Path) -> None:
    taxonomy = tmp_path / "acme.yaml"
    taxonomy.write_text(
        "version: acme-1\nreasons:\n"
        "  - {code: Breakdown, label: panne, definition: it does not work}\n"
        "  - {code: other, label: autre, definition: anything else}\n"
    )
    output = tmp_path / "out.jsonl"
    args = ("extract", str(calls), "-o", str(output), "--taxonomy", str(taxonomy))
    run = callx_command(args, env_for(tmp_path))
    said(run, "extract", f"invalid taxonomy in {taxonomy}", "reasons.0.code", "'Breakdown'")
    assert not output.exists()


def test_an_invalid_setting_names_its_variable(tmp_path: Path, calls: Path) -> None:
    args = ("extract", str(calls), "-o", str(tmp_path / "out.jsonl"))
    run = callx_command(args, env_for(tmp_path, CALLX_LLAMACPP__N_CTX="abc"))
    said(run, "extract", "CALLX_LLAMACPP__N_CTX='abc'", "valid integer")


def test_a_null_product_threshold_outside_0_and_1_names_its_variable(
    tmp_path: Path, calls: Path
) -> None:
    output = tmp_path / "out.jsonl"
    args = ("extract", str(calls), "-o", str(output))
    run = callx_command(args, env_for(tmp_path, CALLX_LLAMACPP__NULL_PRODUCT_AT="0"))
    said(run, "extract", "CALLX_LLAMACPP__NULL_PRODUCT_AT='0'", "greater than 0")
    assert not output.exists()


def test_a_missing_model_file_is_said_before_loading(tmp_path: Path, calls: Path) -> None:
    output = tmp_path / "out.jsonl"
    run = callx_command(("extract", str(calls), "-o", str(output)), env_for(tmp_path))
    said(run, "extract", "CALLX_LLAMACPP__MODEL_PATH", "absent-model.gguf")
    assert not output.exists()


def test_submit_to_a_server_that_is_down(tmp_path: Path, calls: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = run_callx("submit", str(calls), "--url", url, tmp_path=tmp_path)
    said(run, "submit", f"cannot reach {url}/v1/batches")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("llamacpp:foo=bar", ["unknown option 'foo' for llamacpp", "n_ctx"]),
        ("llamacpp:n_ctx=abc", ["n_ctx: Input should be a valid integer"]),
        ("llamacpp:null_product_at=1", ["null_product_at: Input should be less than 1"]),
        ("llamacpp:price_in=cheap", ["price_in must be a number"]),
        ("llamacpp:model_path=absent.gguf", ["MODEL_PATH", "absent.gguf"]),
        ("gpt:model=x", ["unknown backend 'gpt'"]),
    ],
)
def test_a_bad_backend_spec_stops_eval_before_any_model(
    tmp_path: Path, calls: Path, spec: str, words: list[str]
) -> None:
    # The good configuration first: a mistake in the second is said before the first runs.
    args = ("eval", "--dataset", str(calls), "--backend", "fake", "--backend", spec)
    run = callx_command(args, env_for(tmp_path))
    said(run, "eval", *words)
    assert run.stdout == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    args = ("extract", str(missing), "-o", str(tmp_path / "out.jsonl"))
    for run in (
        callx_command(("--debug", *args), env_for(tmp_path)),
        callx_command(args, env_for(tmp_path, CALLX_DEBUG="1")),
    ):
        assert run.returncode == 2
        assert "Traceback" in run.stderr and "RecordFileError" in run.stderr
        assert run.stderr.strip().splitlines()[-1] == f"callx extract: {missing}: no such file"


@pytest.mark.parametrize(
    ("args", "command", "parts"),
    [
        (("extract", "calls.jsonl"), "extract", ("missing option --output / -o",)),
        (("extract",), "extract", ("Missing argument",)),
        (("eval", "--limit", "abc"), "eval", ("'--limit'", "valid integer")),
        (("eval", "--dataset"), "eval", ("'--dataset' requires an argument",)),
        (("extrakt",), "", ("No such command 'extrakt'", "Did you mean 'extract'")),
        (("--bogus",), "", ("No such option: --bogus",)),
        (("models", "frob"), "models", ("No such command 'frob'",)),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help(
    tmp_path: Path, args: tuple[str, ...], command: str, parts: tuple[str, ...]
) -> None:
    run = callx_command(args, env_for(tmp_path))
    where = f"callx {command}".strip()
    message = said(run, command, *parts) if command else run.stderr
    if not command:  # the group's own: `callx: ...`
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert all(part in message for part in parts), message
    assert message.strip().endswith(f"(see {where} --help)") and message.startswith(where + ":")
    assert run.stdout == ""


def test_without_a_command_the_help_is_shown() -> None:
    run = callx_command((), {})
    assert run.returncode == 2 and "Usage: callx" in run.stdout and "extract" in run.stdout
    assert callx_command(("--help",), {}).returncode == 0


def test_a_bad_backend_or_taxonomy_option_is_named_as_the_option(
    tmp_path: Path, calls: Path
) -> None:
    output = tmp_path / "out.jsonl"
    run = callx_command(
        ("extract", str(calls), "-o", str(output), "--backend", "gpt"), env_for(tmp_path)
    )
    said(run, "extract", "--backend: unknown backend 'gpt'; use llamacpp or openai")
    missing = tmp_path / "nope.yaml"
    run = callx_command(
        ("extract", str(calls), "-o", str(output), "--taxonomy", str(missing)), env_for(tmp_path)
    )
    said(run, "extract", f"--taxonomy: {missing}: no such file")
    assert not output.exists()
