"""`callx eval` end to end: two backend configurations side by side on a labelled file,
through the real pipeline (the real local model and the keyword FakeBackend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.calls import CALLS
from support.env import run_callx

pytestmark = pytest.mark.model

LABELS = ["breakdown", "billing", "cancellation", "delivery", "usage_help", "sales_inquiry"]
PRODUCTS = [
    "lave-linge Bosch Série 6",
    "Fibre 500 broadband",
    "forfait mobile 100 Go",
    "Dyson V15 vacuum",
    "livebox six",
    "unlimited 5G SIM plan",
]


def test_eval_reports_both_configurations(tmp_path: Path, model_path: Path) -> None:
    dataset = tmp_path / "labelled.jsonl"
    dataset.write_text(
        "\n".join(
            json.dumps(
                {"id": c["external_id"], "transcript": c["text"], "reason": r, "product": p},
                ensure_ascii=False,
            )
            for c, r, p in zip(CALLS, LABELS, PRODUCTS, strict=True)
        )
    )
    report, results = tmp_path / "report", tmp_path / "results.json"
    run = run_callx(
        "eval",
        "--dataset",
        str(dataset),
        "--backend",
        "fake",
        "--backend",
        "llamacpp:n_ctx=2048,label=local",
        "--report",
        str(report),
        "--json",
        str(results),
        tmp_path=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(results.read_text())
    assert [r["label"] for r in data["results"]] == ["fake", "local"]
    fake, local = data["results"]
    assert fake["n"] == local["n"] == 6
    # The scores agree with the per-record predictions written beside them.
    for result in (fake, local):
        right = sum(p["reason"] == p["expected_reason"] for p in result["predictions"])
        assert result["reason_accuracy"] == pytest.approx(right / 6)
    assert fake["reason_accuracy"] >= 0.5 and fake["invalid_rate"] == 0.0
    assert local["invalid_rate"] == 0.0 and local["failed"] == 0
    assert (
        0.0 <= local["reason_accuracy"] <= 1.0
        and local["latency_p95_ms"] >= local["latency_p50_ms"] > 0
    )
    assert sum(map(sum, local["confusion"])) == 6
    assert "lenient" in data["meta"]["product_rule"]
    for result in (fake, local):
        low, high = result["reason_accuracy_ci95"]
        assert 0.0 <= low <= result["reason_accuracy"] <= high <= 1.0 and high - low > 0.2
    # The paired comparison agrees with the two configurations' answers, record by record.
    (paired,) = data["comparisons"]
    assert (paired["reference"], paired["other"], paired["n"]) == ("fake", "local", 6)
    pairs = [
        (a["reason"] == a["expected_reason"], b["reason"] == b["expected_reason"])
        for a, b in zip(fake["predictions"], local["predictions"], strict=True)
    ]
    assert [
        paired["both_right"],
        paired["only_reference_right"],
        paired["only_other_right"],
        paired["both_wrong"],
    ] == [pairs.count(k) for k in ((True, True), (True, False), (False, True), (False, False))]
    assert 0.0 < paired["p_value"] <= 1.0 and paired["significant"] == (paired["p_value"] < 0.05)
    markdown = (report / "report.md").read_text()
    assert "| local |" in markdown and "confusion-1.svg" in markdown
    assert "## Paired comparison (reason)" in markdown and "| fake | local | 6 |" in markdown
    assert (report / "confusion-1.svg").read_text().startswith("<svg")


def test_eval_says_where_the_definitions_were_read_or_the_prior_taken_out(
    tmp_path: Path,
) -> None:
    # A list of the customer's own, which the shipped adapter was never trained on.
    codes = {"breakdown": "fault", "billing": "money", "cancellation": "leaving",
             "delivery": "shipping", "usage_help": "howto", "sales_inquiry": "buying"}  # fmt: skip
    taxonomy = tmp_path / "own.yaml"
    taxonomy.write_text(
        "version: own-test-1\nreasons:\n"
        + "".join(
            f"  - {{code: {c}, label: {c}, definition: calls about {c}}}\n" for c in codes.values()
        )
    )
    dataset = tmp_path / "own.jsonl"
    dataset.write_text(
        "\n".join(
            json.dumps({"id": c["external_id"], "transcript": c["text"], "reason": codes[r]})
            for c, r in zip(CALLS[:3], LABELS, strict=False)
        )
    )
    results = tmp_path / "results.json"
    run = run_callx(
        "eval", "--dataset", str(dataset), "--taxonomy", str(taxonomy),
        "--backend", "llamacpp:n_ctx=2048,label=as-shipped",
        "--backend", "llamacpp:n_ctx=2048,read_definitions=off,label=codes",
        "--backend", "llamacpp:n_ctx=2048,prior_correction=off,read_definitions=off,label=off",
        "--backend", "fake", "--json", str(results),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    shipped, codes_only, off, fake = json.loads(results.read_text())["results"]
    # As shipped, the definitions alone choose: the codes' prior is not used.
    assert (shipped["definitions_read"], shipped["prior_corrected"]) == (True, False)
    assert (codes_only["definitions_read"], codes_only["prior_corrected"]) == (False, True)
    assert (off["definitions_read"], off["prior_corrected"]) == (False, False)
    assert fake["prior_corrected"] is None and fake["definitions_read"] is None
    assert run.stdout.count("(prior taken out)") == 1
    # By the shipped reader (the default model's), named in the results and the table.
    assert shipped["reader"] == "callx-reader.gguf" and codes_only["reader"] is None
    assert run.stdout.count("(definitions read by callx-reader.gguf)") == 1


def test_eval_refuses_labels_outside_the_taxonomy(tmp_path: Path) -> None:
    dataset = tmp_path / "wrong.jsonl"
    dataset.write_text(
        json.dumps({"id": 1, "transcript": "Customer: hi", "reason": "billing_payment"})
    )
    run = run_callx("eval", "--dataset", str(dataset), "--backend", "fake", tmp_path=tmp_path)
    assert run.returncode != 0
    assert "billing_payment" in run.stderr and "--taxonomy" in run.stderr


def test_eval_scores_the_classical_baseline_beside_the_others(tmp_path: Path) -> None:
    """`classical:train=FILE`: TF-IDF + logistic regression fitted on the repository's own
    train split, scored on its test split like any backend; always a code of the taxonomy."""
    root = Path(__file__).resolve().parents[2]
    results = tmp_path / "results.json"
    run = run_callx(
        "eval",
        "--dataset",
        str(root / "data" / "calls" / "test.jsonl"),
        "--backend",
        f"classical:train={root / 'data' / 'calls' / 'train.jsonl'},label=baseline",
        "--backend",
        "fake",
        "--json",
        str(results),
        tmp_path=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    baseline, fake = json.loads(results.read_text())["results"]
    assert (baseline["label"], baseline["backend"], baseline["n"]) == ("baseline", "classical", 85)
    assert baseline["invalid_rate"] == 0.0 and baseline["failed"] == 0
    # Far better than chance (1 in 7) on calls it never saw, and it names no product.
    assert baseline["reason_accuracy"] > 0.5
    assert all(p["product"] is None for p in baseline["predictions"])
    assert all(0 < p["confidence"] <= 1 for p in baseline["predictions"])


def test_eval_classical_baseline_needs_its_train_file(tmp_path: Path) -> None:
    dataset = tmp_path / "labelled.jsonl"
    dataset.write_text(json.dumps({"id": 1, "transcript": "Client: ma box", "reason": "breakdown"}))
    run = run_callx("eval", "--dataset", str(dataset), "--backend", "classical", tmp_path=tmp_path)
    assert run.returncode == 2 and "train=FILE" in run.stderr and "Traceback" not in run.stderr


def test_compare_reads_separate_runs_and_refuses_other_records(tmp_path: Path) -> None:
    """`callx compare`: configurations evaluated in separate runs (an adapter measured today
    against the results saved for the default last month), record by record."""
    root = Path(__file__).resolve().parents[2]
    dataset = str(root / "data" / "calls" / "dev.jsonl")
    files = {name: tmp_path / f"{name}.json" for name in ("a", "b", "sample")}
    for name, extra in (("a", []), ("b", []), ("sample", ["--limit", "10"])):
        run = run_callx(
            "eval",
            "--dataset",
            dataset,
            "--backend",
            "fake",
            *extra,
            "--json",
            str(files[name]),
            tmp_path=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]

    run = run_callx("compare", str(files["a"]), str(files["b"]), tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # Same label in both files: each is named by its file. The same backend answers the same.
    assert "a/fake" in run.stdout and "b/fake" in run.stdout
    assert "not separable" in run.stdout.replace("\n", " ")

    run = run_callx("compare", str(files["a"]), tmp_path=tmp_path)
    assert run.returncode == 2 and "two or more configurations" in " ".join(run.stderr.split())
    run = run_callx("compare", str(files["a"]), str(files["sample"]), tmp_path=tmp_path)
    assert run.returncode == 2 and "not run on the same records" in " ".join(run.stderr.split())
    run = run_callx("compare", str(files["a"]), dataset, tmp_path=tmp_path)
    message = " ".join(run.stderr.split())  # the error console wraps at 80 columns
    assert run.returncode == 2 and "dev.jsonl: not a `callx eval --json` results file" in message
    assert "Traceback" not in run.stderr
