"""What `callx eval` shows: tables that fit the terminal, and the calls each configuration got
wrong in its report (the keyword FakeBackend: the output, not a model, is under test)."""

from __future__ import annotations

import json
from pathlib import Path

from app.evaluation.runner import BackendConfig, evaluate
from app.extraction.extractor import Extractor
from app.extraction.retry import RetryPolicy
from app.llm.base import BackendAnswer, ExtractionRequest
from app.llm.fake import FakeBackend
from app.records import read_records
from schemas.taxonomy import load_taxonomy
from support.env import CACHE_DIR, callx_command

DEV = Path(__file__).resolve().parents[2] / "data" / "calls" / "dev.jsonl"


def run_eval(tmp_path: Path, columns: str, *extra: str) -> str:
    args = ("eval", "--dataset", str(DEV), "--backend", "fake", *extra)
    env = {"CALLX_DATA_DIR": str(tmp_path / "data"), "CALLX_CACHE_DIR": str(CACHE_DIR)}
    run = callx_command(args, {**env, "COLUMNS": columns})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_a_narrow_terminal_gets_one_block_per_configuration(tmp_path: Path) -> None:
    out = run_eval(tmp_path, "80", "--backend", "fake:label=again")
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "…" not in out
    lines = out.splitlines()
    for label in ("fake", "again"):  # the configuration, then a line per column, whole
        block = lines[lines.index(label) + 1 :][:12]
        assert [line.split()[0] for line in block] == [
            "model", "n", "reason", "95%", "macro-F1", "product", "invalid", "failed", "p50",
            "p95", "tokens", "cost",
        ]  # fmt: skip
        assert block[0].split()[1] == "fake-keywords-1" and block[1].split()[1] == "61"
        assert block[2].startswith("  reason acc.  ")
    pair = lines[lines.index("fake vs again") + 1 :][:7]
    assert pair[-1].split()[-2:] == ["not", "separable"]


def test_a_wide_terminal_gets_the_table(tmp_path: Path) -> None:
    out = run_eval(tmp_path, "200", "--backend", "fake:label=again")
    header = next(line for line in out.splitlines() if "configuration" in line)
    assert "reason acc." in header and "tokens in/out" in header


def test_the_report_lists_the_calls_each_configuration_got_wrong(tmp_path: Path) -> None:
    report, results = tmp_path / "report", tmp_path / "results.json"
    run_eval(tmp_path, "200", "--report", str(report), "--json", str(results))
    (result,) = json.loads(results.read_text())["results"]
    wrong = [p for p in result["predictions"] if p["reason"] != p["expected_reason"]]
    assert wrong, "the keyword backend gets some of dev.jsonl wrong"
    markdown = (report / "report.md").read_text()
    section = markdown.split(f"### Calls with the wrong reason: {len(wrong)} of 61")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(wrong)
    for row, prediction in zip(rows, wrong, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[:3] == [prediction["id"], prediction["expected_reason"], prediction["reason"]]


class CountingBackend(FakeBackend):
    """The keyword backend under another name, counting its calls."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.calls = 0

    def extract(self, request: ExtractionRequest) -> BackendAnswer:
        self.calls += 1
        return super().extract(request)


def test_a_local_models_first_call_is_not_timed() -> None:
    """llamacpp's first call reads the mapped weights: run once before the timed calls, it is
    not among the latencies. An API backend's first call is a call like the others."""
    records = read_records(DEV)[:5]
    for name, calls in (("llamacpp", 6), ("openai", 5)):
        backend = CountingBackend(name)
        extractor = Extractor(backend, load_taxonomy(), RetryPolicy(1, 1.0, 1.0))
        result = evaluate(extractor, BackendConfig.parse("fake"), records, lambda: None)
        assert (backend.calls, result.n, len(result.predictions)) == (calls, 5, 5)


def test_a_configuration_runs_on_the_taxonomy_it_is_given_not_the_configured_one(
    tmp_path: Path,
) -> None:
    """The gate and the flywheel score several data sets, each in its own taxonomy, with one
    set of settings: the extractor takes the data set's taxonomy."""
    from app.config import Settings
    from schemas.taxonomy import builtin_taxonomy_path

    settings = Settings(data_dir=tmp_path, cache_dir=CACHE_DIR)
    intents8 = load_taxonomy(builtin_taxonomy_path("intents8"))
    extractor = BackendConfig.parse("fake").extractor(settings, intents8)
    assert extractor.taxonomy.version == intents8.version != load_taxonomy().version
