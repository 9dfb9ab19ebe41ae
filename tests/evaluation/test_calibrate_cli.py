"""`callx calibrate` end to end with the real local model: evaluate an adapter, fit its
temperature into its card, and the next evaluation's confidences come out calibrated, on the
taxonomy it was fitted on only; on another taxonomy the worker's warning says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.llm.calibration import scaled
from app.llm.model_files import DEFAULT_ADAPTER
from support.calls import CALLS
from support.env import run_callx

pytestmark = pytest.mark.model

# Two calls labelled against what they are about, so that the fit has wrong answers to weigh.
LABELS = ["breakdown", "billing", "other", "delivery", "usage_help", "other"]


def _dataset(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "dev.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": c["external_id"], "transcript": c["text"], "reason": r})
            for c, r in zip(CALLS, labels, strict=True)
        )
    )
    return path


def _eval(tmp_path: Path, adapter: Path, out: Path, *extra: str) -> dict:
    run = run_callx(
        "eval", "--dataset", str(_dataset(tmp_path, LABELS)),
        "--backend", f"llamacpp:lora_path={adapter},n_ctx=2048", "--json", str(out), *extra,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return {"stderr": run.stderr, "stdout": run.stdout, **json.loads(out.read_text())}


def test_a_fitted_temperature_calibrates_the_next_evaluation(tmp_path: Path) -> None:
    adapter = tmp_path / "candidate.gguf"
    shutil.copy(DEFAULT_ADAPTER, adapter)
    card = json.loads(DEFAULT_ADAPTER.with_suffix(".json").read_text())
    card.pop("calibration", None)
    card.pop("evaluations", None)
    adapter.with_suffix(".json").write_text(json.dumps(card))

    before = _eval(tmp_path, adapter, tmp_path / "before.json")
    raw = before["results"][0]
    assert raw["calibrated"] == 0 and raw["calibration_error"] is not None
    assert set(raw["accuracy_at_coverage"]) == {"90%", "80%", "70%"}
    assert "calibration error" in before["stdout"]  # the confidence table is printed

    run = run_callx("calibrate", str(adapter), str(tmp_path / "before.json"), tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "temperature" in run.stderr and "written" in run.stderr
    written = json.loads(adapter.with_suffix(".json").read_text())
    (version, fitted), *others = written["calibration"]["taxonomies"].items()
    assert version == before["meta"]["taxonomy_version"] and others == []
    temperature = fitted["temperature"]
    assert written["evaluations"][0]["n"] == 6

    after = _eval(tmp_path, adapter, tmp_path / "after.json")["results"][0]
    assert after["calibrated"] == 6
    for old, new in zip(raw["predictions"], after["predictions"], strict=True):
        assert new["reason"] == old["reason"]  # the same answers, only the confidence moves
        assert new["confidence_calibrated"] is True
        assert new["confidence"] == pytest.approx(
            scaled(old["confidence"], temperature), abs=1e-3
        )  # the raw one was rounded to 4 decimals

    # Another taxonomy: the card says the adapter was never measured on it.
    taxonomy = tmp_path / "own.yaml"
    taxonomy.write_text(
        "version: own-1\nreasons:\n"
        "  - {code: fault, label: fault, definition: something does not work}\n"
        "  - {code: money, label: money, definition: 'bills, charges, prices and payments'}\n"
        "  - {code: misc, label: misc, definition: anything else}\n"
    )
    dataset = _dataset(tmp_path, ["fault", "money", "misc", "misc", "fault", "money"])
    run = run_callx(
        "eval", "--dataset", str(dataset), "--taxonomy", str(taxonomy),
        "--backend", f"llamacpp:lora_path={adapter},n_ctx=2048",
        "--json", str(tmp_path / "own.json"), tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "never trained or evaluated on taxonomy own-1" in run.stderr
    own = json.loads((tmp_path / "own.json").read_text())["results"][0]
    assert own["calibrated"] == 0
    assert not any(p["confidence_calibrated"] for p in own["predictions"])


def test_calibrate_refuses_results_of_another_adapter(tmp_path: Path) -> None:
    adapter = tmp_path / "other.gguf"
    shutil.copy(DEFAULT_ADAPTER, adapter)
    shutil.copy(DEFAULT_ADAPTER.with_suffix(".json"), adapter.with_suffix(".json"))
    results = tmp_path / "results.json"
    run = run_callx(
        "eval", "--dataset", str(_dataset(tmp_path, LABELS)), "--backend", "fake",
        "--json", str(results), tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    run = run_callx("calibrate", str(adapter), str(results), tmp_path=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"callx calibrate: {results}: 0 configurations answered with other.gguf; name one "
        "with --label"
    ]
    card = json.loads(adapter.with_suffix(".json").read_text())
    assert "calibration" not in card or card == json.loads(
        DEFAULT_ADAPTER.with_suffix(".json").read_text()
    )
